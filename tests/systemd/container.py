"""A Debian bookworm container booted by systemd-nspawn, for test_in_container.py.

The root filesystem is made once by debootstrap and cached outside the
repository, under ``$SPOOLD_TEST_CACHE`` (default /var/cache/spoold-test), as
``rootfs-<hash>``, the hash being that of the debootstrap arguments (mirror
included): changing them builds a new one and removes the old. Each run boots
an overlay of it (writes go to a scratch directory, the cache stays clean), so
every run starts from the same freshly bootstrapped system.

Commands run inside through ``nsenter`` into the container's init: with
``--register=no`` there is no machined to ask, and PID 1 of the host need not
be systemd. The wheels pip needs (spoold's build backend and dependencies)
are built on the host into a cached wheelhouse, bound in read-only and named
to pip through ``PIP_NO_INDEX``/``PIP_FIND_LINKS``: the install commands are
the README's, the network is not needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SPOOLD_TEST_CACHE", "/var/cache/spoold-test"))
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv")
DEBOOTSTRAP_TIMEOUT = 1800
BOOT_TIMEOUT = 120
POWEROFF_TIMEOUT = 60
WHEELHOUSE_IN = "/wheelhouse"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a copy of the checkout leaves out: local state, not part of what a user has.
NOT_COPIED = (".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def cannot_run() -> str | None:
    """Why this machine cannot run the suite, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, mount, systemd-nspawn)"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "systemd-analyze"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install systemd-container debootstrap)"
    return None


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian mirror apt uses for ``SUITE`` (sources.list or deb822 .sources)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for uri in _one_line_uris(text) + _deb822_uris(text):
            return uri.rstrip("/")
    raise RuntimeError(f"no Debian {SUITE} mirror in {sources}/sources.list*")


def _one_line_uris(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
            found.append(words[1])
    return found


def _deb822_uris(text: str) -> list[str]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (
                line.partition(":") for line in stanza.splitlines() if not line.startswith("#")
            )
        )
        if "deb" in fields.get("types", "").split() and SUITE in fields.get("suites", "").split():
            found.extend(fields.get("uris", "").split())
    return found


def debootstrap_args(target: Path, mirror: str) -> list[str]:
    return [
        "debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
        SUITE, str(target), mirror,
    ]  # fmt: skip


def _digest(words: list[str]) -> str:
    return hashlib.sha256("\0".join(words).encode()).hexdigest()[:12]


def rootfs(log: Callable[[str], None]) -> Path:
    """The cached root filesystem, made by debootstrap if missing or outdated."""
    mirror = debian_mirror()
    key = _digest(debootstrap_args(Path("ROOT"), mirror))
    target = CACHE / f"rootfs-{key}"
    if target.is_dir():
        log(f"reusing {target}")
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("rootfs-*"):  # made with other arguments, or cut short
        log(f"removing {old}")
        shutil.rmtree(old, ignore_errors=True)
    partial = CACHE / f"rootfs-{key}.partial"
    log_file = CACHE / f"debootstrap-{key}.log"
    log(f"debootstrap into {target} from {mirror} (log: {log_file})")
    with log_file.open("w") as out:
        result = subprocess.run(
            debootstrap_args(partial, mirror), stdout=out, stderr=subprocess.STDOUT,
            timeout=DEBOOTSTRAP_TIMEOUT,
        )  # fmt: skip
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"debootstrap failed ({result.returncode}):\n{tail}")
    partial.rename(target)  # the rename is what marks it complete
    return target


def wheelhouse(log: Callable[[str], None]) -> Path:
    """The wheels a ``pip install`` of the checkout needs, built once on the host."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = sorted(project["build-system"]["requires"] + project["project"]["dependencies"])
    target = CACHE / f"wheels-{_digest(wanted)}"
    if target.is_dir():
        return target
    partial = Path(tempfile.mkdtemp(prefix="wheels-", dir=CACHE))
    log(f"building wheels for {wanted} into {target}")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(partial), *wanted],
        check=True, timeout=600,
    )  # fmt: skip
    partial.chmod(0o755)
    partial.rename(target)
    return target


def copy_checkout(destination: Path) -> None:
    """The working tree as a user would have it (uncommitted changes included)."""
    shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)


class Container:
    """One boot of an overlay of ``lower``; ``run`` executes a command inside."""

    def __init__(self, lower: Path, binds: dict[Path, str]) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_runs()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=CACHE))
        self.lower = lower
        self.binds = binds
        self.root = self.scratch / "merged"
        self.console = self.scratch / "console.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.mounted = False

    # -- life cycle --

    def boot(self) -> None:
        self._mount()
        command = [
            "systemd-nspawn", "--register=no", "--keep-unit", "--console=read-only",
            f"--directory={self.root}", f"--machine=spoold-test-{os.getpid()}", "--boot",
        ]  # fmt: skip
        command[1:1] = [f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()]
        with self.console.open("wb") as out:
            self.nspawn = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.leader = self._find_leader()
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:  # until systemd answers on its bus; then it waits for the boot itself
            state = self.run(["systemctl", "is-system-running", "--wait"], check=False)
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline or self.nspawn.poll() is not None:
                raise RuntimeError(
                    f"the container did not boot: {state.stdout}{state.stderr}\n"
                    f"{self.console_tail()}"
                )
            time.sleep(0.2)

    def _mount(self) -> None:
        upper, work = self.scratch / "upper", self.scratch / "work"
        for path in (upper, work, self.root):
            path.mkdir()
        options = f"lowerdir={self.lower},upperdir={upper},workdir={work}"
        result = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode == 0:
            self.mounted = True
            return
        # No overlayfs here (in another container, say): a plain copy, slower.
        self.root.rmdir()
        subprocess.run(["cp", "-a", "--reflink=auto", str(self.lower), str(self.root)], check=True)

    def _find_leader(self) -> int:
        """The container's PID 1, as a host pid: a descendant of nspawn whose NSpid ends in 1."""
        assert self.nspawn is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited at once:\n{self.console_tail()}")
            for pid in _descendants(self.nspawn.pid):
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspids = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                    # nspawn's own child is PID 1 too until it execs systemd.
                    if nspids and nspids.group(1).split()[1:] == ["1"] and _is_init(pid):
                        return pid
            time.sleep(0.1)
        raise RuntimeError(f"no init in the container after {BOOT_TIMEOUT} s")

    def poweroff(self) -> None:
        """Power off (or, failing that, kill) the container and remove the scratch."""
        try:
            if self.nspawn is not None and self.nspawn.poll() is None:
                with contextlib.suppress(Exception):
                    self.run(["systemctl", "poweroff"], check=False, timeout=30)
                try:
                    self.nspawn.wait(POWEROFF_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.nspawn.send_signal(signal.SIGKILL)
                    self.nspawn.wait(10)
        finally:
            if self.mounted:
                subprocess.run(["umount", str(self.root)], check=False)
            shutil.rmtree(self.scratch, ignore_errors=True)

    def console_tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.console.read_text(errors="replace")[-size:]
        return ""

    # -- inside --

    def run(
        self,
        command: list[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str = "/",
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the container, as root or ``user``, with a clean environment."""
        environment = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": ""}
        environment |= env or {}
        inner = ["env", "-i", *(f"{k}={v}" for k, v in environment.items())]
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner, f"HOME=/home/{user}"]
        script = 'cd "$1" && shift && exec "$@"'
        result = subprocess.run(
            ["nsenter", f"--target={self.leader}", "--all", "sh", "-c", script, "sh", cwd,
             *inner, *command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-e", "-c", script], **kwargs)  # type: ignore[arg-type]

    def path(self, inside: str) -> Path:
        """The host path of ``inside`` (the overlay is visible from the host)."""
        return self.root / inside.lstrip("/")


def _remove_abandoned_runs() -> None:
    """Scratch directories of runs whose pytest is gone (killed before its teardown)."""
    for scratch in CACHE.glob("run-*-*"):
        owner = scratch.name.split("-")[1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            subprocess.run(["umount", "--lazy", str(scratch / "merged")], capture_output=True)
            shutil.rmtree(scratch, ignore_errors=True)


def _is_init(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/exe").endswith("/systemd")
    return False


def _descendants(pid: int) -> Iterator[int]:
    children: dict[int, list[int]] = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat_path.read_text()
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(stat_path.parent.name))
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        yield current
        todo.extend(children.get(current, []))


def readme_blocks(tag: str, readme: Path = ROOT / "README.md") -> list[str]:
    """The shell blocks marked ``<!-- install: TAG -->`` in the README, in order."""
    pattern = re.compile(rf"^<!-- install: {re.escape(tag)} -->\n```sh\n(.*?)^```$", re.M | re.S)
    return pattern.findall(readme.read_text())


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 60.0) -> object:
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
