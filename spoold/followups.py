"""Follow-up jobs: the job a record starts when it is filed (``on_success``, ``on_failure``).

A job may carry ``on_success`` and ``on_failure``, each a job document of
its own (checked as one, and against the allowlist, when the parent is
accepted). When the parent's record is filed ``done``, its ``on_success``
is submitted; filed ``failed`` (its retries exhausted: errors, timeouts and
crashes alike), its ``on_failure``. A rejected or cancelled job starts
nothing: the one was never accepted, the other was stopped on purpose.

Exactly once. The core names the follow-up in the record before it is
filed (``plan``: ``follow_ups``, a list of ids), under an id derived from
the parent's id and finishing time, and every backend submits what a
record names (``children``) as part of filing it: Redis in the same
function that files the record, the file spool between writing the record
and moving it out of ``active/``, and again at recovery if a crash came
between (a follow-up whose id is taken is not submitted again). So a crash
neither loses nor doubles a follow-up.

What it knows of its parent: the field ``parent`` of its job document,
``{"id", "status", "result"}`` (``reason`` instead of ``result`` for a
failure; a result over ``RESULT_LIMIT`` bytes of JSON is left out, with
``"result_omitted": true``), and, while it runs, the same as JSON in the
environment variable ``SPOOLD_PARENT``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spoold.config import Config
from spoold.ids import derived_job_id
from spoold.job import (
    DAEMON_KEYS,
    SUBMITTED_BY,
    Rejected,
    check_document_allowed,
    encode,
    submitter_of,
)

PARENT = "parent"  # the follow-up's field: what it knows of its parent
FOLLOW_UPS = "follow_ups"  # the parent record's field: the ids of the jobs it started
FOLLOW_UP_REJECTED = "follow_up_rejected"  # ... and why its follow-up will be rejected
BRANCHES = {"done": "on_success", "failed": "on_failure"}  # record status -> field
RESULT_LIMIT = 65536  # bytes of the parent's result, as JSON, that a follow-up is given
ENVIRONMENT = "SPOOLD_PARENT"  # the variable a running follow-up finds its parent in


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A job a filed record starts: its derived id and its job document."""

    job_id: str
    document: dict[str, Any]

    @property
    def payload(self) -> bytes:
        return encode(self.document)


def plan(job_id: str, record: dict[str, Any], config: Config) -> dict[str, Any]:
    """The record of job ``job_id``, naming the follow-up its filing starts (if any), and
    why it will be rejected if the allowlist in force no longer allows it (a reload)."""
    branch = BRANCHES.get(str(record.get("status")))
    document = record.get(branch) if branch else None
    if branch is None or not isinstance(document, dict):
        return record
    child_id = derived_job_id(float(record["finished_at"]), f"{job_id}:{branch}")
    record = {**record, FOLLOW_UPS: [child_id]}
    try:
        check_document_allowed(document, config, prefix=f"{branch}: ")
    except Rejected as exc:
        record[FOLLOW_UP_REJECTED] = f"{exc} (its job {child_id} is filed rejected)"
    return record


def children(record: Mapping[str, Any]) -> list[FollowUp]:
    """The follow-ups a record names (``plan``), whole: what a backend submits with it."""
    ids = record.get(FOLLOW_UPS)
    branch = BRANCHES.get(str(record.get("status")))
    document = record.get(branch) if branch else None
    if not isinstance(ids, list) or not ids or not isinstance(document, dict):
        return []
    child = {key: value for key, value in document.items() if key not in DAEMON_KEYS}
    child[PARENT] = parent_of(record)
    submitter = submitter_of(record)
    if submitter is not None:  # the parent's submitter may see, wait for and cancel it
        child[SUBMITTED_BY] = submitter
    return [FollowUp(str(ids[0]), child)]


def parent_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a follow-up is told of the parent whose record this is."""
    parent: dict[str, Any] = {"id": record.get("id"), "status": record.get("status")}
    if record.get("status") != "done":
        parent["reason"] = record.get("reason")
        return parent
    result = record.get("result")
    if len(json.dumps(result, ensure_ascii=False, default=repr)) <= RESULT_LIMIT:
        parent["result"] = result
    else:
        parent["result_omitted"] = True
    return parent
