"""A job's process handles signals as a fresh program would: SIGTERM, SIGINT, SIGHUP,
SIGCHLD and SIGPIPE at their defaults, though the launcher it was forked from ignores
the first three and Python ignores SIGPIPE (exec/worker.py, ``_isolate``). A job that
ignored SIGTERM would outlive its timeout's polite signal, and one that ignored SIGPIPE
would get EPIPE errors where a shell pipeline's program dies."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import JOBS_DIR, TESTJOBS_ALLOW, Spool

HANDLERS_MODULE = """
import signal


class Handlers:
    def run(self):
        names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGCHLD", "SIGPIPE")
        return {name: int(signal.getsignal(getattr(signal, name))) for name in names}
"""


@pytest.mark.parametrize("max_jobs", [1, 3])
def test_a_job_starts_with_default_signal_handling(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, max_jobs: int
) -> None:
    (tmp_path / "handlerjobs.py").write_text(HANDLERS_MODULE)
    start_daemon(
        worker={"python_path": [str(JOBS_DIR), str(tmp_path)], "max_jobs_per_process": max_jobs},
        allow={**TESTJOBS_ALLOW, "handlerjobs.Handlers": ["run"]},
    )
    for n in range(2):  # with reused workers, the second runs where the first ran
        job_id = spool.drop_job(f"handlers{n}", {"class": "handlerjobs.Handlers", "method": "run"})
        record = spool.wait_record(job_id)
        default = 0  # SIG_DFL
        assert record["result"] == {
            name: default for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGCHLD", "SIGPIPE")
        }
