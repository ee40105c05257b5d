"""Inside a job's process: set it apart, apply limits, import, call, report.

This runs in the child the launcher forked for one attempt. It becomes the
leader of its own session and process group (so the whole group can be
killed), restores default signal handling, closes every inherited file but
its report pipe, applies the memory limit *before* the job's code is
imported, then imports the class, calls the method and writes one JSON
report. It always ends with ``os._exit``: it must never return into the
launcher's loop. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import inspect
import json
import os
import resource
import signal
import sys
import traceback
from typing import Any

from spoold.identity import switch_to

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)  # loaded once in the launcher, not in every child
EXIT_OK = 0
EXIT_ERROR = 1


def run_attempt(request: dict[str, Any], report_fd: int) -> None:
    """The whole life of an attempt's process; never returns."""
    code = EXIT_ERROR
    launcher = os.getppid()
    try:
        _isolate(report_fd, launcher)
        os.environ["SPOOLD_JOB_ID"] = str(request.get("job_id", ""))  # for the job's own use
        _apply_limits(request)
        switch_to(request)  # after the limits (a user may not raise them), before any job code
        _die_with_parent(launcher)  # a change of user clears the death signal: set it again
        sys.path[:0] = request.get("python_path", [])
        code = _call_and_report(request, report_fd)
    finally:
        _flush_stdio()
        os._exit(code)


def _isolate(report_fd: int, launcher: int) -> None:
    os.setsid()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    _die_with_parent(launcher)
    # Whatever the job's descendants orphan (even after setsid) is adopted by
    # this process while the attempt runs, and passes to the launcher, which
    # kills it, only when the attempt is over (see spoold/sweep.py).
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.closerange(3, report_fd)
    os.closerange(report_fd + 1, _max_fd())


def _die_with_parent(launcher: int) -> None:
    """If the launcher dies, this process gets SIGKILL rather than running on unwatched."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != launcher:  # it died before the signal was armed
        os._exit(EXIT_ERROR)


def _max_fd() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _apply_limits(request: dict[str, Any]) -> None:
    # RLIMIT_DATA rather than RLIMIT_AS: address space counts thread stacks
    # and arenas, so RLIMIT_AS refuses threads long before memory runs out.
    limit = int(request.get("memory_limit") or 0)
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _call_and_report(request: dict[str, Any], report_fd: int) -> int:
    try:
        result = call_job(request["class"], request["method"], request["params"])
    except BaseException as exc:  # the job's failure, whatever it is, is the report
        _report(
            report_fd, {"ok": False, "error": _describe(exc), "traceback": traceback.format_exc()}
        )
        return EXIT_ERROR
    _report(report_fd, {"ok": True, "result": _jsonable(result)})
    return EXIT_OK


def call_job(class_path: str, method_name: str, params: list[Any] | dict[str, Any]) -> Any:
    """Import ``class_path``, get the method (from an instance, or the class if static), call it."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not inspect.isclass(cls):
        raise TypeError(f"{class_path} is not a class")
    raw = inspect.getattr_static(cls, method_name)
    target = cls if isinstance(raw, staticmethod | classmethod) else cls()
    method = getattr(target, method_name)
    if not callable(method):
        raise TypeError(f"{class_path}.{method_name} is not callable")
    return method(**params) if isinstance(params, dict) else method(*params)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def _report(fd: int, report: dict[str, Any]) -> None:
    data = json.dumps(report, default=repr).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
