"""The job file format: parsing, validation, defaults, and the record.

``parse_job`` turns bytes into a ``Job`` or raises ``Rejected`` with a
reason that says exactly what is wrong; it never imports anything and never
lets another exception escape. A job file holds the submitted fields; the
daemon adds its own bookkeeping (``DAEMON_KEYS``) as the job moves, and a
record is the submitted fields plus what happened.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, cast

from spoold.config import Config
from spoold.names import is_class_path, is_identifier, is_private

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt

# Fields the daemon owns. A submitted file's copies of them are dropped at
# intake, so a client cannot forge a job's history or status.
DAEMON_KEYS = frozenset(
    {
        "id",
        "status",
        "attempts",
        "result",
        "reason",
        "history",
        "due_at",
        "raw",
        "raw_encoding",
        "finished_at",
        "received_at",
        "cancelled_by",
    }
)
_OPTIONAL_FIELDS = (
    "priority",
    "run_at",
    "max_retries",
    "retry_delay",
    "backoff",
    "timeout",
    "memory_limit",
    "enqueued_at",
    "unique_key",
    "on_success",
    "on_failure",
)
# The follow-up fields (``spoold/followups.py``): each a job document of its own.
FOLLOW_UP_FIELDS = ("on_success", "on_failure")
# How deep follow-ups may nest (a chain of 17 is one job with 16 follow-ups inside it).
FOLLOW_UP_DEPTH = 16
UNIQUE_KEY_MAX = 256  # characters of a unique_key


# A job's status beyond SPEC.md's done, failed and rejected: cancelled by ``spoold cancel``
# (its record is in failed/).
CANCELLED = "cancelled"
# Who submitted a job: a uid, set by the client and, where the backend knows the file's
# owner, by the daemon from it (``core/judge.py``). It decides who may see, wait for and
# cancel the job besides root.
SUBMITTED_BY = "submitted_by"


def submitter_of(document: Mapping[str, Any]) -> int | None:
    """The uid a job or record says submitted it (None if it says none, or not a uid)."""
    said = document.get(SUBMITTED_BY)
    return said if isinstance(said, int) and not isinstance(said, bool) else None


# Why a submission was refused, in a fixed set of words: what metrics count rejections by
# (never by the class a rejected file claims, which anyone who may submit could make up).
REJECTION_KINDS = (
    "bad_json",  # not a whole JSON object
    "bad_field",  # a field missing or of the wrong type or value
    "too_large",  # over max_job_bytes
    "not_allowed",  # class or method not on the allowlist
    "not_owner",  # written by a user allowed_uids / allowed_gids leave out
    "unsafe_file",  # a link, a device, a file with two names
    "unreadable",  # could not be read (its permissions)
    "damaged",  # the daemon's own file, damaged
    "incomplete",  # cut short: a daemon or a client died while writing it
    "duplicate",  # its unique_key is held by a job that waits or runs
)


class Rejected(Exception):
    """A job file that can never run; the message is the record's ``reason``."""

    def __init__(self, reason: str, kind: str = "bad_field") -> None:
        super().__init__(reason)
        self.kind = kind  # one of REJECTION_KINDS


class Incomplete(Rejected):
    """Bytes that are not (yet) a whole JSON document: maybe still being written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "bad_json")


@dataclass(frozen=True)
class Job:
    """A validated job and the daemon's bookkeeping about it."""

    id: str
    class_path: str
    method: str
    params: list[Any] | dict[str, Any]
    submitted: dict[str, Any]
    enqueued_at: float
    priority: int = 0
    run_at: float | None = None
    max_retries: int | None = None
    retry_delay: float | None = None
    backoff: str | None = None
    timeout: float | None = None
    memory_limit: int | None = None
    unique_key: str | None = None
    on_success: dict[str, Any] | None = None  # a follow-up's job document
    on_failure: dict[str, Any] | None = None
    history: tuple[Attempt, ...] = field(default=())  # as the daemon wrote it, oldest first
    due_at: float | None = None
    clean: bool = True  # False: the submitted file carried daemon-owned fields (dropped here)

    @property
    def attempts(self) -> int:
        return len(self.history)

    def state_document(self) -> dict[str, Any]:
        """What the daemon writes to scheduled/ and active/: submitted fields + bookkeeping."""
        doc = {**self.submitted, "id": self.id, "history": list(self.history)}
        if self.due_at is not None:
            doc["due_at"] = self.due_at
        return doc

    def record(
        self, status: str, finished_at: float, *, last: Attempt | None = None, **outcome: Any
    ) -> dict[str, Any]:
        """The done/ or failed/ record: the job as submitted plus what happened.

        ``last``: an attempt that ended after ``history``, counted and listed with it
        (cheaper than a copy of the job with a longer history: a success's hot path).
        """
        history = [*self.history, last] if last is not None else list(self.history)
        return {
            **self.submitted,
            "id": self.id,
            "status": status,
            "attempts": len(history),
            **outcome,
            "history": history,
            "finished_at": finished_at,
        }


def parse_job(raw: bytes, *, job_id: str, mtime: float, trusted: bool = False) -> Job:
    """Validate ``raw`` as a job file; raise Rejected (or Incomplete) with the reason.

    ``trusted`` is for files the daemon wrote itself (scheduled/, active/):
    their bookkeeping (history, due time) is kept instead of dropped.
    """
    document = _decode(raw)
    submitted = {k: v for k, v in document.items() if k not in DAEMON_KEYS}
    fields = _check_fields(submitted, mtime)
    history, due_at = _bookkeeping(document) if trusted else ((), None)
    clean = trusted or len(submitted) == len(document)
    return Job(
        id=job_id, submitted=submitted, history=history, due_at=due_at, clean=clean, **fields
    )


def _decode(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise Incomplete("the file is empty")
    try:
        document = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except json.JSONDecodeError as exc:
        # Cut off mid-document: the error is at the very end, or inside a
        # string that runs to the end (the decoder points at where it began).
        if exc.pos >= len(raw.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise Incomplete(f"not valid JSON: the document ends too soon ({exc.msg})") from None
        raise Rejected(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "bad_json"
        ) from None
    except UnicodeDecodeError:
        raise Rejected("not valid JSON: the bytes are not UTF-8 text", "bad_json") from None
    except RecursionError:
        raise Rejected("not valid JSON: nested too deeply", "bad_json") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise Rejected(f"not valid JSON: {exc}", "bad_json") from None
    if not isinstance(document, dict):
        raise Rejected(f"the job must be a JSON object, not {_json_type(document)}", "bad_json")
    return document


def constant_refuser(wording: str) -> Callable[[str], NoReturn]:
    """A ``parse_constant`` raising ValueError("<name> <wording>") for NaN and ±Infinity.

    Python's json reads them, but they are not JSON; each reader words the refusal.
    """

    def refuse(name: str) -> NoReturn:
        raise ValueError(f"{name} {wording}")

    return refuse


# One decoder for every file: json.loads with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=constant_refuser("is not allowed"))


def _check_fields(doc: Mapping[str, Any], mtime: float, depth: int = 0) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "class_path": _class_path(doc.get("class")),
        "method": _method(doc.get("method")),
        "params": _params(doc.get("params", [])),
        "enqueued_at": mtime,
    }
    for name in _OPTIONAL_FIELDS:
        if doc.get(name) is None:
            continue
        if name in FOLLOW_UP_FIELDS:
            fields[name] = _follow_up(name, doc[name], depth)
        else:
            fields[name] = _FIELD_CHECKS[name](doc[name])
    return fields


def _follow_up(name: str, value: Any, depth: int) -> dict[str, Any]:
    """A follow-up's job document, checked as a job of its own (its own follow-ups too)."""
    if not isinstance(value, dict):
        raise Rejected(f'field "{name}" must be a job object, not {_json_type(value)}')
    if depth >= FOLLOW_UP_DEPTH:
        raise Rejected(f"follow-ups nest more than {FOLLOW_UP_DEPTH} deep")
    try:
        _check_fields(value, 0.0, depth + 1)
    except Rejected as exc:
        raise Rejected(f"{name}: {exc}", exc.kind) from None
    return value


def _required_string(name: str, value: Any) -> str:
    if value is None:
        raise Rejected(f'missing field "{name}"')
    if not isinstance(value, str):
        raise Rejected(f'field "{name}" must be a string, not {_json_type(value)}')
    return value


def _class_path(value: Any) -> str:
    class_path = _required_string("class", value)
    if not is_class_path(class_path):
        raise Rejected(
            'field "class" must be a dotted path such as "app.jobs.SomeClass",'
            f" got {class_path!r:.200}"
        )
    return class_path


def _method(value: Any) -> str:
    method = _required_string("method", value)
    if not is_identifier(method):
        raise Rejected(f'field "method" must be a plain method name, got {method!r:.200}')
    if is_private(method):
        raise Rejected(f'field "method" names a private method ({method!r:.200}); those never run')
    return method


def check_names(class_path: str, method: str) -> None:
    """Raise ``Rejected`` as the daemon would for a class path or method name of the
    wrong form, whatever its allowlist: for a client to refuse before it writes."""
    _class_path(class_path)
    _method(method)


def _params(value: Any) -> list[Any] | dict[str, Any]:
    if isinstance(value, list | dict):
        return value
    raise Rejected(f'field "params" must be an array or an object, not {_json_type(value)}')


def _int_field(name: str, minimum: int | None) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Rejected(f'field "{name}" must be an integer, not {_json_type(value)}')
        if minimum is not None and value < minimum:
            raise Rejected(f'field "{name}" must be >= {minimum}, got {value}')
        return value

    return check


def _seconds_field(name: str) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected(f'field "{name}" must be a number of seconds, not {_json_type(value)}')
        if value < 0:
            raise Rejected(f'field "{name}" must be >= 0, got {value}')
        return float(value)

    return check


def _backoff(value: Any) -> str:
    if value not in ("fixed", "exponential"):
        raise Rejected(f'field "backoff" must be "fixed" or "exponential", got {value!r:.100}')
    return str(value)


def parse_time(value: Any) -> float:
    """``run_at``: Unix seconds, or ISO-8601 text with a time zone."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise Rejected(f'field "run_at" must be a time, not {_json_type(value)}')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f'field "run_at" is not an ISO-8601 time: {value!r:.100}') from None
    if moment.tzinfo is None:
        raise Rejected(
            f'field "run_at" needs a time zone (such as "Z" or "+01:00"): {value!r:.100}'
        )
    return moment.timestamp()


def _unique_key(value: Any) -> str:
    if not isinstance(value, str):
        raise Rejected(f'field "unique_key" must be a string, not {_json_type(value)}')
    if not 0 < len(value) <= UNIQUE_KEY_MAX:
        raise Rejected(f'field "unique_key" must be 1 to {UNIQUE_KEY_MAX} characters long')
    return value


_FIELD_CHECKS: dict[str, Any] = {
    "unique_key": _unique_key,
    "priority": _int_field("priority", None),
    "run_at": parse_time,
    "max_retries": _int_field("max_retries", 0),
    "retry_delay": _seconds_field("retry_delay"),
    "backoff": _backoff,
    "timeout": _seconds_field("timeout"),
    "memory_limit": _int_field("memory_limit", 0),
    "enqueued_at": _seconds_field("enqueued_at"),
}


def _bookkeeping(doc: Mapping[str, Any]) -> tuple[tuple[Attempt, ...], float | None]:
    history = doc.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise Rejected('the daemon\'s "history" field is damaged', "damaged")
    due_at = doc.get("due_at")
    if due_at is not None and (isinstance(due_at, bool) or not isinstance(due_at, int | float)):
        raise Rejected('the daemon\'s "due_at" field is damaged', "damaged")
    return tuple(cast("list[Attempt]", history)), due_at  # the daemon's own entries


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number"


def check_allowed(job: Job, config: Config) -> None:
    """Raise Rejected unless the job's class and method are on the allowlist, and those
    of every follow-up it carries (``on_success: class "x" is not on the allowlist``)."""
    check_document_allowed(job.submitted, config)


def check_document_allowed(document: Mapping[str, Any], config: Config, prefix: str = "") -> None:
    """``check_allowed`` for a (checked) job document: its names, then its follow-ups'."""
    try:
        check_names_allowed(str(document.get("class")), str(document.get("method")), config)
    except Rejected as exc:
        raise Rejected(f"{prefix}{exc}", exc.kind) from None
    for name in FOLLOW_UP_FIELDS:
        follow_up = document.get(name)
        if isinstance(follow_up, dict):
            check_document_allowed(follow_up, config, prefix=f"{prefix}{name}: ")


def check_names_allowed(class_path: str, method: str, config: Config) -> None:
    if class_path not in config.allow:
        raise Rejected(f'class "{class_path}" is not on the allowlist', "not_allowed")
    if not config.is_allowed(class_path, method):
        raise Rejected(
            f'method "{method}" of class "{class_path}" is not on the allowlist', "not_allowed"
        )


def rejection_record(
    job_id: str, reason: str, raw: bytes, *, file_name: str, received_at: float
) -> dict[str, Any]:
    """The failed/ record of a file that was rejected, keeping its original bytes."""
    record: dict[str, Any] = {}
    try:
        document = json.loads(raw)
        if isinstance(document, dict):
            record.update({k: v for k, v in document.items() if k not in DAEMON_KEYS})
    except (ValueError, RecursionError):
        pass
    record.update(
        {"id": job_id, "status": "rejected", "reason": reason, "attempts": 0, "history": []}
    )
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw"] = base64.b64encode(raw).decode("ascii")
        record["raw_encoding"] = "base64"
    record.update({"file": file_name, "received_at": received_at, "finished_at": received_at})
    return record


def raw_bytes(record: Mapping[str, Any]) -> bytes:
    """The original bytes kept in a rejection record."""
    raw = str(record.get("raw", ""))
    return base64.b64decode(raw) if record.get("raw_encoding") == "base64" else raw.encode("utf-8")


def encode(document: Mapping[str, Any]) -> bytes:
    """Serialize a job file or record the way spoold writes them."""
    return _ENCODER.encode(document).encode("utf-8") + b"\n"


# Compact: only then does json use its C encoder (with an indent it runs in Python, a
# sixth of the daemon's time per job); `spoold show` pretty-prints. One encoder for
# every call: json.dumps builds a new one whenever an option is given.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)
