"""``run_background_job``: write one job into the spool and return its id; ``wait`` and
``cancel`` ask the daemon about one.

The caller's side of the Maildir protocol (``backends/files/submitter``): write
``tmp/<id>.json``, fsync, rename it into ``incoming/`` without replacing
anything, fsync ``incoming/``.
It never talks to the daemon and never blocks on it. Standard library only:
importing loguru here would cost every caller about 55 ms.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoold.asking import (
    ENDED,
    FORBIDDEN,
    UNKNOWN,
    Answer,
    ask,
    ask_through_restarts,
    socket_path,
)
from spoold.backends.files.submitter import FileSubmitter
from spoold.config import Config, find_config_path, load_config

if TYPE_CHECKING:  # the seam's Protocol, for the type checker only
    from spoold.core.backend import Submitter


def run_background_job(  # noqa: PLR0913 - the signature is SPEC.md's API
    class_path: str,
    method: str,
    params: list[Any] | tuple[Any, ...] | dict[str, Any] | None = None,
    *,
    spool: str | os.PathLike[str] | None = None,
    priority: int = 0,
    delay: float | None = None,
    run_at: float | datetime | None = None,
    max_retries: int | None = None,
    retry_delay: float | None = None,
    timeout: float | None = None,
    durable: bool = True,
    unique: bool = False,
    unique_key: str | None = None,
    on_success: dict[str, Any] | None = None,
    on_failure: dict[str, Any] | None = None,
) -> str:
    """Ask for ``class_path.method(*params)`` (or ``**params``) to run later; return the job id.

    ``params`` must be JSON (a list for positional arguments, a dict for
    keyword arguments); anything else raises TypeError before anything is
    written. ``delay`` (seconds) and ``run_at`` (Unix seconds or an aware
    datetime) hold the job back. ``durable=False`` skips the fsyncs, for bulk
    producers that accept losing the last jobs to a power cut.

    ``unique=True`` (or a ``unique_key`` of the caller's): while a job with the
    same key waits or runs, this one is filed rejected as a duplicate of it
    (``unique=True`` derives the key from class, method and params:
    ``unique_key_for``). ``on_success`` / ``on_failure``: a job document
    (``follow_up(...)``) submitted when this job's record is filed done / failed.
    """
    now = time.time()
    if unique and unique_key is None:
        unique_key = unique_key_for(class_path, method, params)
    options = {
        "priority": priority or None,
        "run_at": _start_time(now, delay, run_at),
        "max_retries": max_retries,
        "retry_delay": retry_delay,
        "timeout": timeout,
        "unique_key": unique_key,
        "on_success": on_success,
        "on_failure": on_failure,
    }
    payload = job_payload(class_path, method, params, now=now, **options)
    return _submitter(spool, durable).submit(payload, now=now)


def job_payload(class_path: str, method: str, params: Any, *, now: float, **options: Any) -> bytes:
    """The job document's bytes: class, method, params, enqueued_at, and the options set.

    TypeError if ``params`` (or an option) is not JSON.
    """
    document = _job_document(class_path, method, params, now=now)
    document.update({key: value for key, value in options.items() if value is not None})
    return _encode(document)


def unique_key_for(class_path: str, method: str, params: Any = None) -> str:
    """The ``unique_key`` that ``unique=True`` derives: the SHA-256, in hex, of the UTF-8
    JSON of ``{"class", "method", "params"}`` with sorted keys and no spaces (non-ASCII
    characters as they are, not escaped), so that a producer in any language can make
    the same key."""
    document = _job_document(class_path, method, params, now=0.0)
    canonical = {key: document[key] for key in ("class", "method", "params")}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def follow_up(class_path: str, method: str, params: Any = None, **options: Any) -> dict[str, Any]:
    """A job document for ``on_success`` / ``on_failure``: class, method, params and any of
    the job fields (``priority``, ``max_retries``, ``timeout``, ``unique_key``, and its own
    ``on_success`` / ``on_failure``, for a chain). It knows its parent by its ``parent``
    field and, while it runs, ``$SPOOLD_PARENT``."""
    document = _job_document(class_path, method, params, now=0.0)
    del document["enqueued_at"], document["submitted_by"]  # set when it is submitted
    document.update({key: value for key, value in options.items() if value is not None})
    _encode(document)  # TypeError now, not at the parent's filing
    return document


def submitter_for(config: Config, *, durable: bool) -> Submitter:
    """Where ``config`` sends jobs: its Redis (``[spool] backend = "redis"``) or its folder.

    redis is imported only for the Redis backend.
    """
    if config.spool.backend == "redis":
        from spoold.backends.redis.submitter import RedisSubmitter

        return RedisSubmitter(config.spool)
    return FileSubmitter(str(config.spool.dir), durable=durable)


def _submitter(spool: str | os.PathLike[str] | None, durable: bool) -> Submitter:
    """``spool`` (a folder), else ``$SPOOLD_SPOOL_DIR``, else the config's backend."""
    if spool is not None:
        return FileSubmitter(os.fspath(spool), durable=durable)
    from_env = os.environ.get("SPOOLD_SPOOL_DIR")
    if from_env:
        return FileSubmitter(from_env, durable=durable)
    return submitter_for(_current_config(), durable=durable)


# The config last read, by path, with the file's identity then: read again only when
# the file changed (a TOML parse per call halved the Redis client's rate).
_configs: dict[Path, tuple[tuple[int, int, int], Config]] = {}


def _current_config() -> Config:
    path = find_config_path(None)
    try:
        info = os.stat(path)
    except OSError:
        return load_config(path)  # raises the ConfigError that names the file
    identity = (info.st_ino, info.st_size, info.st_mtime_ns)
    cached = _configs.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    config = load_config(path)
    _configs[path] = (identity, config)
    return config


def wait(
    job_id: str, timeout: float | None = None, *, spool: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Block until job ``job_id`` has a record, and return it (``record["status"]`` says how
    it ended: done, failed, cancelled or rejected).

    Asks the daemon (``spoold.asking``), which answers about the caller's own jobs (root
    and the watching group: any), when the record is filed; no polling. Raises
    TimeoutError after ``timeout`` seconds, LookupError if there is no such job of the
    caller's, and OSError if no daemon answers (a daemon that restarts meanwhile is
    asked again).
    """
    answer = ask_through_restarts(socket_path(_spool_dir(spool)), job_id, timeout)
    return _record_of(answer, job_id)


def cancel(job_id: str, *, spool: str | os.PathLike[str] | None = None) -> bool:
    """Cancel job ``job_id``: True once it is filed ``cancelled``; False if it had ended
    already, or ended by itself while its attempt was being stopped (nothing changed).

    A waiting job is filed at once; a running one gets SIGTERM, then SIGKILL 2 s later,
    and is not retried. Raises LookupError if there is no such job of the caller's,
    PermissionError if the caller may see it but not cancel it, and OSError if no daemon
    answers or it cannot be cancelled now.
    """
    answer = ask(socket_path(_spool_dir(spool)), "cancel", job_id, _CANCEL_TIMEOUT)
    if answer.code == ENDED:
        return False
    return _record_of(answer, job_id).get("status") == "cancelled"


_CANCEL_TIMEOUT = 30.0  # a running attempt: SIGTERM, SIGKILL 2 s later, then its record


def _record_of(answer: Answer, job_id: str) -> dict[str, Any]:
    if answer.ok and answer.document is not None:
        return answer.document
    if answer.code == UNKNOWN:
        raise LookupError(answer.error)
    if answer.code == FORBIDDEN:
        raise PermissionError(answer.error)
    raise OSError(f"job {job_id}: {answer.error}")


def _spool_dir(spool: str | os.PathLike[str] | None) -> str:
    """Where the daemon listens: ``spool``, else ``$SPOOLD_SPOOL_DIR``, else the config's
    ``[spool] dir`` (on either backend)."""
    if spool is not None:
        return os.fspath(spool)
    return os.environ.get("SPOOLD_SPOOL_DIR") or str(_current_config().spool.dir)


runBackgroundJob = run_background_job  # noqa: N816 - the Laravel helper's name, for people coming from it


def _job_document(class_path: str, method: str, params: Any, *, now: float) -> dict[str, Any]:
    if not isinstance(class_path, str) or not isinstance(method, str):
        raise TypeError("class_path and method must be strings")
    if params is None:
        params = []
    if isinstance(params, tuple):
        params = list(params)
    if not isinstance(params, list | dict):
        raise TypeError(
            f"params must be a list or a dict of JSON values, not {type(params).__name__}"
        )
    # submitted_by: who may see, wait for and cancel it besides root. The daemon takes a
    # job file's owner instead where it sees the file; on Redis this is the only word.
    return {"class": class_path, "method": method, "params": params, "enqueued_at": now,
            "submitted_by": os.getuid()}  # fmt: skip


def _start_time(now: float, delay: float | None, run_at: float | datetime | None) -> float | None:
    if delay is not None and run_at is not None:
        raise TypeError("give delay or run_at, not both")
    if delay is not None:
        return now + float(delay)
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise TypeError("run_at needs a time zone (an aware datetime)")
        return run_at.timestamp()
    return run_at


def _encode(document: dict[str, Any]) -> bytes:
    try:
        return _ENCODER.encode(document).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"job params must be JSON values: {exc}") from None


# One encoder for every call: json.dumps builds a new one whenever an option is given.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
