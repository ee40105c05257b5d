"""Installing spoold from a wheel, as README "Running as a service" says, as far
as a test can: build the wheel, check it holds every module of the package,
install it into a fresh venv, run that venv's console entry points and
`python -m spoold` from outside the checkout, and a job; then an upgrade
(reinstall) with jobs waiting in incoming/, scheduled/ and active/, after
which they all run.

Offline on purpose: the wheel goes in with --no-deps, and its dependencies are
this environment's own copies, linked into the new venv through a .pth file;
`pip check` then proves the wheel's Requires-Dist are met by them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spoold.backends.files.spool import FOLDER_MODES, ROOT_MODE, STATES, VIEW_FOLDER_MODES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEPENDENCIES = ("watchdog", "python-daemon", "lockfile", "loguru", "cronsim")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TIMEOUT = 120

JOBS_MODULE = '''
import time
from pathlib import Path


class Marker:
    """Writes ``path``; the first attempt of a ``slow`` job sleeps until killed."""

    def run(self, path, slow=False):
        target = Path(path)
        first = not target.with_suffix(".started").exists()
        target.with_suffix(".started").write_text("started")
        if slow and first:
            time.sleep(120)
        target.write_text("ran")
        return "ran"
'''


@dataclass
class Installed:
    venv: Path
    wheel: Path

    @property
    def spoold(self) -> Path:
        return self.venv / "bin" / "spoold"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.spoold), *args], capture_output=True, text=True, env=clean_env(),
            cwd=self.venv, timeout=TIMEOUT,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"spoold {args}: {result.stdout}{result.stderr}"
        return result

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), *args],
            capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT,
        )  # fmt: skip
        assert result.returncode == 0, f"pip {args}: {result.stdout}{result.stderr}"
        return result


def clean_env() -> dict[str, str]:
    """No checkout on the path and no outside config or spool."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPOOLD_", "NOTIFY_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("install")
    wheel = build_wheel(base)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    link_dependencies(venv, base / "deps")
    target = Installed(venv, wheel)
    target.pip("install", "--no-deps", "--no-index", str(wheel))
    yield target


def build_wheel(base: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the source (the checkout stays clean)."""
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "spoold", source / "spoold", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = base / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("spoold-*.whl")
    return wheel


def link_dependencies(venv: Path, deps: Path) -> None:
    """Make this environment's copies of the runtime dependencies importable there."""
    deps.mkdir()
    for name in DEPENDENCIES:
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__", "bin"}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (deps / top).exists():
                (deps / top).symlink_to(source)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    Path(purelib, "spoold-test-dependencies.pth").write_text(f"{deps}\n")


def write_config(path: Path, spool: Path, jobs: Path, shutdown_timeout: float = 30.0) -> Path:
    user = '"root"' if os.geteuid() == 0 else '""'  # a root daemon needs a job user
    path.write_text(
        f"""
[spool]
dir = "{spool}"
rescan_interval = 0.5

[worker]
concurrency = 2
retry_delay = 0.2
shutdown_timeout = {shutdown_timeout}
python_path = ["{EXAMPLES}", "{jobs}"]
user = {user}

[log]
file = ""
level = "DEBUG"

[allow]
"app.jobs.SimpleJob" = ["execute"]
"installjobs.Marker" = ["run"]
"""
    )
    return path


def names(spool: Path, state: str) -> set[str]:
    return {p.stem for p in (spool / state).glob("*.json")}


def record(spool: Path, state: str, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((spool / state / f"{job_id}.json").read_text())
    return data


# -- the tests --


def test_the_wheel_holds_every_module_of_the_package(installed: Installed) -> None:
    """A subpackage that packaging leaves out (no __init__.py, a narrow find) is caught here."""
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "spoold").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert {"spoold/exec/launcher.py", "spoold/backends/files/fsio.py"} <= modules
    missing = (modules | {"spoold/py.typed"}) - in_wheel
    assert not missing, f"not in the wheel: {sorted(missing)}"
    dist_info = f"spoold-{PROJECT['version']}.dist-info/"
    strays = {n for n in in_wheel if not n.startswith(("spoold/", dist_info))}
    assert not strays, f"in the wheel but not the package: {sorted(strays)}"


def test_every_console_entry_point_runs_from_outside_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    """Each [project.scripts] command, and `python -m spoold`, from the venv: --help works."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    assert not installed.venv.resolve().is_relative_to(ROOT)
    env = clean_env()
    assert not any(str(ROOT) in value for key, value in env.items() if "PATH" in key)

    def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command], capture_output=True, text=True, env=env,
            cwd=tmp_path, timeout=TIMEOUT,
        )  # fmt: skip

    # The installed copy, not the checkout, is what that venv's python imports.
    where = run(installed.python, "-c", "import spoold.cli.commands as c; print(c.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout

    scripts = PROJECT["scripts"]
    assert "spoold" in scripts
    for name in scripts:
        script = installed.venv / "bin" / name
        assert script.read_text().startswith(f"#!{installed.python}"), f"{name}: another python"
        result = run(script, "--help")
        assert result.returncode == 0, f"{name} --help: {result.stdout}{result.stderr}"
        assert "usage:" in result.stdout
    module = run(installed.python, "-m", "spoold", "--help")
    assert module.returncode == 0, f"python -m spoold --help: {module.stdout}{module.stderr}"
    assert module.stdout == run(installed.spoold, "--help").stdout  # the same command


def test_the_wheel_installs_and_its_dependencies_are_met(installed: Installed) -> None:
    check = installed.pip("check")
    assert "No broken requirements" in check.stdout
    where = subprocess.run(
        [str(installed.python), "-c", "import spoold; print(spoold.__file__)"],
        capture_output=True, text=True, env=clean_env(), cwd=installed.venv, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(installed.venv)), "not the installed copy"
    metadata = subprocess.run(
        [str(installed.python), "-c",
         "import importlib.metadata as m; print('\\n'.join(m.requires('spoold')))"],
        capture_output=True, text=True, env=clean_env(), check=True,
    )  # fmt: skip
    required = {line.split(">")[0].split("<")[0].strip() for line in metadata.stdout.split("\n")}
    assert {"watchdog", "python-daemon", "loguru", "cronsim"} <= required
    assert (Path(where.stdout.strip()).parent / "py.typed").exists()


def test_the_installed_spoold_inits_and_runs_an_example_job(
    installed: Installed, tmp_path: Path
) -> None:
    assert "run" in installed.run("--help").stdout
    spool = tmp_path / "spool"
    config = write_config(tmp_path / "spoold.toml", spool, tmp_path)
    installed.run("init", "--config", str(config))
    assert stat.S_IMODE(spool.stat().st_mode) == ROOT_MODE
    for state in STATES:
        assert stat.S_IMODE((spool / state).stat().st_mode) == FOLDER_MODES[state]

    job_id = installed.run("submit", "app.jobs.SimpleJob", "execute", "--config", str(config))
    job_id_text = job_id.stdout.strip()
    assert names(spool, "incoming") == {job_id_text}
    installed.run("run", "--burst", "--config", str(config))
    assert names(spool, "done") == {job_id_text}
    assert record(spool, "done", job_id_text)["result"] == "executed"

    # The installed copy's watching group: the four folders and the record get it.
    gid = os.getgid()  # a group anyone may give their own files
    shown = installed.run("init", "--view-group", str(gid), "--config", str(config)).stdout
    assert f"1 existing file in scheduled, active, done, failed: group {gid} ({gid})" in shown
    assert stat.S_IMODE(spool.stat().st_mode) == ROOT_MODE
    for state in STATES:
        info = (spool / state).stat()
        assert stat.S_IMODE(info.st_mode) == {**FOLDER_MODES, **VIEW_FOLDER_MODES}[state]
        assert state not in VIEW_FOLDER_MODES or info.st_gid == gid
    assert (spool / "done" / f"{job_id_text}.json").stat().st_gid == gid


def test_an_upgrade_keeps_waiting_and_interrupted_jobs(
    installed: Installed, tmp_path: Path
) -> None:
    """Stop (a running job is cut short and stays), reinstall, start: all of them run."""
    (tmp_path / "installjobs.py").write_text(JOBS_MODULE)
    spool = tmp_path / "spool"
    config = write_config(tmp_path / "spoold.toml", spool, tmp_path, shutdown_timeout=0.5)
    cfg = ("--config", str(config))
    installed.run("init", *cfg)

    def submit(name: str, *extra: str) -> str:
        path = str(tmp_path / f"{name}.out")
        return installed.run(
            "submit", "installjobs.Marker", "run", path, *extra, *cfg
        ).stdout.strip()

    # A job that is running when the service stops.
    slow = submit("slow", "true")  # params: [path, true]
    daemon = subprocess.Popen(
        [str(installed.spoold), "run", *cfg], env=clean_env(), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait(lambda: (tmp_path / "slow.started").exists() and slow in names(spool, "active"))
        daemon.send_signal(signal.SIGTERM)  # what `systemctl stop` sends (KillMode=mixed)
        _, log = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, log
    assert not (tmp_path / "slow.out").exists()
    assert slow in names(spool, "scheduled"), log  # interrupted: kept to run again
    assert not names(spool, "done") and not names(spool, "failed")

    # A job due in a moment (filed in scheduled/ by a burst run) and one in incoming/.
    later = submit("later", "--delay", "2")
    installed.run("run", "--burst", *cfg)
    assert later in names(spool, "scheduled")
    queued = submit("queued")
    assert queued in names(spool, "incoming")
    due = time.time() + 2

    # The upgrade: the package is replaced; the spool is not touched.
    installed.pip("install", "--no-deps", "--no-index", "--force-reinstall", str(installed.wheel))
    assert later in names(spool, "scheduled") and queued in names(spool, "incoming")

    time.sleep(max(0.0, due - time.time()) + 0.2)
    installed.run("run", "--burst", *cfg)
    assert names(spool, "done") == {slow, later, queued}
    assert not names(spool, "failed")
    for name in ("slow", "later", "queued"):
        assert (tmp_path / f"{name}.out").read_text() == "ran"
    outcomes = [h["outcome"] for h in record(spool, "done", slow)["history"]]
    assert outcomes == ["interrupted", "ok"]


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
