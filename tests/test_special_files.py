"""Things in incoming/ that are not plain job files (ARCHITECTURE.md "Intake details").

A link to a secret, a hard link to a file outside the spool, a folder, a
UNIX socket and a device node each end as a rejection record or are left
alone with one log line; none is read through, run or changed, and intake
keeps taking jobs. ``test_rejections.py`` already covers a symlink to a
valid job, a FIFO, and the reason for a hard link; this adds what it lacks.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Daemon, Spool, job, stays_false, wait_for

SECRET = Path("/etc/shadow")
FOLDER_WARNING = "incoming/x.json is a folder, not a job file; leaving it alone"


def file_facts(path: Path) -> tuple[bytes, int, int, int, float]:
    """Bytes, mode, owner, link count and mtime: what "untouched" means."""
    info = path.stat()
    return path.read_bytes(), info.st_mode, info.st_uid, info.st_nlink, info.st_mtime


def spool_inodes(spool: Spool) -> set[tuple[int, int]]:
    """(device, inode) of every entry anywhere in the spool."""
    found = set()
    for folder, _dirs, names in os.walk(spool.root):
        for name in names:
            info = os.lstat(Path(folder) / name)
            found.add((info.st_dev, info.st_ino))
    return found


def bind_socket_at(target: Path) -> socket.socket:
    """A listening UNIX socket whose file is ``target``.

    Bound in a short folder and renamed into place, because a socket path
    must fit in 108 bytes and the test's spool path may not.
    """
    short = Path(tempfile.mkdtemp(prefix="spoold-sock-"))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(short / "s"))
    server.listen()
    os.rename(short / "s", target)
    short.rmdir()
    return server


def test_links_folders_and_sockets_are_refused_and_intake_goes_on(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Each special file ends rejected or left alone, nothing behind it is read or run,
    and a job dropped after them all runs."""
    daemon = start_daemon()
    incoming = spool.folder("incoming")
    ran = tmp_path / "ran.jsonl"
    outside = tmp_path / "outside.json"
    outside.write_bytes(json.dumps(job("Recorder", params=[str(ran), "hard-link"])).encode())
    outside_before = file_facts(outside)
    secret_before = file_facts(SECRET) if SECRET.exists() else None

    os.symlink(SECRET, incoming / "secret.json")
    os.link(outside, incoming / "hardlink.json")
    (incoming / "x.json").mkdir()
    (incoming / "x.json" / "inner.json").write_bytes(outside_before[0])
    server = bind_socket_at(incoming / "s.json")
    try:
        control = spool.drop_job("control", job("Noop"))
        assert spool.wait_record(control)["status"] == "done"
        _check_secret_link(spool, secret_before)
        _check_hard_link(spool, outside, outside_before)
        assert "not a regular file" in spool.wait_rejected("s")["reason"]
        _check_folder_left_alone(spool, daemon, outside_before[0])
    finally:
        server.close()
    assert not ran.exists()
    assert spool.job_ids("done") == ["control"]


def _check_secret_link(spool: Spool, before: tuple[bytes, int, int, int, float] | None) -> None:
    """The link is rejected as a link; no byte of its target reaches the record."""
    record = spool.wait_rejected("secret")
    assert "symbolic link" in record["reason"]
    assert record["raw"] == ""
    if before is not None:
        stored = (spool.folder("failed") / "secret.json").read_bytes()
        for line in before[0].splitlines():
            assert line.strip() == b"" or line not in stored
        assert file_facts(SECRET) == before


def _check_hard_link(
    spool: Spool, outside: Path, before: tuple[bytes, int, int, int, float]
) -> None:
    """Rejected unread; the outside file keeps its bytes, mode, owner and mtime, and the
    spool keeps no second name for it."""
    record = spool.wait_rejected("hardlink")
    assert "hard links" in record["reason"]
    assert record["raw"] == ""
    info = outside.stat()
    wait_for(lambda: (info.st_dev, info.st_ino) not in spool_inodes(spool), 5.0)
    assert file_facts(outside) == before


def _check_folder_left_alone(spool: Spool, daemon: Daemon, inner: bytes) -> None:
    """The folder and its contents stay; one warning, not one per rescan (every 0.5 s)."""

    def warnings() -> int:
        return sum(FOLDER_WARNING in line for line in daemon.log_lines())

    wait_for(warnings, 5.0, "a warning about incoming/x.json")
    assert stays_false(lambda: warnings() > 1, 1.5)
    assert (spool.folder("incoming") / "x.json" / "inner.json").read_bytes() == inner
    assert spool.record("x", "failed") is None


def test_a_device_node_is_refused_and_intake_goes_on(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A character device (like /dev/null) named like a job is rejected, not read."""
    node = spool.folder("incoming") / "dev.json"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")
    start_daemon()
    control = spool.drop_job("control", job("Noop"))
    assert spool.wait_record(control)["status"] == "done"
    record = spool.wait_rejected("dev")
    assert "not a regular file" in record["reason"]
    assert record["raw"] == ""
    assert spool.job_ids("done") == ["control"]
