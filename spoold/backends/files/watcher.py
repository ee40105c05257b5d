"""The inotify watch on incoming/: it only tells the main loop which names to look at.

Events are hints, never the truth: the kernel's queue can overflow, and
deleting or replacing the folder ends the watch. So an overflow or the end
of the watch asks the loop for a rescan, and the loop asks ``healthy()`` on
every turn and re-adds the watch (and rescans) when it is not.

The watch is read by the main loop itself: its descriptor sits in the
loop's selector beside the launcher's socket, and no thread is involved.
watchdog provides the inotify binding; its Observer is not used, for two
reasons measured in issue #5. Its move-event grouper holds every
IN_MOVED_FROM for 0.5 s (each claim renames a file out of incoming/), and
the events queued behind it wait as long, so once jobs flowed each one was
picked up about 0.5 s late. And its two threads cost about 0.8 ms of CPU per
job while competing with the loop for the GIL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from pathlib import Path

from watchdog.observers.inotify_c import (
    InotifyConstants,
    WatchDescriptor,
    inotify_add_watch,
    inotify_init,
    inotify_rm_watch,
)

_C = InotifyConstants
# A name that appears (created in place, or renamed in) and a writer that closes it.
WATCH_MASK = (
    _C.IN_CREATE
    | _C.IN_MOVED_TO
    | _C.IN_CLOSE_WRITE
    | _C.IN_DELETE_SELF
    | _C.IN_MOVE_SELF
    | _C.IN_ONLYDIR
    | _C.IN_DONT_FOLLOW
)
# The watch is over: the folder was deleted, moved away or unmounted.
_WATCH_ENDED = _C.IN_IGNORED | _C.IN_DELETE_SELF | _C.IN_MOVE_SELF | _C.IN_UNMOUNT
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_READ_SIZE = 64 * 1024


class Watcher:
    """An inotify watch on one folder that can tell when it has stopped working."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd = _checked(inotify_init(), "inotify_init")
        os.set_blocking(self.fd, False)
        os.set_inheritable(self.fd, False)
        self._wd: WatchDescriptor | None = None

    def fileno(self) -> int:
        return self.fd

    def start(self) -> None:
        path = os.fsencode(self.folder)
        wd = inotify_add_watch(self.fd, path, WATCH_MASK)
        self._wd = WatchDescriptor(_checked(wd, str(self.folder)))

    def healthy(self) -> bool:
        return self._wd is not None

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        """End the watch (its pending events are ignored); the descriptor stays."""
        if self._wd is not None:
            inotify_rm_watch(self.fd, self._wd)  # fails only if the kernel ended it already
            self._wd = None

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def take_names(self) -> list[tuple[str, bool]]:
        """Names reported since the last call: (file name, closed after writing).

        An empty name asks for a rescan: the kernel's queue overflowed, or the
        watch ended (and ``healthy()`` now says so).
        """
        names: list[tuple[str, bool]] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return names
            names.extend(self._parse(data))

    def _parse(self, data: bytes) -> list[tuple[str, bool]]:
        names = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start : start + length].rstrip(b"\0")
            offset = start + length
            if mask & _C.IN_Q_OVERFLOW:
                names.append(("", False))
            elif wd != self._wd:
                continue  # left over from a watch that was stopped
            elif mask & _WATCH_ENDED:
                self._wd = None
                names.append(("", False))
            elif name:
                names.append((os.fsdecode(name), bool(mask & _C.IN_CLOSE_WRITE)))
        return names


def _checked(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return result
