"""``spoold check``: does each allowed class import, and can each allowed method be called?

It resolves names the way the worker does: the module is everything before
the last dot, the class is the last part; an instance method needs the
class to be callable with no arguments, a ``staticmethod`` or
``classmethod`` does not. Importing runs the module's top-level code in
this process, which is what an operator asks for by running the check; the
daemon itself never imports anything for a job that is not on the allowlist.

With ``[spool] backend = "redis"`` it also asks the Redis server for its
persistence settings (``backends/redis/durability``): a shortfall fails the
check when ``[spool] require_durable`` is true (as the daemon would refuse
to start) and is a warning otherwise; a Redis it cannot reach fails it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spoold.config import Config


class CheckProblem(Exception):
    """One thing wrong with an allowed class, worded for the operator."""


@dataclass(frozen=True)
class ClassCheck:
    """The verdict on one ``[allow]`` entry."""

    class_path: str
    methods: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_allowlist(config: Config) -> list[ClassCheck]:
    """Import every allowed class (with ``[worker] python_path`` first on sys.path)."""
    with _python_path(config.worker.python_path):
        return [
            check_class(class_path, sorted(methods))
            for class_path, methods in sorted(config.allow.items())
        ]


@contextmanager
def _python_path(folders: Sequence[Path]) -> Iterator[None]:
    saved = list(sys.path)
    sys.path[:0] = [str(folder) for folder in folders]
    try:
        yield
    finally:
        sys.path[:] = saved


def check_class(class_path: str, methods: Sequence[str]) -> ClassCheck:
    try:
        cls = load_class(class_path)
    except CheckProblem as exc:
        return ClassCheck(class_path, tuple(methods), (str(exc),))
    problems = [problem for method in methods if (problem := check_method(cls, method))]
    if any(_needs_instance(cls, method) for method in methods):
        problems.extend(_instantiation_problems(cls))
    return ClassCheck(class_path, tuple(methods), tuple(problems))


def load_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # an import runs arbitrary code: report what it raised
        raise CheckProblem(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise CheckProblem(f"module {module_name} has no {name}")
    if not inspect.isclass(cls):
        raise CheckProblem(f"{class_path} is not a class")
    return cls


def check_method(cls: type, method: str) -> str | None:
    """A problem with ``cls.method``, or None if the worker can call it."""
    try:
        inspect.getattr_static(cls, method)
    except AttributeError:
        return f'no method "{method}"'
    if not callable(getattr(cls, method, None)):
        return f'"{method}" is not a method'
    return None


def _needs_instance(cls: type, method: str) -> bool:
    try:
        found = inspect.getattr_static(cls, method)
    except AttributeError:
        return False
    return not isinstance(found, staticmethod | classmethod)


def _instantiation_problems(cls: type) -> list[str]:
    try:
        inspect.signature(cls).bind()
    except TypeError:
        return [f"{cls.__name__}() needs arguments, but the worker makes it with none"]
    except ValueError:
        pass  # no signature to read (a C type): let the worker find out
    return []


@dataclass(frozen=True)
class RedisCheck:
    """The verdict on the Redis of ``[spool] url``: can it lose acknowledged jobs?"""

    url: str  # without its password
    problems: tuple[str, ...]  # its settings that fall short ("appendfsync is everysec, ...")
    error: str | None  # why it could not be asked (unreachable), or None
    required: bool  # [spool] require_durable: a shortfall fails the check
    wanted: tuple[str, ...] = ()  # the settings asked for ("appendfsync always", ...)

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.required and self.problems)


def check_redis(config: Config) -> RedisCheck:
    """Ask the Redis of ``[spool] url`` for its persistence settings."""
    from spoold.backends.redis import durability
    from spoold.backends.redis.catalog import redis_errors
    from spoold.backends.redis.connection import connect, safe_url
    from spoold.core.backend import CatalogError

    url = safe_url(config.spool.url)
    required = config.spool.require_durable
    wanted = tuple(f"{key} {value}" for key, value in durability.WANTED.items())
    try:
        with redis_errors(config.spool):
            client = connect(config.spool)
            try:
                found = durability.problems(client)
            finally:
                client.close()
    except CatalogError as exc:
        return RedisCheck(url, (), str(exc), required, wanted)
    return RedisCheck(url, tuple(found), None, required, wanted)
