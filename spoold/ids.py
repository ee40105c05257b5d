"""Job ids: sortable by submission time, unique without any coordination.

An id is a UTC timestamp to the millisecond plus 40 random bits, for example
``20261129T201512.123Z-3f9a1c2b7e``. Sorting ids sorts jobs by the time they
were made; the random part makes two clients that write in the same
millisecond collide about once in a trillion pairs, and the spool's
no-clobber renames catch even that.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time

_VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def new_job_id(now: float | None = None) -> str:
    """Return a fresh id for a job made at ``now`` (Unix seconds)."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{_utc_stamp(millis // 1000)}.{millis % 1000:03d}Z-{os.urandom(5).hex()}"


def derived_job_id(at: float, seed: str) -> str:
    """The id of a job made at ``at`` that is derived from ``seed`` (a follow-up from its
    parent's id): the same for the same two, so that doing it twice makes one job."""
    millis = int(at * 1000)
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:10]
    return f"{_utc_stamp(millis // 1000)}.{millis % 1000:03d}Z-{digest}"


@functools.lru_cache(maxsize=1)  # ids made in a burst share their second
def _utc_stamp(second: int) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(second))


def is_valid_id(candidate: str) -> bool:
    """True if ``candidate`` is safe to use as a file name stem and an id."""
    return bool(_VALID_ID.fullmatch(candidate)) and ".." not in candidate


def id_from_filename(name: str) -> str | None:
    """The id a job file name carries (``<id>.json``), or None if it is unusable."""
    stem = name.removesuffix(".json")
    return stem if stem != name and is_valid_id(stem) else None
