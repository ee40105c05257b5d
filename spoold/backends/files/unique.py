"""The unique keys of the jobs that wait or run, for a backend that one daemon holds.

A job with a ``unique_key`` holds its key from the moment it is accepted
until its record is filed; another submission with the key meanwhile is
rejected as ``duplicate of <id>``. The file spool keeps the index in
memory and rebuilds it at every start: from scheduled/ and active/ before
the first job starts, and from incoming/ as the backlog is read (slices of
200 a turn, oldest first), so that start-up is not slowed by reading every
waiting file first. Until the backlog is read, of two twins the first one
read holds the key: the other is rejected all the same, as a duplicate of
it.
"""

from __future__ import annotations


class UniqueKeys:
    """Which job holds each unique key, and each holder's key."""

    def __init__(self) -> None:
        self.holders: dict[str, str] = {}  # key -> job id
        self.keys: dict[str, str] = {}  # job id -> key

    def hold(self, key: str, job_id: str) -> str | None:
        """Let ``job_id`` hold ``key``: None, or the id of the other job that holds it."""
        holder = self.holders.get(key)
        if holder is not None and holder != job_id:
            return holder
        self.holders[key] = job_id
        self.keys[job_id] = key
        return None

    def renamed(self, old_id: str, new_id: str) -> None:
        """A holder was claimed under a fresh id (its own was taken)."""
        key = self.keys.pop(old_id, None)
        if key is not None:
            self.holders[key] = new_id
            self.keys[new_id] = key

    def release(self, job_id: str) -> None:
        """The job's record was filed: its key is free."""
        key = self.keys.pop(job_id, None)
        if key is not None and self.holders.get(key) == job_id:
            del self.holders[key]

    def __len__(self) -> int:
        return len(self.holders)
