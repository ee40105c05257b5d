"""Lists of jobs for the dashboard: one state at a time, newest id first, filtered, paged.

Backend-independent: it asks the ``Catalog`` for the ids of a state (names
only, cheap even for 100,000 records) and reads only what a page needs. An
unfiltered page reads its 50 jobs. A filtered one reads newer to older until
the page is full or it has read ``scan_limit`` jobs, and then says how far it
got; the next page (or "search older") goes on from the last id it read. So
no request reads more than ``scan_limit`` records, however large the spool.

Ids sort by submission time, so "newest first" is "most recently submitted
first", and a cursor is just an id (``before``): bookmarkable, and stable
while new jobs arrive.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spoold.backends.files.admin import last_error, reference_time
from spoold.core.backend import Catalog, StoredJob
from spoold.web.redact import masked

PAGE_SIZE = 50
READ_CHUNK = 200  # jobs read per call to the catalog while filtering
# The dashboard's lists and the folder (state) each reads.
VIEWS = {
    "running": "active",
    "waiting": "incoming",
    "scheduled": "scheduled",
    "done": "done",
    "failed": "failed",
    "rejected": "failed",
    "cancelled": "failed",
}
RECORD_VIEWS = ("done", "failed", "rejected", "cancelled")
STATUSES = ("done", "failed", "rejected", "cancelled")
OUTCOMES = ("ok", "error", "timeout", "crashed", "interrupted", "cancelled")
# failed/ holds the three: each of its views shows one status
VIEW_STATUS = {"failed": "failed", "rejected": "rejected", "cancelled": "cancelled"}


@dataclass(frozen=True)
class Filters:
    """What a list may be narrowed to; every field empty: no filter."""

    cls: str = ""  # the class path, exactly
    method: str = ""
    status: str = ""  # done, failed, rejected
    outcome: str = ""  # the last attempt's
    since: float | None = None  # the job's time (finished, else submitted) at or after
    until: float | None = None  # ... before
    text: str = ""  # a substring of the params (as JSON), case-insensitive
    redact: tuple[str, ...] = ()  # keys whose values the search does not see ([web] redact)

    def any(self) -> bool:
        return bool(self.cls or self.method or self.status or self.outcome or self.text
                    or self.since is not None or self.until is not None)  # fmt: skip

    def matches(self, job: StoredJob) -> bool:
        doc = job.document or {}
        checks = (
            not self.cls or doc.get("class") == self.cls,
            not self.method or doc.get("method") == self.method,
            not self.status or doc.get("status") == self.status,
            not self.outcome or last_outcome(doc) == self.outcome,
            self.since is None or reference_time(job) >= self.since,
            self.until is None or reference_time(job) < self.until,
            not self.text or self.text.lower() in params_text(doc, self.redact).lower(),
        )
        return all(checks)


@dataclass(frozen=True)
class Row:
    """One job as a list shows it."""

    job: StoredJob
    target: str  # class.method
    status: str | None
    attempts: int
    when: float  # finished, else submitted, else the file's time
    error: str | None
    due_at: float | None  # a scheduled job's time to run


@dataclass
class Page:
    rows: list[Row]
    total: int  # jobs in the state, unfiltered
    scanned: int  # jobs read to fill this page
    paged: bool  # not the newest page (a link back to it)
    older: str | None  # the id to go on from, None when nothing older is left
    capped: bool  # the scan stopped at scan_limit before the page was full
    filtered: bool


def browse(
    catalog: Catalog,
    view: str,
    filters: Filters,
    *,
    before: str | None = None,
    scan_limit: int,
    page_size: int = PAGE_SIZE,
) -> Page:
    """One page of ``view`` (a key of VIEWS), newest first, from the id ``before`` on."""
    ids = catalog.ids(VIEWS[view])
    end = bisect.bisect_left(ids, before) if before else len(ids)
    paged = before is not None
    state = VIEWS[view]
    if not filters.any():
        chosen = ids[max(0, end - page_size) : end][::-1]
        rows = [row(job) for job in catalog.read(state, chosen)]
        older = chosen[-1] if chosen and end - page_size > 0 else None
        return Page(rows, len(ids), len(chosen), paged, older, capped=False, filtered=False)
    rows, scanned, last = [], 0, None
    for job_id, job in _newest_first(catalog, state, ids, end, scan_limit):
        scanned += 1
        last = job_id
        if job is not None and filters.matches(job):
            rows.append(row(job))
            if len(rows) == page_size:
                break
    left = end - scanned > 0
    capped = scanned >= scan_limit and len(rows) < page_size and left
    return Page(rows, len(ids), scanned, paged, last if left else None, capped, filtered=True)


def _newest_first(
    catalog: Catalog, state: str, ids: Sequence[str], end: int, limit: int
) -> Iterator[tuple[str, StoredJob | None]]:
    """(id, the job or None if it moved on) from ``ids[end - 1]`` down, at most ``limit``."""
    position = end
    floor = max(0, end - limit)
    while position > floor:
        chunk = list(ids[max(floor, position - READ_CHUNK) : position][::-1])
        position -= len(chunk)
        found = {job.id: job for job in catalog.read(state, chunk)}
        for job_id in chunk:
            yield job_id, found.get(job_id)


def row(job: StoredJob) -> Row:
    doc = job.document or {}
    history = doc.get("history")
    due = doc.get("due_at", doc.get("run_at"))
    return Row(
        job=job,
        target=f"{_text(doc.get('class')) or '?'}.{_text(doc.get('method')) or '?'}",
        status=_text(doc.get("status")),
        attempts=len(history) if isinstance(history, list) else 0,
        when=reference_time(job),
        error=last_error(doc) if job.document is not None else job.problem,
        due_at=_number(due),
    )


def last_outcome(doc: Mapping[str, Any]) -> str | None:
    history = doc.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        outcome = history[-1].get("outcome")
        return outcome if isinstance(outcome, str) else None
    return None


def params_text(doc: Mapping[str, Any], redact: Sequence[str] = ()) -> str:
    """The params as JSON, values under a ``redact`` key masked as the job's page masks
    them: a search must not confirm, letter by letter, a value the page hides."""
    try:
        return json.dumps(masked(doc.get("params", []), redact), ensure_ascii=False,
                          sort_keys=True)  # fmt: skip
    except (TypeError, ValueError):
        return ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
