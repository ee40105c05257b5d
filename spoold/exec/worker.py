"""Inside a job's process: set it apart, apply limits, then import, call, report.

This runs in a worker the launcher forked. It becomes the leader of its own
session and process group (so the whole group can be killed), restores
default signal handling, closes every inherited file but its two pipes,
applies the memory limit and switches to the job user *before* any job code
is imported. A spare (forked before its request) then walks the first steps
of an attempt while it waits, importing nothing of a job's (``_rehearse``:
only ``spoold.exec.rehearsal``, a module of spoold's own). Then, for
each attempt: it reads the request (one frame on the
request pipe, unless the fork brought the first one), imports the class,
calls the method, kills whatever the job left running, and writes one
report frame. A worker runs up to ``max_jobs_per_process`` attempts (1 by
default: a spare forked ahead of its one attempt), and also leaves when its
memory use calls for a fresh process, or at end of file on the request
pipe. It always ends with ``os._exit``: it must never return into the
launcher's loop. Standard library only.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stubs: see _DEFAULT_HANDLING
import contextlib
import importlib
import importlib.machinery
import json
import os
import resource
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from spoold.exec.protocol import READ_SIZE, FrameReader, encode_frame, write_all
from spoold.exec.sweep import become_subreaper, prctl, sweep_escaped

if TYPE_CHECKING:
    from spoold.exec.messages import JobRequest, WorkerReport, WorkerSetup

_PR_SET_PDEATHSIG = 1
# The signals a job gets with their default handling (the launcher ignores some). Set
# through the C function itself: ``signal.signal`` turns the old handler into an enum
# member, and that Python code's pages, copied on write in every fresh process, cost each
# attempt about 0.2 ms and 35 page faults here (measured in forked children).
_DEFAULT_HANDLING = tuple(
    int(signum)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)
)
EXIT_OK = 0
EXIT_ERROR = 1
MAX_REPORT = 16 * 1024 * 1024  # a report larger than this is cut; the attempt is an error
LEFTOVER_WAIT = 2.0  # seconds a reused worker waits for what a job left running to die


def serve_attempts(
    setup: WorkerSetup, job: JobRequest | None, report_fd: int, request_fd: int, max_jobs: int
) -> None:
    """The whole life of a worker: up to ``max_jobs`` attempts; never returns.

    ``job`` is the first attempt's; without it (a spare), the first attempt
    comes on the request pipe like the next ones.
    """
    code = EXIT_ERROR
    try:
        _set_up(setup, keep=(report_fd, request_fd))
        requests: FrameReader = FrameReader()
        if job is None:
            _rehearse(setup)
            job = _next_request(request_fd, requests)
        for done in range(1, max_jobs + 1):
            if job is None:  # the launcher let this worker go (a spare: before it ran anything)
                break
            report = _call(job)
            _flush_stdio()
            _end_leftovers()
            last = done == max_jobs or _over_memory(setup)
            write_all(report_fd, _report_frame(report, last=last))
            if last:
                # The report woke the launcher, and the kernel likes to queue a woken
                # process on its waker's CPU. Exiting (freeing this process's copies of
                # the launcher's pages) takes about a millisecond, which the launcher
                # would wait out: let it run first (docs/PERFORMANCE.md, W3).
                os.sched_yield()
                break
            job = _next_request(request_fd, requests)
        code = EXIT_OK
    finally:
        _flush_stdio()
        os._exit(code)


def _set_up(setup: WorkerSetup, keep: tuple[int, ...]) -> None:
    """Everything before the first job's code: apart, limited, the job's user."""
    launcher = os.getppid()
    _isolate(keep, launcher)
    _apply_limits(setup)
    switch_to(setup)  # after the limits (a user may not raise them), before any job code
    _die_with_parent(launcher)  # a change of user clears the death signal: set it again
    sys.path[:0] = setup.get("python_path", [])


def _isolate(keep: tuple[int, ...], launcher: int) -> None:
    os.setsid()
    for signum in _DEFAULT_HANDLING:
        _signal.signal(signum, _signal.SIG_DFL)
    _die_with_parent(launcher)
    # Whatever the job's descendants orphan (even after setsid) is adopted by
    # this process, which kills it when the attempt is over (_end_leftovers);
    # if this process dies first, the launcher inherits and sweeps it.
    become_subreaper()
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())


_JOB_ID_VARIABLE = "SPOOLD_JOB_ID"
_REHEARSAL_NAME = "-spoold-rehearsal-"  # not an identifier: no import statement names it
_REHEARSAL_MODULE = "spoold.exec.rehearsal"  # spoold's own, holding no job's code
_REHEARSAL_REQUEST: JobRequest = {"job_id": "-", "class": "-.-", "method": "-", "params": [0, {}]}


def _rehearse(setup: WorkerSetup) -> None:
    """Walk, before a spare's job comes, the first steps its start will take.

    Right after the fork, each page of the launcher's that the child's Python
    touches is copied (reference counts), and a fresh attempt's start paid for
    those copies after its request came: decoding it, finding its module on
    ``python_path``, importing it. Here the spare pays while it waits. It looks
    up a name no module can have (``find_spec`` only lists the folders) and
    forgets a folder it found missing, so that one created later is searched.
    Then it imports ``spoold.exec.rehearsal``, spoold's own module shaped like a
    small job module, through the same machinery (loader, bytecode, class
    building): nothing of a job's is imported, so the allowlist's rule holds.
    Last, setting the job's id in the environment (and taking it out again),
    and the steps between a job's end and its report (a spare has no
    leftovers to find yet).
    """
    for _ in FrameReader().feed(encode_frame(_REHEARSAL_REQUEST)):
        pass
    python_path = setup.get("python_path", [])
    if python_path:
        importlib.machinery.PathFinder.find_spec(_REHEARSAL_NAME, python_path)
        for folder in python_path:  # a missing folder is cached as None: no finder, ever
            if folder in sys.path_importer_cache and sys.path_importer_cache[folder] is None:
                del sys.path_importer_cache[folder]
    # Best effort: a job user who may not read spoold's folder only loses the head start.
    with contextlib.suppress(ImportError, OSError):
        importlib.import_module(_REHEARSAL_MODULE)
    os.environ[_JOB_ID_VARIABLE] = "-"  # as ``_call`` sets it; then the environment as it was
    del os.environ[_JOB_ID_VARIABLE]
    _flush_stdio()
    _end_leftovers()
    _over_memory(setup)
    _report_frame({"ok": True, "result": None}, last=False)


def _next_request(request_fd: int, requests: FrameReader) -> JobRequest | None:
    """Block until the launcher sends the next request; None at end of file."""
    while True:
        data = os.read(request_fd, READ_SIZE)
        if not data:
            return None
        for message in requests.feed(data):
            job: JobRequest = message  # the launcher sends a worker nothing else
            return job


def _end_leftovers() -> None:
    """Kill what the job left running, so nothing of it outlives its attempt here either.

    This worker is a child subreaper, so the job's orphans, even those that
    left its group with setsid, are this worker's children by now or once
    their own parent dies; they are killed until none is left.
    """
    deadline = time.monotonic() + LEFTOVER_WAIT
    while sweep_escaped(set()) and time.monotonic() < deadline:
        time.sleep(0.001)


def _over_memory(setup: WorkerSetup) -> bool:
    """True if less than half of ``memory_limit`` is left for the next job."""
    limit = int(setup.get("memory_limit") or 0)
    return limit > 0 and _data_bytes() > limit // 2


def _data_bytes() -> int:
    """What RLIMIT_DATA counts for this process (VmData)."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _die_with_parent(launcher: int) -> None:
    """If the launcher dies, this process gets SIGKILL rather than running on unwatched."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != launcher:  # it died before the signal was armed
        os._exit(EXIT_ERROR)


def _max_fd() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _apply_limits(setup: WorkerSetup) -> None:
    # RLIMIT_DATA rather than RLIMIT_AS: address space counts thread stacks
    # and arenas, so RLIMIT_AS refuses threads long before memory runs out.
    limit = int(setup.get("memory_limit") or 0)
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _call(job: JobRequest) -> WorkerReport:
    """Run the job; its report: ``ok`` with the result, or the error and traceback."""
    os.environ[_JOB_ID_VARIABLE] = str(job.get("job_id", ""))  # for the job's own use
    # A follow-up's parent (spoold/followups.py); a reused worker's last job's is dropped.
    if "parent" in job:
        os.environ["SPOOLD_PARENT"] = job["parent"]
    else:
        os.environ.pop("SPOOLD_PARENT", None)
    try:
        result = call_job(job["class"], job["method"], job["params"])
    except BaseException as exc:  # the job's failure, whatever it is, is the report
        return {"ok": False, "error": _describe(exc), "traceback": traceback.format_exc()}
    return {"ok": True, "result": _jsonable(result)}


def call_job(class_path: str, method_name: str, params: list[Any] | dict[str, Any]) -> Any:
    """Import ``class_path``, get the method (from an instance, or the class if static), call it."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not isinstance(cls, type):
        raise TypeError(f"{class_path} is not a class")
    raw = _defined(cls, method_name)
    target = cls if isinstance(raw, staticmethod | classmethod) else cls()
    method = getattr(target, method_name)
    if not callable(method):
        raise TypeError(f"{class_path}.{method_name} is not callable")
    return method(**params) if isinstance(params, dict) else method(*params)


def _defined(cls: type, name: str) -> object:
    """The attribute as the class body defined it (a staticmethod stays one), or None.

    What inspect.getattr_static gives for a method; inspect itself is not
    imported, as every job process would inherit it from the launcher.
    """
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    try:
        _STRICT_ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


# json.dumps(value, allow_nan=False), without building an encoder at every report.
_STRICT_ENCODER = json.JSONEncoder(allow_nan=False)


def _report_frame(report: WorkerReport, *, last: bool) -> bytes:
    """A reused worker's report: one frame, never larger than the launcher takes."""
    frame = encode_frame({**report, "last": last})
    if len(frame) > MAX_REPORT:
        too_big = f"the job's report was larger than {MAX_REPORT} bytes"
        frame = encode_frame({"ok": False, "error": too_big, "last": last})
    return frame


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # a launcher started without stdio (a detached daemon)
            continue
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def switch_to(setup: WorkerSetup) -> None:
    """Become the job user (only its primary group), as identity.job_identity chose."""
    uid, gid = setup.get("uid"), setup.get("gid")
    if not isinstance(uid, int) or not isinstance(gid, int):
        return
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    os.environ.update(HOME=str(setup["home"]), USER=str(setup["user"]), LOGNAME=str(setup["user"]))
