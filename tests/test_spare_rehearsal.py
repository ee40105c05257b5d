"""A spare worker walks its job's first steps while it waits (exec/worker.py, _rehearse):
it looks through python_path before any request comes. What it saw then must not
hide what appears later: a folder created, or a module written, after the spare was
forked is found by the job it runs, at the first attempt. (That it imports nothing
is test_allowlist_bypass's: its marker modules sit on python_path.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import JOBS_DIR, TESTJOBS_ALLOW, Spool, children_of, process_state, wait_for

LATE_MODULE = """
import os


class Late:
    def run(self):
        return os.getpid()
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
