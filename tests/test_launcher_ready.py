"""The launcher's hello: the daemon says READY=1 only once its launcher can take attempts.

The launcher is a fresh interpreter; its imports take tens of milliseconds, and
a job sent in right after READY=1 used to wait for them. These start the real
launcher process through the daemon's own client for it.
"""

from __future__ import annotations

import signal

import pytest

from spoold.exec.launcher_client import LauncherClient, LauncherGone


def test_the_launcher_says_hello_once_its_loop_runs() -> None:
    launcher = LauncherClient()
    try:
        assert launcher.wait_ready(30.0)
        assert launcher.ready
        assert launcher.process.poll() is None
        assert launcher.receive() == []  # the hello is not handed on as a report
    finally:
        launcher.close()


def test_a_launcher_that_dies_before_its_hello_is_reported_gone() -> None:
    launcher = LauncherClient()
    launcher.process.send_signal(signal.SIGKILL)  # long before its imports are done
    launcher.process.wait()
    with pytest.raises(LauncherGone):
        launcher.wait_ready(30.0)
    assert not launcher.ready
    launcher.close()
