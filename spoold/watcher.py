"""The inotify watch on incoming/: it only nudges the main loop.

Events are hints, never the truth: a queue overflow loses them without a
word to the handler, an exception in a handler kills watchdog's dispatcher
thread for good, and deleting and recreating the watched folder kills its
emitter while the observer still says it is alive. So the handler only
records the file name and writes a byte into the loop's wake-up pipe, and
never raises; the loop asks ``healthy()`` on every turn and rebuilds the
watch (and rescans) when it is not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

WATCHED_EVENTS = (FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirDeletedEvent)


class Nudger(FileSystemEventHandler):
    """Passes names of files that appeared or were closed in incoming/ to the loop."""

    def __init__(self, wake_fd: int) -> None:
        self.wake_fd = wake_fd
        self.names: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()

    def on_any_event(self, event: FileSystemEvent) -> None:
        # An exception escaping here would kill watchdog's dispatcher thread for good.
        with contextlib.suppress(Exception):
            self._note(event)

    def _note(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            path, closed = event.dest_path, True
        elif isinstance(event, FileCreatedEvent | FileClosedEvent):
            path, closed = event.src_path, isinstance(event, FileClosedEvent)
        elif isinstance(event, DirDeletedEvent):
            path, closed = "", False  # the folder itself went away: an empty name asks for a rescan
        else:
            return
        self.names.put((os.path.basename(os.fsdecode(path)), closed))
        with contextlib.suppress(BlockingIOError):  # a full pipe: a wake-up is already pending
            os.write(self.wake_fd, b".")


class Watcher:
    """A watchdog observer on one folder that can tell when it has stopped working."""

    def __init__(self, folder: Path, wake_fd: int) -> None:
        self.folder = folder
        self.nudger = Nudger(wake_fd)
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        observer = Observer()
        # Only the events the nudger uses: the kernel then never queues the
        # open/modify/close-after-reading events of every job file, which
        # otherwise cost more of the daemon's time than the job itself.
        observer.schedule(
            self.nudger, str(self.folder), recursive=False, event_filter=list(WATCHED_EVENTS)
        )
        observer.start()
        self._observer = observer

    def healthy(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in observer.emitters)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._observer is None:
            return
        # Stopping races with the emitter thread, which then logs a harmless
        # "queue_events() called when the thread is inactive" at ERROR.
        emitter_log = logging.getLogger("watchdog.observers.inotify")
        level = emitter_log.level
        emitter_log.setLevel(logging.CRITICAL)
        try:
            self._observer.stop()
            self._observer.join(timeout=5)
        finally:
            emitter_log.setLevel(level)
            self._observer = None

    def take_names(self) -> list[tuple[str, bool]]:
        """Names reported since the last call: (file name, closed after writing)."""
        names = []
        while True:
            try:
                names.append(self.nudger.names.get_nowait())
            except queue.Empty:
                return names
