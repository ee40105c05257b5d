"""Imported by each spare while it waits for its request, and by nothing else.

A fresh process's first import copies the pages of the import machinery it
touches, which the launcher shares with it since the fork: about 0.5 ms and
90 page faults that the job's own import paid after its request came
(docs/PERFORMANCE.md). Importing this module first pays them while the spare
waits. It is spoold's own and runs nothing of a job's, so nothing is imported
for a job before the allowlist passes. It has the shape of a small job module
(a class with a method, a function, a constant), so that unmarshalling and
building those is rehearsed too.
"""

REHEARSED = True


def _noop() -> None:
    """A function, as a job module defines some."""


class Rehearsal:
    """A class with a method, as a job module defines one."""

    def run(self) -> None:
        _noop()
