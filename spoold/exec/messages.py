"""The shapes of the messages between the daemon, its launcher and the workers.

For the type checker only: every module imports this one under
``TYPE_CHECKING`` (and casts to its names), so that the launcher, forked
for every attempt, never loads it. The ops and outcomes, which code
compares at run time, are in protocol.py.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# protocol.Op and protocol.Outcome as types (tests/test_protocol.py keeps them equal).
OpName = Literal["run", "unqueue", "kill", "exit", "ready", "not_started", "started", "finished"]
OutcomeName = Literal["ok", "error", "timeout", "crashed", "interrupted", "cancelled"]

# -- what the daemon asks for --

# What the worker needs of the job itself ("class" is a keyword, hence this form).
JobRequest = TypedDict(
    "JobRequest",
    {
        "job_id": str,
        "class": str,
        "method": str,
        "params": list[Any] | dict[str, Any],
        "parent": NotRequired[str],  # a follow-up's parent, as JSON (SPOOLD_PARENT)
    },
)


class JobUser(TypedDict, total=False):
    """The job user, for a root daemon (identity.job_identity); no keys otherwise."""

    uid: int
    gid: int
    user: str
    home: str


class WorkerSetup(JobUser):
    """How a worker is set up before any job code: the request without the job."""

    python_path: list[str]
    memory_limit: int
    max_jobs_per_process: int


class RunRequest(JobRequest, WorkerSetup):
    """One attempt's request, as Dispatcher.launch builds it: the job and its worker's setup."""


class RunMessage(TypedDict):
    op: Literal["run"]
    key: str  # the job id: every later message about this attempt carries it
    request: RunRequest
    timeout: float  # seconds; 0 for none
    # It starts once fewer than ``slots`` attempts run; until then it waits, in order,
    # in the launcher (sent ahead: the daemon's concurrency; absent: at once).
    slots: NotRequired[int]


class UnqueueMessage(TypedDict):
    op: Literal["unqueue"]
    key: str  # a run sent ahead: if it has not started, it never will (not_started comes back)


class KillMessage(TypedDict):
    op: Literal["kill"]
    key: str
    grace: float  # seconds between SIGTERM and SIGKILL


class ExitMessage(TypedDict):
    op: Literal["exit"]


ToLauncher = RunMessage | UnqueueMessage | KillMessage | ExitMessage

# -- what the launcher answers --


class AttemptEnd(TypedDict):
    """How one attempt ended, as the launcher saw it: facts the daemon words and files."""

    started_at: float
    finished_at: float
    outcome: OutcomeName
    result: NotRequired[Any]  # ok: what the job returned
    error: NotRequired[str | None]  # error: the job's exception; crashed: how it died
    traceback: NotRequired[str | None]  # error
    signal: NotRequired[int]  # crashed: the signal that killed it
    exit_code: NotRequired[int]  # crashed: the status it exited with, without a report


class Attempt(AttemptEnd):
    """One entry of a job's history: launcher -> dispatcher -> outcomes -> the record.

    Its keys are written in the order they were set (``attempt`` first), and
    the record keeps that order.
    """

    attempt: int  # 1 for the first
    cause: NotRequired[str]  # interrupted: policy.SHUTDOWN or policy.DAEMON_DIED


class ReadyMessage(TypedDict):
    op: Literal["ready"]


class NotStartedMessage(TypedDict):
    op: Literal["not_started"]
    key: str
    errno: int | None  # why fork (or a pipe) failed; the daemon words it; None: taken back
    strerror: str | None


class StartedMessage(TypedDict):
    op: Literal["started"]
    key: str
    pid: int
    started_at: float


class FinishedMessage(AttemptEnd):
    op: Literal["finished"]
    key: str


AttemptMessage = NotStartedMessage | StartedMessage | FinishedMessage  # for the dispatcher
FromLauncher = ReadyMessage | AttemptMessage

# -- between the launcher and a worker --


class WorkerReport(TypedDict):
    """A worker's answer to one job: ``ok`` with the result, or the error and traceback."""

    ok: bool
    result: NotRequired[Any]
    error: NotRequired[str]
    traceback: NotRequired[str]
    last: NotRequired[bool]  # the worker exits after it (recycled, or over its memory)


Frame = ToLauncher | FromLauncher | JobRequest | WorkerReport
