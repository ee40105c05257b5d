"""Test harness for the real daemon: a temp spool, a config, a subprocess, polling.

Nothing here is mocked. ``Spool`` drops real files and reads real records,
``Daemon`` runs ``python -m spoold run`` as a subprocess with its output in
a log file and waits for its sd_notify ``READY=1`` datagram, and
``wait_for`` polls a predicate until a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from spoold.backends.files.spool import STATES
from spoold.backends.files.spool import Spool as RealSpool
from spoold.client import run_background_job

ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = Path(__file__).resolve().parent / "jobs"
POLL = 0.02
T = TypeVar("T")
Record = dict[str, Any]

# The test job classes (tests/jobs/) the default config allows.
TESTJOBS_ALLOW: dict[str, list[str]] = {
    "testjobs.Noop": ["run"],
    "testjobs.Recorder": ["run"],
    "testjobs.Span": ["run"],
    "testjobs.Heir": ["run"],
    "testjobs.Flaky": ["run"],
    "testjobs.Sleeper": ["run"],
    "testjobs.SlowFirst": ["run"],
    "testjobs.Boom": ["run"],
    "testjobs.SelfKill": ["segfault", "sigkill"],
    "testjobs.HardExit": ["run"],
    "testjobs.Spawner": ["run"],
    "testjobs.Static": ["static_run", "class_run"],
    "testjobs.Echo": ["run"],
    "testjobs.Keywords": ["run"],
    "testjobs.SetResult": ["run"],
    "testjobs.Rendezvous": ["run"],
    "testjobs.Partial": ["allowed"],
    "testjobs.Counter": ["run"],
    "testjobs.Keeper": ["run"],
    "testjobs.Gated": ["run"],
    "tiny.Quick": ["run"],
    "badjobs.Hog": ["run", "once"],
    "badjobs.Spin": ["run"],
    "badjobs.Tree": ["run"],
    "badjobs.Mute": ["close_stdio", "devnull_stdio", "close_all_fds"],
    "badjobs.Escape": ["run"],
    "badjobs.Stubborn": ["run"],
}


class WaitTimeout(AssertionError):
    """A polled condition did not come true before its deadline."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    message: str | Callable[[], str] = "",
    pause: Callable[[], object] = lambda: time.sleep(POLL),
) -> T:
    """Poll ``predicate`` every 20 ms until it returns something truthy; return that.

    Raises WaitTimeout (an AssertionError) after ``timeout`` seconds, with
    ``message`` (or what it returns) to say what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"not true after {timeout}s: {text or predicate}")
        pause()


def stays_false(predicate: Callable[[], object], duration: float) -> bool:
    """True if ``predicate`` stayed falsy for the whole ``duration`` (polled every 20 ms)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(POLL)
    return not predicate()


# -- the spool --


@dataclass(frozen=True)
class Spool:
    """A temporary spool as a test sees it: drop files in, read records out."""

    root: Path

    def create(self) -> Spool:
        RealSpool(self.root).create()
        return self

    def folder(self, state: str) -> Path:
        assert state in STATES, state
        return self.root / state

    def drop(self, name: str, data: bytes) -> Path:
        """Write ``data`` straight into incoming/``name`` (open, write, close in place)."""
        path = self.folder("incoming") / name
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def drop_renamed(self, name: str, data: bytes) -> Path:
        """Write tmp/``name`` whole, then rename it into incoming/ (the client's protocol)."""
        temp = self.folder("tmp") / name
        temp.write_bytes(data)
        target = self.folder("incoming") / name
        os.rename(temp, target)
        return target

    def drop_job(self, job_id: str, document: Mapping[str, Any], *, rename: bool = True) -> str:
        """Drop a job document as ``<job_id>.json``; return the id."""
        data = json.dumps(document).encode()
        (self.drop_renamed if rename else self.drop)(f"{job_id}.json", data)
        return job_id

    def submit(
        self, class_path: str, method: str = "run", params: Any = None, **options: Any
    ) -> str:
        """Submit through the real client (spoold.client.run_background_job)."""
        return run_background_job(class_path, method, params, spool=self.root, **options)

    def names(self, state: str) -> list[str]:
        """Every entry in a folder, dotfiles included, sorted."""
        try:
            return sorted(os.listdir(self.folder(state)))
        except FileNotFoundError:
            return []

    def job_ids(self, state: str) -> list[str]:
        """Ids of the ``<id>.json`` files in a folder (no dotfiles, no temp files)."""
        return [
            n.removesuffix(".json")
            for n in self.names(state)
            if n.endswith(".json") and not n.startswith(".")
        ]

    def records(self, state: str) -> dict[str, dict[str, Any]]:
        """Parsed ``<id>.json`` files of a folder, by id."""
        found = {}
        for job_id in self.job_ids(state):
            try:
                found[job_id] = json.loads((self.folder(state) / f"{job_id}.json").read_bytes())
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # moved away or being replaced while we looked
        return found

    def record(self, job_id: str, state: str) -> dict[str, Any] | None:
        """The parsed record ``state/<id>.json``, or None while it is not there."""
        path = self.folder(state) / f"{job_id}.json"
        try:
            return dict(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None

    def where(self, job_id: str) -> list[str]:
        """Every folder holding ``<id>.json`` right now."""
        return [s for s in STATES if (self.folder(s) / f"{job_id}.json").exists()]

    def wait_record(
        self, job_id: str, state: str = "done", timeout: float = 15.0
    ) -> dict[str, Any]:
        """Wait until ``state/<id>.json`` exists; return it parsed."""
        return wait_for(
            lambda: self.record(job_id, state),
            timeout,
            lambda: f"{job_id} in {state}/; it is in {self.where(job_id)}; {self.summary()}",
        )

    def wait_finished(self, job_id: str, timeout: float = 15.0) -> tuple[str, dict[str, Any]]:
        """Wait until the job has a record in done/ or failed/; return (state, record)."""

        def finished() -> tuple[str, dict[str, Any]] | None:
            for state in ("done", "failed"):
                record = self.record(job_id, state)
                if record is not None:
                    return state, record
            return None

        return wait_for(finished, timeout, lambda: f"{job_id} finished; {self.summary()}")

    def wait_rejected(self, job_id: str, timeout: float = 15.0) -> dict[str, Any]:
        record = self.wait_record(job_id, "failed", timeout)
        assert record["status"] == "rejected", record
        return record

    def summary(self) -> str:
        """Folder contents, for failure messages."""
        return ", ".join(f"{s}/: {self.names(s)[:10]}" for s in STATES)


def job(class_name: str, method: str = "run", params: Any = None, **fields: Any) -> dict[str, Any]:
    """A job document for one of the test job classes (module ``testjobs``)."""
    document: dict[str, Any] = {"class": f"testjobs.{class_name}", "method": method}
    if params is not None:
        document["params"] = params
    return {**document, **fields}


# -- the config --


def toml_value(value: Any) -> str:
    """A TOML literal for the values our configs use."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(sections: Mapping[str, Any]) -> str:
    """TOML of ``{section: {key: value}}``; a section given as a list of tables is an
    array of tables (``"schedule": [{...}, {...}]`` is two ``[[schedule]]``)."""
    lines = []
    for name, table in sections.items():
        for each in table if isinstance(table, list) else [table]:
            lines.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            lines.extend(f"{json.dumps(key)} = {toml_value(v)}" for key, v in each.items())
            lines.append("")
    return "\n".join(lines)


def default_sections(spool: Spool) -> dict[str, dict[str, Any]]:
    """The harness's default config: fast rescans, debug logs to stderr, the test jobs."""
    return {
        "spool": {"dir": str(spool.root), "rescan_interval": 0.5},
        "worker": {
            "concurrency": 2,
            "retry_delay": 0.2,
            "timeout": 30.0,
            "shutdown_timeout": 5.0,
            "python_path": [str(JOBS_DIR)],
            # Tests run as root; jobs then need an explicit user. "root" is the opt-in
            # (the jobs write into the test's own root-owned tmp_path).
            **({"user": "root"} if os.geteuid() == 0 else {}),
        },
        "log": {"file": "", "level": "DEBUG"},
        "allow": dict(TESTJOBS_ALLOW),
    }


def write_config(path: Path, spool: Spool, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write the default config with ``overrides`` merged per section; return the path.
    A list (``schedule=[{...}]``) is an array of tables, replacing any before it."""
    sections: dict[str, Any] = dict(default_sections(spool))
    for name, table in (overrides or {}).items():
        sections[name] = table if isinstance(table, list) else {**sections.get(name, {}), **table}
    path.write_text(toml_text(sections))
    return path


# -- the daemon --


def daemon_env(workdir: Path, token: str, notify_socket: Path | None) -> dict[str, str]:
    """The daemon's environment: unbuffered, the checkout importable, no outside config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOOLD_", "NOTIFY_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["SPOOLD_TEST_TOKEN"] = token  # lets the leak check find every process it started
    env["SPOOLD_TEST_MARKER"] = str(workdir / "marker-module-imported")
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = str(notify_socket)
    return env


def spoold_cli(
    config: Path, workdir: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m spoold ARGS --config CONFIG`` to completion, in the daemon's environment
    (the checkout importable, no outside config), with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "spoold", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=workdir,
        env={**daemon_env(workdir, "spoold-cli", None), **(env or {})},
    )


class Daemon:
    """One ``python -m spoold run`` subprocess, its log file and its notify socket."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        token: str,
        name: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.token = token
        self.name = name
        self.extra_env = dict(env or {})  # e.g. {"SPOOLD_FAULT": "after_claim"}
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None
        self._messages: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *args: str) -> Daemon:
        """Start the daemon with extra command-line ``args``; do not wait."""
        notify_path = self.workdir / f"{self.name}.notify"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify_path))
        command = [sys.executable, "-m", "spoold", "run", "--config", str(self.config), *args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**daemon_env(self.workdir, self.token, notify_path), **self.extra_env},
            )
        return self

    def wait_ready(self, timeout: float = 20.0) -> Daemon:
        """Wait for a ``READY=1`` datagram; fail with the daemon's log if none comes."""
        deadline = time.monotonic() + timeout
        while not any("READY=1" in m.split("\n") for m in self._messages):
            if self.returncode() is not None:
                raise AssertionError(
                    f"daemon exited with {self.returncode()} before READY=1:\n{self.log_text()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no READY=1 within {timeout}s:\n{self.log_text()}")
            self._receive(min(remaining, 0.1))
        return self

    def _receive(self, timeout: float) -> None:
        assert self._notify is not None
        self._notify.settimeout(timeout)
        with contextlib.suppress(TimeoutError):
            self._messages.append(self._notify.recv(4096).decode("utf-8", "replace"))

    def returncode(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def send(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the daemon to exit by itself; return its exit status."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"daemon still running after {timeout}s:\n{self.log_text()}"
            ) from None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; always reaps. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_notify()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the daemon (only the daemon process) and reap it."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._close_notify()

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until a log line contains ``text``; return that line."""

        def found() -> str | None:
            return next((line for line in self.log_lines() if text in line), None)

        return wait_for(found, timeout, lambda: f"log line with {text!r}:\n{self.log_text()}")


# -- processes --


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (zombies included), from /proc/*/stat."""
    found = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_path.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(stat_path.parent.name))
    return found


def process_state(pid: int) -> str:
    """Its state letter from /proc/<pid>/stat: R, S, D, Z..."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()[0]


def processes_with_token(token: str) -> list[int]:
    """Pids whose environment carries SPOOLD_TEST_TOKEN=token: everything a test started."""
    needle = f"SPOOLD_TEST_TOKEN={token}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2 :].split()[0] != "Z"


def describe(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} {cmdline.decode(errors='replace').strip()}"


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines a test job appended to ``path`` ([] while it does not exist)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def iter_json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            yield json.loads(line)
