"""Ways around the allowlist: every one is rejected and imports nothing (SPEC.md "Allowlist
only", "Nothing is imported for a job before it passes the allowlist").

The real daemon gets job files that try private methods, attribute paths,
bare modules, builtins, look-alike letters, parser bombs, path characters
and wrong JSON types. Marker modules leave a file when imported; one of them
(``markjobs``) is on the allowlist, so a bypass that reached the worker would
import it and leave its mark. A normal job at the end imports it for real,
which proves the marks would have shown. ``test_rejections.py`` covers the
plain cases (off-list class or method, ``_secret``, bad types of other fields).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import JOBS_DIR, TESTJOBS_ALLOW, Spool, daemon_env, wait_for

from spoold.backends.files.fsio import UnsafeFile, read_regular

MAX_JOB_BYTES = 400_000  # room for the 200,000-digit number
MARKER_SOURCE = '''"""Leaves {name}.imported next to itself when imported."""
import os  # so that "{name}.os.path" names a real attribute path
from pathlib import Path

Path(__file__).with_name("{name}.imported").touch()


class Job:
    def run(self):
        return "ran"
'''
# markjobs.Job.run is allowed; markother is a module nobody allows.
MARKER_MODULES = ("markjobs", "markother")


def doc(class_path: Any = "markjobs.Job", method: Any = "run", **fields: Any) -> bytes:
    return json.dumps({"class": class_path, "method": method, **fields}).encode()


def nested(depth: int) -> bytes:
    """An allowed job whose params are ``depth`` arrays inside each other."""
    return doc()[:-1] + b', "params": ' + b"[" * depth + b"]" * depth + b"}"


HUGE_NUMBER = doc()[:-1] + b', "params": [1' + b"0" * 199_999 + b"]}"
PLAIN_NAME = 'must be a dotted path such as "app.jobs.SomeClass"'
PLAIN_METHOD = 'field "method" must be a plain method name'
PRIVATE = "names a private method"
OFF_LIST = "is not on the allowlist"

# (file id, bytes, what the reason must say)
CASES: list[tuple[str, bytes, str]] = [
    ("m-init", doc(method="__init__"), PRIVATE),
    ("m-class", doc(method="__class__"), PRIVATE),
    ("m-private", doc(method="_private"), PRIVATE),
    ("m-reduce", doc(method="__reduce__"), PRIVATE),
    ("m-dotted", doc(method="os.system"), PLAIN_METHOD),
    ("m-globals", doc(method="run.__globals__"), PLAIN_METHOD),
    ("c-os", doc("os", "system"), PLAIN_NAME),
    ("c-bare-marker", doc("marker_module", "Marked"), PLAIN_NAME),
    ("c-bare-markjobs", doc("markjobs", "Job"), PLAIN_NAME),
    ("c-eval", doc("builtins.eval", "run"), 'class "builtins.eval" ' + OFF_LIST),
    ("c-object", doc("builtins.object", "run"), 'class "builtins.object" ' + OFF_LIST),
    ("c-method-path", doc("markjobs.Job.run", "run"), 'class "markjobs.Job.run" ' + OFF_LIST),
    ("c-dunder-path", doc("markjobs.Job.__class__", "run"), OFF_LIST),
    ("c-submodule", doc("markjobs.os.path", "join"), 'class "markjobs.os.path" ' + OFF_LIST),
    ("c-testjobs-path", doc("testjobs.Noop.run", "run"), OFF_LIST),
    ("c-testjobs-os", doc("testjobs.os.path", "join"), OFF_LIST),
    ("c-other", doc("markother.Job", "run"), 'class "markother.Job" ' + OFF_LIST),
    ("u-cyrillic", doc("markjobs.J\u043eb"), PLAIN_NAME),  # Cyrillic o
    ("u-fullwidth", doc("\uff4d\uff41\uff52\uff4bjobs.Job"), PLAIN_NAME),
    ("u-zero-width", doc("markjobs.Job\u200b"), PLAIN_NAME),
    ("u-method", doc(method="r\u0443n"), PLAIN_METHOD),  # Cyrillic u
    ("u-method-fullwidth", doc(method="\uff52\uff55\uff4e"), PLAIN_METHOD),
    ("deep-params", nested(10_000), "nested too deeply"),
    ("deep-bare", b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
    ("huge-number", HUGE_NUMBER, "digits"),
    ("p-slash", doc("markjobs/Job"), PLAIN_NAME),
    ("p-dotdot", doc("../markjobs.Job"), PLAIN_NAME),
    ("p-double-dot", doc("markjobs..Job"), PLAIN_NAME),
    ("p-nul", doc("markjobs.Job\x00"), PLAIN_NAME),
    ("p-method-slash", doc(method="run/../x"), PLAIN_METHOD),
    ("p-method-dotdot", doc(method=".."), PLAIN_METHOD),
    ("p-method-nul", doc(method="run\x00"), PLAIN_METHOD),
    ("t-class-array", doc(["markjobs.Job"]), 'field "class" must be a string, not an array'),
    ("t-class-object", doc({"markjobs.Job": "run"}), 'field "class" must be a string, not an obj'),
    ("t-method-array", doc(method=["run"]), 'field "method" must be a string, not an array'),
    ("t-method-object", doc(method={"run": 1}), 'field "method" must be a string, not an obj'),
]


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """A folder holding the marker modules (it goes on the daemon's python_path)."""
    folder = tmp_path / "markers"
    folder.mkdir()
    for name in MARKER_MODULES:
        (folder / f"{name}.py").write_text(MARKER_SOURCE.format(name=name))
    return folder


def imported(markers: Path, tmp_path: Path) -> list[str]:
    """Which marker modules have been imported (marker_module marks tmp_path, see harness)."""
    found = [name for name in MARKER_MODULES if (markers / f"{name}.imported").exists()]
    if (tmp_path / "marker-module-imported").exists():
        found.append("marker_module")
    return found


def test_no_way_around_the_allowlist_runs_or_imports_anything(
    spool: Spool,
    start_daemon: StartDaemon,
    markers: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each bypass attempt is rejected with a reason naming the problem, nothing is imported,
    and a normal job dropped afterwards runs (and does import its module)."""
    # The daemon itself could import the marker modules too (as it could an installed
    # app), so an import at intake would show, not only one in a worker.
    path = [str(JOBS_DIR), str(markers), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    start_daemon(
        spool={"max_job_bytes": MAX_JOB_BYTES},
        worker={"python_path": [str(JOBS_DIR), str(markers)]},
        allow={**TESTJOBS_ALLOW, "markjobs.Job": ["run"]},
    )
    for job_id, data, _reason in CASES:
        spool.drop_renamed(f"{job_id}.json", data)
    for job_id, data, reason in CASES:
        record = spool.wait_rejected(job_id)
        assert reason in record["reason"], (job_id, record["reason"])
        assert record["attempts"] == 0, job_id
        assert len(data) <= MAX_JOB_BYTES, job_id  # rejected for what it says, not its size
    assert spool.job_ids("done") == []
    assert imported(markers, tmp_path) == []
    control = spool.drop_job("control", {"class": "markjobs.Job", "method": "run"})
    assert spool.wait_record(control)["result"] == "ran"
    assert imported(markers, tmp_path) == ["markjobs"]


def test_the_markers_show_an_import(markers: Path, tmp_path: Path) -> None:
    """Control: importing markother and marker_module leaves their marks, so their absence
    above means they were not imported."""
    env = daemon_env(tmp_path, "control", None)
    env["PYTHONPATH"] = os.pathsep.join([str(JOBS_DIR), str(markers)])
    code = "import markother, marker_module"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    assert imported(markers, tmp_path) == ["markother", "marker_module"]


def test_a_file_written_in_place_past_the_cap_is_rejected_with_its_size(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A job file that grows past max_job_bytes while the daemon watches it is rejected,
    the reason naming the cap, and intake goes on."""
    start_daemon(spool={"max_job_bytes": 100_000})
    with open(spool.folder("incoming") / "grows.json", "wb") as handle:
        handle.write(b'{"class": "testjobs.Noop", "method": "run", "pad": "')
        for _ in range(30):  # 150 kB in steps, each visible to the daemon
            handle.write(b"x" * 5_000)
            handle.flush()
            time.sleep(0.005)
        handle.write(b'"}')
    record = spool.wait_rejected("grows")
    assert "max_job_bytes (100000)" in record["reason"], record["reason"]
    seen = re.search(r"is (\d+) bytes", record["reason"])
    assert "grew past" in record["reason"] or (seen and int(seen[1]) > 100_000), record["reason"]
    assert record["raw"] == ""  # the bytes over the cap are not kept either
    control = spool.drop_job("after", {"class": "testjobs.Noop", "method": "run"})
    assert spool.wait_record(control)["status"] == "done"


def test_read_regular_never_returns_more_than_the_cap_of_a_growing_file(tmp_path: Path) -> None:
    """While another thread keeps growing the file, each read returns at most the cap or
    raises UnsafeFile; it runs until reads have seen the file grow after fstat."""
    path = tmp_path / "grows.json"
    path.write_bytes(b"")
    cap = 256 * 1024
    stop = threading.Event()
    writer = threading.Thread(target=_grow_again_and_again, args=(path, 2 * cap, stop))
    writer.start()
    outcomes: dict[str, int] = {"returned": 0, "too big": 0, "grew": 0}
    try:
        wait_for(lambda: _read_once(path, cap, outcomes) and outcomes["grew"] >= 3, 10.0)
    finally:
        stop.set()
        writer.join()
    assert outcomes["returned"] > 0, outcomes


def _read_once(path: Path, cap: int, outcomes: dict[str, int]) -> bool:
    for _ in range(200):
        try:
            content = read_regular(path, cap)
        except UnsafeFile as exc:
            outcomes["grew" if "grew past" in str(exc) else "too big"] += 1
            continue
        assert len(content.data) <= cap
        outcomes["returned"] += 1
    return True


def _grow_again_and_again(path: Path, size: int, stop: threading.Event) -> None:
    """Empty the file, append until it is ``size`` bytes, repeat until told to stop."""
    chunk = b"x" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while not stop.is_set():
            os.ftruncate(fd, 0)
            for _ in range(size // len(chunk)):
                os.write(fd, chunk)
    finally:
        os.close(fd)
