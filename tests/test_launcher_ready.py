"""The launcher's hello: the daemon says READY=1 only once its launcher can take attempts.

The launcher is a fresh interpreter; its imports take tens of milliseconds, and
a job sent in right after READY=1 used to wait for them. These start the real
launcher process through the daemon's own client for it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spoold.exec.launcher_client import LauncherClient, LauncherGone

ROOT = Path(__file__).resolve().parent.parent


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


def test_the_launcher_imports_spoold_from_where_the_daemon_found_it(tmp_path: Path) -> None:
    """A copy of the package that no install knows of still starts its launcher.

    The launcher is a fresh interpreter run with ``-P``: it finds spoold only
    through the folder the daemon's own copy sits in. The tests' environment
    (this checkout on PYTHONPATH, an editable install in the venv) would hide
    a wrong folder, so this runs the base interpreter, outside any venv, on a
    copy, with a bare environment. (After the regroup into subpackages the
    folder was one level too deep, and only the install found spoold.)
    """
    shutil.copytree(ROOT / "spoold", tmp_path / "copy" / "spoold")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from spoold.exec.launcher_client import LauncherClient; "
        "launcher = LauncherClient(); ready = launcher.wait_ready(30.0); "
        "print(ready, sys.modules['spoold'].__file__); launcher.close()"
    )
    base_python = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )
    result = subprocess.run(
        [str(base_python), "-P", "-I", "-c", code, str(tmp_path / "copy")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", str(tmp_path / "copy" / "spoold" / "__init__.py")]
    assert "ModuleNotFoundError" not in result.stderr
