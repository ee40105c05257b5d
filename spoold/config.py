"""The TOML configuration: where it is found, what each key means, and its checks.

Defaults are declared once, as data (``_SCHEMA``). Every key is checked when
the file is loaded, and a problem is one line that names the key; a key
nobody owns is an error, not silence. The loaded ``Config`` is frozen and
passed down explicitly. This module uses the standard library only, because
the client imports it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spoold.limits import ClassLimit, parse_limit
from spoold.names import is_class_path, is_identifier, is_private
from spoold.schedules import Schedule, parse_schedules

DEFAULT_CONFIG_PATH = Path("/etc/spoold/spoold.toml")


class ConfigError(Exception):
    """A configuration problem, worded for the operator in one line."""


@dataclass(frozen=True)
class SpoolSettings:
    dir: Path
    max_job_bytes: int
    rescan_interval: float
    fsync: bool
    allowed_uids: tuple[int, ...]
    allowed_gids: tuple[int, ...]
    backend: str  # "files" or "redis"
    url: str  # the Redis server (backend = "redis")
    name: str  # the spool's name in Redis: its keys are "spoold:{<name>}:..."
    host_id: str  # this host among several daemons (default: the host name)
    lease: float  # seconds a Redis claim holds without renewal
    require_durable: bool  # refuse a Redis that can lose acknowledged writes
    redis_timeout: float  # seconds any one Redis call may take, client and daemon


@dataclass(frozen=True)
class RetentionSettings:
    """How long records are kept (seconds); None: the backend's default."""

    done: float | None
    failed: float | None

    def for_backend(self, backend: str) -> tuple[float | None, float | None]:
        """(done, failed) in force: Redis keeps records in memory, so it has defaults."""
        if backend == "redis":
            return (REDIS_RETENTION[0] if self.done is None else self.done,
                    REDIS_RETENTION[1] if self.failed is None else self.failed)  # fmt: skip
        return self.done, self.failed


@dataclass(frozen=True)
class MetricsSettings:
    """What the daemon publishes for watchers, and where ``spoold metrics`` serves it."""

    interval: float  # seconds between stats snapshots
    long_wait: float  # a WARNING while the oldest due job has waited longer than this
    listen: str  # host:port, or unix:/path, for `spoold metrics`
    token_file: Path | None  # the bearer token a scraper must send (required off loopback)
    textfile: Path | None  # node_exporter textfile the daemon writes, or None


@dataclass(frozen=True)
class WebSettings:
    """``spoold web``: where it listens, who may see job contents, how far it searches."""

    listen: str  # host:port, or unix:/path
    token_file: Path | None  # a bearer token (also taken once as ?token=, then a cookie)
    basic_auth_file: Path | None  # "user:password" lines, for HTTP Basic
    redact: tuple[str, ...]  # keys whose values are masked at any depth (case-insensitive)
    scan_limit: int  # records a filtered list reads at most before it asks to go on
    refresh: float  # seconds between live refreshes of a page


DEFAULT_REDACT = ("password", "passwd", "secret", "token", "api_key", "apikey",
                  "authorization", "cookie", "credential", "private_key")  # fmt: skip
DEFAULT_WEB = WebSettings("127.0.0.1:9465", None, None, DEFAULT_REDACT, 10000, 3.0)


# Records live in Redis memory (about 1.7 kB each): 7 days of done, 30 of failed.
REDIS_RETENTION = (7 * 86400.0, 30 * 86400.0)


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int
    max_retries: int
    retry_delay: float
    backoff: str
    max_delay: float
    timeout: float
    shutdown_timeout: float
    python_path: tuple[Path, ...]
    memory_limit: int
    max_jobs_per_process: int
    max_interruptions: int
    send_ahead: bool
    user: str
    group: str


@dataclass(frozen=True)
class LogSettings:
    file: Path | None
    level: str
    rotation: str
    retention: str
    serialize: bool


@dataclass(frozen=True)
class Config:
    path: Path | None
    spool: SpoolSettings
    worker: WorkerSettings
    log: LogSettings
    allow: Mapping[str, frozenset[str]]
    retention: RetentionSettings = RetentionSettings(None, None)
    metrics: MetricsSettings = MetricsSettings(5.0, 60.0, "127.0.0.1:9464", None, None)
    web: WebSettings = DEFAULT_WEB
    schedules: tuple[Schedule, ...] = ()  # [[schedule]] tables (spoold/schedules.py)
    limits: Mapping[str, ClassLimit] = field(default_factory=dict)  # [limits], by class

    def is_allowed(self, class_path: str, method: str) -> bool:
        return method in self.allow.get(class_path, frozenset()) and not is_private(method)


# -- checks: each returns the clean value or raises ValueError("what is wrong") --


def _integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return value

    return check


def _number(minimum: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise ValueError(f"expected a number >= {minimum}")
        return float(value)

    return check


def _positive_number(value: Any) -> float:
    number = _number(0)(value)
    if number == 0:
        raise ValueError("expected a number > 0")
    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError("expected one of " + ", ".join(f'"{o}"' for o in options))
        return str(value)

    return check


def _id_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(v) and v >= 0 for v in value):
        raise ValueError("expected a list of numeric ids, such as [1000, 1001]")
    return tuple(value)


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _level(value: Any) -> str:
    levels = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
    if not isinstance(value, str) or value.upper() not in levels:
        raise ValueError("expected one of " + ", ".join(levels))
    return value.upper()


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d`` or ``2w`` as seconds; ValueError if it is none."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an age; write it like 30s, 15m, 12h or 7d")
    return float(match.group(1)) * _AGE_UNITS[match.group(2)]


def _age_or_default(value: Any) -> float | None:
    if value == "":
        return None
    if not isinstance(value, str):
        raise ValueError('expected an age such as "7d", or "" for the default')
    return parse_age(value)


def _redis_url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def _spool_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError("expected 1 to 64 letters, digits, '_', '.' or '-'")
    return value


def _listen_address(value: Any) -> str:
    try:
        parse_address(value)
    except (ValueError, AttributeError):  # (AttributeError: not a string)
        raise ValueError(
            'expected "host:port" (such as "127.0.0.1:9464") or "unix:/path"'
        ) from None
    return str(value)


@dataclass(frozen=True)
class Address:
    """Where to listen: a TCP host and port, or a unix socket's path."""

    text: str  # as written, for messages
    host: str = ""
    port: int = 0
    path: Path | None = None


def parse_address(text: str) -> Address:
    """``host:port`` (``[::1]:9464`` for IPv6; port 0: any free one) or ``unix:/path``."""
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket's path must be absolute (unix:/path)")
        return Address(text, path=Path(path))
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (sep and host and port.isdigit() and int(port) < 65536):
        raise ValueError(f"{text!r}: expected host:port (such as 127.0.0.1:9464) or unix:/path")
    return Address(text, host=host, port=int(port))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SCHEMA: dict[str, dict[str, tuple[Any, Callable[[Any], Any]]]] = {
    "spool": {
        "dir": ("/var/spool/spoold", _string),
        "max_job_bytes": (1048576, _integer(64)),
        "rescan_interval": (5.0, _positive_number),
        "fsync": (True, _boolean),
        "allowed_uids": ([], _id_list),
        "allowed_gids": ([], _id_list),
        "backend": ("files", _choice("files", "redis")),
        "url": ("redis://localhost:6379/0", _redis_url),
        "name": ("default", _spool_name),
        "host_id": ("", _string),
        "lease": (30.0, _positive_number),
        "require_durable": (True, _boolean),
        "redis_timeout": (5.0, _positive_number),
    },
    "retention": {
        "done": ("", _age_or_default),
        "failed": ("", _age_or_default),
    },
    "metrics": {
        "interval": (5.0, _positive_number),
        "long_wait": (60.0, _positive_number),
        "listen": ("127.0.0.1:9464", _listen_address),
        "token_file": ("", _string),
        "textfile": ("", _string),
    },
    "web": {
        "listen": ("127.0.0.1:9465", _listen_address),
        "token_file": ("", _string),
        "basic_auth_file": ("", _string),
        "redact": (list(DEFAULT_REDACT), _string_list),
        "scan_limit": (10000, _integer(100)),
        "refresh": (3.0, _positive_number),
    },
    "worker": {
        "concurrency": (4, _integer(1)),
        "max_retries": (3, _integer(0)),
        "retry_delay": (2.0, _number(0)),
        "backoff": ("fixed", _choice("fixed", "exponential")),
        "max_delay": (3600.0, _number(0)),
        "timeout": (3600.0, _number(0)),
        "shutdown_timeout": (30.0, _number(0)),
        "python_path": ([], _string_list),
        "memory_limit": (0, _integer(0)),
        "max_jobs_per_process": (1, _integer(1)),
        "max_interruptions": (5, _integer(1)),
        "send_ahead": (False, _boolean),
        "user": ("", _string),
        "group": ("", _string),
    },
    "log": {
        "file": ("/var/log/spoold/spoold.log", _string),
        "level": ("INFO", _level),
        "rotation": ("50 MB", _string),
        "retention": ("14 days", _string),
        "serialize": (False, _boolean),
    },
}


def find_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config``, else ``$SPOOLD_CONFIG``, else /etc/spoold/spoold.toml."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("SPOOLD_CONFIG")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Config:
    """Read and check the file at ``path``; raise ConfigError naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_mapping(data, base=path.resolve().parent, path=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_mapping(data: Mapping[str, Any], base: Path, path: Path | None = None) -> Config:
    """Build a Config from parsed TOML; relative paths resolve against ``base``."""
    unknown = set(data) - set(_SCHEMA) - {"allow", "schedule", "limits"}
    if unknown:
        raise ConfigError(f"[{sorted(unknown)[0]}]: unknown section")
    spool = _section(data, "spool")
    worker = _section(data, "worker")
    log = _section(data, "log")
    host_id = spool["host_id"] or os.uname().nodename  # the host name, without importing socket
    allow = _allowlist(data.get("allow", {}))
    return Config(
        path=path,
        spool=SpoolSettings(**{**spool, "dir": _resolve(base, spool["dir"]), "host_id": host_id}),
        worker=WorkerSettings(
            **{**worker, "python_path": tuple(_resolve(base, p) for p in worker["python_path"])}
        ),
        log=LogSettings(**{**log, "file": _resolve(base, log["file"]) if log["file"] else None}),
        allow=allow,
        retention=RetentionSettings(**_section(data, "retention")),
        metrics=_metrics(_section(data, "metrics"), base),
        web=_web(_section(data, "web"), base),
        schedules=_schedules(data.get("schedule", []), allow),
        limits=_limits(data.get("limits", {}), allow),
    )


def _metrics(metrics: dict[str, Any], base: Path) -> MetricsSettings:
    optional = {key: _resolve(base, metrics[key]) if metrics[key] else None
                for key in ("token_file", "textfile")}  # fmt: skip
    return MetricsSettings(**{**metrics, **optional})


def _web(web: dict[str, Any], base: Path) -> WebSettings:
    files = {key: _resolve(base, web[key]) if web[key] else None
             for key in ("token_file", "basic_auth_file")}  # fmt: skip
    return WebSettings(**{**web, **files, "redact": tuple(key.lower() for key in web["redact"])})


def _schedules(tables: Any, allow: Mapping[str, frozenset[str]]) -> tuple[Schedule, ...]:
    def allowed(class_path: str, method: str) -> bool:
        return method in allow.get(class_path, frozenset()) and not is_private(method)

    try:
        return parse_schedules(tables, allowed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    given = data.get(name, {})
    if not isinstance(given, dict):
        raise ConfigError(f"[{name}]: expected a table")
    schema = _SCHEMA[name]
    for key in given:
        if key not in schema:
            raise ConfigError(f"[{name}] {key}: unknown key (known: {', '.join(schema)})")
    values = {}
    for key, (default, check) in schema.items():
        raw = given.get(key, default)
        try:
            values[key] = check(raw)
        except ValueError as exc:
            raise ConfigError(f"[{name}] {key}: {exc}, got {raw!r}") from None
    return values


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _limits(table: Any, allow: Mapping[str, frozenset[str]]) -> dict[str, ClassLimit]:
    if not isinstance(table, dict):
        raise ConfigError('[limits]: expected a table of "module.Class" = { concurrency = N }')
    limits = {}
    for class_path, entry in table.items():
        if class_path not in allow:
            raise ConfigError(f'[limits] "{class_path}": not a class of [allow]')
        try:
            limits[class_path] = parse_limit(entry)
        except ValueError as exc:
            raise ConfigError(f'[limits] "{class_path}": {exc}') from None
    return limits


def _allowlist(table: Any) -> dict[str, frozenset[str]]:
    if not isinstance(table, dict):
        raise ConfigError('[allow]: expected a table of "module.Class" = ["method", ...]')
    allow = {}
    for class_path, methods in table.items():
        _check_class_path(class_path)
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ConfigError(f'[allow] "{class_path}": expected a list of method names')
        for method in methods:
            _check_method(class_path, method)
        allow[class_path] = frozenset(methods)
    return allow


def _check_class_path(class_path: str) -> None:
    if not is_class_path(class_path):
        raise ConfigError(
            f'[allow] "{class_path}": expected a dotted path such as "app.jobs.SomeClass"'
        )


def _check_method(class_path: str, method: str) -> None:
    if not is_identifier(method):
        raise ConfigError(f'[allow] "{class_path}": "{method}" is not a method name')
    if is_private(method):
        raise ConfigError(
            f'[allow] "{class_path}": "{method}" starts with "_"; such methods can never be allowed'
        )
