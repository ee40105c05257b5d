"""``spoold top`` as a person uses it: the real program in a tmux pane, driven by keys, read
back with ``capture-pane``, against a real daemon on a temporary spool; and ``spoold status
--watch`` as a subprocess, stopped by a signal.

tmux is a Debian package that ``.ci/run`` installs; where it is missing these tests skip
with one line, and in CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, wait_for, write_config

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 120, 30
EXITED = "top exited with status"


def require_tmux() -> str:
    """tmux's path; skip the calling test without it, or fail it in CI."""
    found = shutil.which("tmux")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("tmux is missing; .ci/run installs it", pytrace=False)
    pytest.skip("tmux is not installed (apt-get install tmux) — spoold top's tests need it")


class Pane:
    """One tmux server of the test's own (its socket in tmp_path) running one command."""

    def __init__(self, tmux: str, socket: Path, env: dict[str, str]) -> None:
        self.tmux = tmux
        self.socket = socket
        self.env = env

    def run(self, *args: str) -> str:
        command = [self.tmux, "-S", str(self.socket), "-f", "/dev/null", *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: {result.stderr.strip()}")
        return result.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "top", "-x", str(WIDTH), "-y", str(HEIGHT), command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "top")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "top", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "top", "-l", text)  # -l: the characters, not key names

    def wait(self, check: Callable[[str], object], timeout: float = 15.0) -> str:
        """Poll the screen until ``check(screen)`` holds; return that screen."""
        shown: list[str] = [""]

        def look() -> str | None:
            shown[0] = self.screen()
            return shown[0] if check(shown[0]) else None

        return wait_for(look, timeout, lambda: f"the screen was:\n{shown[0]}")

    def wait_text(self, *texts: str, timeout: float = 15.0) -> str:
        return self.wait(lambda screen: all(text in screen for text in texts), timeout)

    def kill(self) -> None:
        subprocess.run([self.tmux, "-S", str(self.socket), "kill-server"], env=self.env,
                       capture_output=True, timeout=30)  # fmt: skip


@pytest.fixture
def pane(tmp_path: Path, leak_check: str) -> Iterator[Pane]:
    tmux = require_tmux()
    # Not COLUMNS or LINES either: curses takes them over the pane's own size (pytest-xdist
    # sets COLUMNS in its workers, and the view was drawn 85 wide in a 120-column pane).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPOOLD_", "TMUX")) and k not in ("COLUMNS", "LINES")}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["SPOOLD_TEST_TOKEN"] = leak_check  # the tmux server and all it runs: a leak is found
    env["LANG"] = "C.UTF-8"
    pane = Pane(tmux, tmp_path / "tmux.sock", env)
    yield pane
    pane.kill()


def top_command(config: Path, *args: str) -> str:
    """The pane's command: top, then its exit status, then a wait (so the pane stays)."""
    top = f"{sys.executable} -m spoold top --config {config} --interval 0.5 {' '.join(args)}"
    return f'{top}; echo "{EXITED} $?"; exec sleep 600'


def lines_in(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def row(screen: str, job_id: str) -> str:
    """The screen's line for ``job_id``; AssertionError if it has none."""
    lines = [line for line in screen.splitlines() if job_id in line]
    assert lines, f"no line for {job_id} on:\n{screen}"
    return lines[0]


def test_top_shows_the_daemon_filters_details_and_retries(
    pane: Pane, spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(metrics={"interval": 0.5})
    counter = tmp_path / "flaky-counter"
    flaky = spool.submit("testjobs.Flaky", "run", [str(counter), 1], max_retries=0)
    spool.wait_record(flaky, "failed")
    sleeper = spool.submit("testjobs.Sleeper", "run", [60], timeout=60)
    wait_for(lambda: spool.job_ids("active") == [sleeper], 15, "the slow job running")

    pane.start(top_command(daemon.config))
    screen = pane.wait_text(
        "active 1", "failed 1", f"{sleeper}  ", f"{flaky}  ", "busy 1/2", "stats fresh",
        "q quit  / filter",  # the footer, drawn last: the capture holds a whole redraw
    )  # fmt: skip
    lines = screen.splitlines()
    assert lines[0].startswith(f"spoold top  {spool.root}")
    assert re.search(rf"pid {daemon.pid} \(up \d+s, stats fresh\)", lines[1]), lines[1]
    assert "incoming 0   scheduled 0   active 1   done 0   failed 1" in screen
    assert re.search(r"  \d+s/60s +1  testjobs\.Sleeper\.run$", row(screen, sleeper))
    assert row(screen, flaky).endswith("testjobs.Flaky.run  RuntimeError: flaky failure 1 of 1")
    assert lines[-1].startswith("q quit  / filter")

    # k selects the row above (the selection stays on its job as rows come and go).
    pane.keys("k")
    pane.wait(lambda screen: row(screen, sleeper).startswith("> "))
    # R on a running job: nothing to retry, and the footer says why.
    pane.keys("R")
    pane.wait_text("R retries a failed job: select one in FAILED first")

    # j moves the selection down to the failure.
    pane.keys("j")
    pane.wait(lambda screen: row(screen, flaky).startswith("> "))

    # / filters both tables by a substring of the class.method.
    pane.keys("/")
    pane.type("flaky")
    pane.wait_text("filter (id or class.method): flaky_")
    pane.keys("Enter")
    screen = pane.wait_text("[filter: flaky, Esc clears]", "RUNNING 0 of 1", "FAILED 1 of 1")
    assert sleeper not in screen and "(none match the filter)" in screen
    assert row(screen, flaky).startswith("> ")

    # Enter shows the job as `spoold show` does; any key goes back.
    pane.keys("Enter")
    # The path's line may wrap at the pane's 120 columns (pytest-xdist's temp paths are longer).
    header = f"# {spool.folder('failed')}/{flaky}.json"
    # curses writes a redraw in pieces, and a capture can fall between them: wait for the footer
    # too, the last thing the page draws.
    screen = pane.wait(lambda shown: header in shown.replace("\n", "")
                       and '"class": "testjobs.Flaky"' in shown
                       and "any other key returns" in shown.splitlines()[-1])  # fmt: skip
    pane.keys("x")
    pane.wait_text("FAILED 1 of 1", "[filter: flaky")

    # R asks first; y retries, and the job runs again (its second attempt succeeds).
    pane.keys("R")
    pane.wait_text(f"retry {flaky} (testjobs.Flaky.run)? y/n")
    pane.keys("y")
    pane.wait_text(f"retried {flaky}: it waits in incoming again")
    wait_for(lambda: lines_in(counter) == 2, 15, "the retried job's second attempt")
    done = wait_for(lambda: list(spool.records("done").values()), 15, "a done record")
    assert [record["class"] for record in done] == ["testjobs.Flaky"]
    assert flaky not in spool.job_ids("failed")
    pane.wait_text("done 1   failed 0", "FAILED 0 of 0")

    # Esc clears the filter; q quits, and the shell says how.
    pane.keys("Escape")
    pane.wait(lambda screen: sleeper in screen and "[filter" not in screen)
    pane.keys("q")
    screen = pane.wait_text(f"{EXITED} 0")
    assert "Traceback" not in screen


def test_top_says_when_redis_cannot_be_reached_and_recovers(
    pane: Pane, spool: Spool, tmp_path: Path, redis_server: object
) -> None:
    from redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    sections = {"spool": {"backend": "redis", "url": redis_server.url, "name": "test",
                          "redis_timeout": 1.0}}  # fmt: skip
    config = write_config(tmp_path / "redis.toml", spool, sections)
    pane.start(top_command(config))
    pane.wait_text("incoming 0   scheduled 0   active 0   done 0   failed 0", "daemon  NOT RUNNING")

    redis_server.kill()
    screen = pane.wait_text(
        f"! cannot reach Redis at {redis_server.url}", "(retrying every 0.5s)", "jobs ?"
    )
    error = row(screen, "! cannot reach Redis")
    assert error.endswith("(retrying every 0.5s)")
    assert "Traceback" not in screen and "jobs ?" in screen

    redis_server.restart()
    pane.wait(lambda screen: "! " not in screen and "failed 0" in screen)
    pane.keys("q")
    pane.wait_text(f"{EXITED} 0")


def test_top_on_a_terminal_curses_does_not_know_is_one_line(
    pane: Pane, spool: Spool, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", spool)
    pane.start(f"TERM=no-such-terminal {top_command(config)}")
    screen = pane.wait_text(f"{EXITED} 1")
    assert "spoold: cannot draw on this terminal (TERM='no-such-terminal'): " in screen
    assert "Traceback" not in screen


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_status_watch_prints_timestamped_rounds_until_a_signal(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, signum: int
) -> None:
    daemon = start_daemon(metrics={"interval": 0.5})
    wait_for(lambda: spool.root.joinpath("stats.json").exists(), 10, "the daemon's first stats")
    output = tmp_path / "watch.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "spoold", "status", "--config", str(daemon.config)]
    with open(output, "wb") as out:
        proc = subprocess.Popen([*command, "--watch", "1"], stdout=out, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        # Each round is flushed whole: two stats lines mean two whole rounds.
        wait_for(lambda: output.read_text().count("\nstats ") >= 2, 15, output.read_text)
        proc.send_signal(signum)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and proc.stderr.read() == b""
    text = output.read_text()
    assert "\x1b" not in text
    rounds = re.split(r"^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} ---\n", text, flags=re.M)
    assert rounds[0] == "" and len(rounds) >= 3, text
    for round_text in rounds[1:3]:
        assert round_text.startswith(
            f"spool      {spool.root}\ndaemon     running (pid {daemon.pid})"
        )
        assert "\nfailed     0\n" in round_text
        assert re.search(
            r"^stats      busy 0/2, (no full minute yet|\d+ finished in the last full minute),"
            r" 0 failed in the last hour \(1 daemon\)$", round_text, flags=re.M,
        ), round_text  # fmt: skip
