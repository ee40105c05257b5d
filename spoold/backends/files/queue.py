"""In-memory order over the spool: which waiting job runs next, and when.

The disk is the truth; this is only an index of it, rebuilt from the
folders at every start. ``ReadyQueue`` orders runnable jobs by priority
(higher first), then age; ``DueQueue`` holds jobs waiting for a time.

Limits (``[limits]``): a job whose class is at its limit when it comes up
is set aside in its class's *lane*, in the same order, and the next job is
looked at; a lane's first job competes again with the main order as soon
as its class is free. So each job is set aside at most once while its
class stays blocked, and a blocked class, however high its priority,
never stops the others.
"""

from __future__ import annotations

import heapq
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from spoold.job import Job


@dataclass(order=True, slots=True)  # slots: a backlog of 100,000 keeps 100,000 of these
class ReadyEntry:
    sort_key: tuple[int, float, int]
    state: str = field(compare=False)  # the folder the file is in: incoming or scheduled
    name: str = field(compare=False)
    job: Job | None = field(compare=False, default=None)  # parsed copy, when kept in memory
    ready_since: float = field(compare=False, default=0.0)  # when it became due
    class_path: str = field(compare=False, default="")  # "" where unknown (not limited)

    @property
    def priority(self) -> int:
        return -self.sort_key[0]

    @property
    def enqueued_at(self) -> float:
        return self.sort_key[1]


class ReadyQueue:
    """Runnable jobs, highest priority first, then oldest first."""

    def __init__(self) -> None:
        self._heap: list[ReadyEntry] = []
        # Names per folder rather than (folder, name) pairs: with 100,000 waiting,
        # a tuple each is 6 MB of the daemon's memory.
        self._names: dict[str, set[str]] = {}
        self._order = itertools.count()
        self._lanes: dict[str, list[ReadyEntry]] = {}  # class -> its jobs set aside (a heap)

    def __len__(self) -> int:
        return len(self._heap) + sum(map(len, self._lanes.values()))

    def __contains__(self, location: tuple[str, str]) -> bool:
        state, name = location
        return name in self._names.get(state, ())

    def push(
        self,
        state: str,
        name: str,
        priority: int,
        enqueued_at: float,
        job: Job | None,
        ready_since: float,
        class_path: str = "",
    ) -> None:
        names = self._names.setdefault(state, set())
        if name in names:
            return
        key = (-priority, enqueued_at, next(self._order))
        # Interned: 100,000 waiting jobs of a few classes share a few strings.
        entry = ReadyEntry(key, state, name, job, ready_since, sys.intern(class_path))
        heapq.heappush(self._heap, entry)
        names.add(name)

    def oldest_ready_since(self) -> float | None:
        """When the job waiting longest for a slot became due (a scan: for the stats
        snapshot every few seconds, not for every turn)."""
        return min((entry.ready_since for entry in self._entries()), default=None)

    def pop(self, blocked: Callable[[str], bool] | None = None) -> ReadyEntry | None:
        """The best job whose class is not ``blocked`` (None if there is none), setting
        aside, each in its class's lane, the jobs of blocked classes that come first."""
        heap = self._heap
        while blocked is not None and heap and blocked(heap[0].class_path):
            entry = heapq.heappop(heap)
            heapq.heappush(self._lanes.setdefault(entry.class_path, []), entry)
        best = heap
        for class_path, lane in self._lanes.items():
            free = lane and (blocked is None or not blocked(class_path))
            if free and (not best or lane[0] < best[0]):
                best = lane
        if not best:
            return None
        entry = heapq.heappop(best)
        self._names[entry.state].discard(entry.name)
        return entry

    def held_back(self, blocked: Callable[[str], bool]) -> dict[str, int]:
        """Jobs set aside by class, of the classes still ``blocked``."""
        return {class_path: len(lane) for class_path, lane in self._lanes.items()
                if lane and blocked(class_path)}  # fmt: skip

    def lane_classes(self) -> list[str]:
        """The classes with jobs set aside."""
        return [class_path for class_path, lane in self._lanes.items() if lane]

    def remove(self, state: str, name: str) -> ReadyEntry | None:
        """Take one entry out of the order, wherever it is (a cancel: rare, so a scan)."""
        if (state, name) not in self:
            return None
        for heap in (self._heap, *self._lanes.values()):
            for index, entry in enumerate(heap):
                if entry.name == name and entry.state == state:
                    heap.pop(index)
                    heapq.heapify(heap)
                    self._names[state].discard(name)
                    return entry
        return None

    def _entries(self) -> itertools.chain[ReadyEntry]:
        return itertools.chain(self._heap, *self._lanes.values())


@dataclass(order=True, slots=True)
class DueEntry:
    due_at: float
    order: int
    name: str = field(compare=False)
    priority: int = field(compare=False)
    enqueued_at: float = field(compare=False)
    again: bool = field(compare=False, default=False)  # a retry, rerun or put-back of this run
    class_path: str = field(compare=False, default="")


class DueQueue:
    """Jobs in scheduled/, by the time they become runnable."""

    def __init__(self) -> None:
        self._heap: list[DueEntry] = []
        self._names: set[str] = set()
        self._order = itertools.count()
        # Waiting entries this run put back (retries, reruns, put-backs): burst mode
        # ends only when none is left, while jobs waiting for their own run_at may stay.
        self.again = 0

    def __len__(self) -> int:
        return len(self._heap)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def push(
        self,
        name: str,
        due_at: float,
        priority: int,
        enqueued_at: float,
        *,
        again: bool = False,
        class_path: str = "",
    ) -> None:
        if name in self._names:
            return
        order = next(self._order)
        entry = DueEntry(due_at, order, name, priority, enqueued_at, again, sys.intern(class_path))
        heapq.heappush(self._heap, entry)
        self._names.add(name)
        self.again += again

    def next_due(self) -> float | None:
        return self._heap[0].due_at if self._heap else None

    def remove(self, name: str) -> DueEntry | None:
        """Take one entry out, wherever it is (a cancel: rare, so a scan)."""
        if name not in self._names:
            return None
        index = next(i for i, entry in enumerate(self._heap) if entry.name == name)
        entry = self._heap.pop(index)
        heapq.heapify(self._heap)
        self._names.discard(name)
        self.again -= entry.again
        return entry

    def pop_due(self, now: float) -> list[DueEntry]:
        """Remove and return every entry due at or before ``now``."""
        due = []
        while self._heap and self._heap[0].due_at <= now:
            entry = heapq.heappop(self._heap)
            self._names.discard(entry.name)
            self.again -= entry.again
            due.append(entry)
        return due
