"""A spare worker walks its job's first steps while it waits (exec/worker.py, _rehearse):
it looks through python_path before any request comes, and imports spoold's own
``spoold.exec.rehearsal``. What it saw then must not hide what appears later: a folder
created, or a module written, after the spare was forked is found by the job it runs,
at the first attempt. (That it imports nothing of a job's is test_allowlist_bypass's:
its marker modules sit on python_path.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import (
    JOBS_DIR,
    ROOT,
    TESTJOBS_ALLOW,
    Spool,
    children_of,
    process_state,
    wait_for,
)

LATE_MODULE = """
import os


class Late:
    def run(self):
        return os.getpid()
"""

PROBE_MODULE = """
import os
import sys

# Read as this module is imported, which is after the request came.
REHEARSED_FIRST = "spoold.exec.rehearsal" in sys.modules


class Probe:
    def run(self):
        return [REHEARSED_FIRST, os.getpid()]
"""


def spares_waiting_for_a_request(daemon_pid: int) -> list[int]:
    """The launcher's children once no attempt runs: its spares. Asleep, they are blocked
    on their request pipes, which they read only after their rehearsal."""
    (launcher,) = wait_for(lambda: children_of(daemon_pid) or None, 10, "the launcher")

    def asleep() -> list[int] | None:
        kids = children_of(launcher)
        return kids if kids and all(process_state(kid) == "S" for kid in kids) else None

    return wait_for(asleep, 10, "spares asleep on their request pipes")


@pytest.mark.parametrize("made_at_start", ["nothing", "the folder"])
def test_a_module_written_after_the_spare_was_forked_is_found(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, made_at_start: str
) -> None:
    late = tmp_path / "late"
    if made_at_start == "the folder":
        late.mkdir()
    daemon = start_daemon(
        worker={"python_path": [str(JOBS_DIR), str(late)]},
        allow={**TESTJOBS_ALLOW, "latejobs.Late": ["run"]},
    )
    # The launcher forks a spare as an attempt starts, for the next one.
    spool.wait_record(spool.drop_job("first", {"class": "testjobs.Noop", "method": "run"}))
    spares = spares_waiting_for_a_request(daemon.pid)
    late.mkdir(exist_ok=True)
    (late / "latejobs.py").write_text(LATE_MODULE)
    job_id = spool.drop_job("late", {"class": "latejobs.Late", "method": "run", "max_retries": 0})
    record = spool.wait_record(job_id)
    # Run at once, by a spare that looked before the module was there.
    assert record["attempts"] == 1
    assert record["result"] in spares


def test_a_spare_has_imported_spoolds_rehearsal_module_before_its_job(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """The rehearsal's import is done by the time the job's module is imported: the job's
    import then finds the import machinery's pages copied already."""
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "probejobs.py").write_text(PROBE_MODULE)
    daemon = start_daemon(
        worker={"python_path": [str(JOBS_DIR), str(probes)]},
        allow={**TESTJOBS_ALLOW, "probejobs.Probe": ["run"]},
    )
    spool.wait_record(spool.drop_job("first", {"class": "testjobs.Noop", "method": "run"}))
    spares = spares_waiting_for_a_request(daemon.pid)
    job_id = spool.drop_job("probe", {"class": "probejobs.Probe", "method": "run"})
    rehearsed_first, pid = spool.wait_record(job_id)["result"]
    assert pid in spares  # run by a spare that waited (the first job's ran in a fresh fork)
    assert rehearsed_first is True


def test_the_launcher_itself_never_imports_the_rehearsal_module() -> None:
    """Imported once in the launcher, it would be in every spare already, and the spare's
    import would rehearse nothing."""
    code = "import sys, spoold.exec.launcher; print('spoold.exec.rehearsal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"
