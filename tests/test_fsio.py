"""Atomic file operations (spoold/backends/files/fsio.py) on the real filesystem."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from spoold.backends.files.fsio import (
    TEMP_PREFIX,
    UnsafeFile,
    read_regular,
    rename_noreplace,
    write_new,
)


def test_write_new_creates_the_file_whole(tmp_path: Path) -> None:
    """write_new leaves exactly the target, with the data, and no temp file."""
    target = write_new(tmp_path, "a.json", b"hello")
    assert target == tmp_path / "a.json"
    assert target.read_bytes() == b"hello"
    assert os.listdir(tmp_path) == ["a.json"]


def test_write_new_never_replaces(tmp_path: Path) -> None:
    """An existing name raises FileExistsError; the old content stays and no temp is left."""
    (tmp_path / "a.json").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_new(tmp_path, "a.json", b"new")
    assert (tmp_path / "a.json").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.json"]


def test_write_new_without_fsync_still_writes(tmp_path: Path) -> None:
    """durable=False skips the fsyncs but not the atomic rename."""
    write_new(tmp_path, "b.json", b"x" * 200_000, durable=False)
    assert (tmp_path / "b.json").stat().st_size == 200_000
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TEMP_PREFIX)]


def test_rename_noreplace_moves(tmp_path: Path) -> None:
    """A free target name: the file moves."""
    (tmp_path / "src").write_bytes(b"S")
    rename_noreplace(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_bytes() == b"S"
    assert not (tmp_path / "src").exists()


def test_rename_noreplace_keeps_both_files_when_the_target_exists(tmp_path: Path) -> None:
    """A taken name raises FileExistsError and neither file is touched."""
    (tmp_path / "src").write_bytes(b"S")
    (tmp_path / "dst").write_bytes(b"D")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "src").read_bytes() == b"S"
    assert (tmp_path / "dst").read_bytes() == b"D"


def test_rename_noreplace_of_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    """Losing a claim race is FileNotFoundError, as for os.rename."""
    with pytest.raises(FileNotFoundError):
        rename_noreplace(tmp_path / "gone", tmp_path / "dst")


def test_read_regular_reads_a_plain_file(tmp_path: Path) -> None:
    """A plain file gives its bytes, mtime and owner."""
    path = tmp_path / "job.json"
    path.write_bytes(b'{"a": 1}')
    content = read_regular(path, max_bytes=100)
    info = path.stat()
    assert content.data == b'{"a": 1}'
    assert content.mtime == info.st_mtime
    assert (content.uid, content.gid) == (info.st_uid, info.st_gid)


def test_read_regular_accepts_exactly_max_bytes(tmp_path: Path) -> None:
    """The cap is inclusive."""
    path = tmp_path / "job.json"
    path.write_bytes(b"x" * 64)
    assert len(read_regular(path, max_bytes=64).data) == 64


def test_read_regular_refuses_an_oversize_file(tmp_path: Path) -> None:
    """A file over max_bytes is refused with its size and the cap."""
    path = tmp_path / "job.json"
    path.write_bytes(b"x" * 65)
    with pytest.raises(UnsafeFile, match=r"65 bytes, more than max_job_bytes \(64\)"):
        read_regular(path, max_bytes=64)


def test_read_regular_refuses_a_symlink(tmp_path: Path) -> None:
    """A symlink is never followed, even to a good file."""
    target = tmp_path / "target.json"
    target.write_bytes(b"{}")
    (tmp_path / "link.json").symlink_to(target)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        read_regular(tmp_path / "link.json", max_bytes=100)


def test_read_regular_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer is refused at once instead of blocking the reader."""
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            read_regular(fifo, max_bytes=100)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "read_regular blocked on a FIFO"
    assert isinstance(outcome[0], UnsafeFile)
    assert "not a regular file" in str(outcome[0])


def test_read_regular_refuses_a_socket(tmp_path: Path) -> None:
    """A UNIX socket in the spool is refused."""
    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        with pytest.raises(UnsafeFile, match="not a regular file"):
            read_regular(path, max_bytes=100)


def test_read_regular_refuses_a_hard_linked_file(tmp_path: Path) -> None:
    """A file with a second hard link (someone else's file linked in) is refused."""
    original = tmp_path / "original"
    original.write_bytes(b"{}")
    os.link(original, tmp_path / "job.json")
    with pytest.raises(UnsafeFile, match="2 hard links"):
        read_regular(tmp_path / "job.json", max_bytes=100)


def test_read_regular_refuses_a_directory(tmp_path: Path) -> None:
    """A folder named like a job is refused."""
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_regular(tmp_path / "dir.json", max_bytes=100)


def test_read_regular_of_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    """A file claimed by someone else meanwhile is FileNotFoundError, not UnsafeFile."""
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "gone.json", max_bytes=100)
