"""Logging: loguru sinks for the daemon, and the standard library routed into them.

Only the daemon process logs through loguru; the launcher and job processes
never hold its sinks (a child killed while holding a sink's lock could hang
the parent, and several processes rotating one file make a mess). Every
job line carries the job id in ``extra["job_id"]``. Under journald, lines
get a ``<N>`` priority prefix and no timestamp, since the journal adds both.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from loguru import logger

from spoold.config import ConfigError, LogSettings

if TYPE_CHECKING:
    from loguru import Record

_SYSLOG_PRIORITY = {
    "TRACE": 7,
    "DEBUG": 7,
    "INFO": 6,
    "SUCCESS": 5,
    "WARNING": 4,
    "ERROR": 3,
    "CRITICAL": 2,
}
_TERMINAL_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <8}</level> {message}"
)
_FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <8} {message}"


def setup_logging(settings: LogSettings) -> None:
    """Replace every sink with stderr and, if configured, the rotating log file."""
    logger.remove()
    logger.configure(extra={"job_id": "-"})
    # Every sink: backtrace=False, diagnose=False. A traceback in the log is Python's own,
    # from where the error was caught; loguru's defaults add every frame up to main() and
    # the value of each variable in them, which buries the error under a screenful and
    # can copy a job's params (secrets among them) into the log.
    if _stderr_is_journal():
        logger.add(sys.stderr, level=settings.level, format=_journal_format, colorize=False,
                   backtrace=False, diagnose=False)  # fmt: skip
    else:
        logger.add(sys.stderr, level=settings.level, format=_TERMINAL_FORMAT,
                   backtrace=False, diagnose=False)  # fmt: skip
    if settings.file is not None:
        _add_file_sink(settings)
    _route_standard_logging()


def _add_file_sink(settings: LogSettings) -> None:
    assert settings.file is not None
    try:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(
            settings.file,
            level=settings.level,
            format=_FILE_FORMAT,
            rotation=settings.rotation,
            retention=settings.retention,
            serialize=settings.serialize,
            colorize=False,
            backtrace=False,
            diagnose=False,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[log] rotation/retention: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"[log] file: cannot open {settings.file}: {exc.strerror}") from None


def _stderr_is_journal() -> bool:
    """True when stderr is the journal's socket ($JOURNAL_STREAM names its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def _journal_format(record: Record) -> str:
    # "\<" escapes the bracket: loguru would read "<6>" as a colour tag.
    priority = _SYSLOG_PRIORITY.get(record["level"].name, 6)
    return f"\\<{priority}>{{level}} {{message}}\n{{exception}}"


class _ToLoguru(logging.Handler):
    """Sends standard-library records (watchdog's inotify binding logs that way) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def _route_standard_logging() -> None:
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.WARNING, force=True)


def job_logger(job_id: str) -> Any:
    """A logger whose lines carry ``job_id``."""
    return logger.bind(job_id=job_id)
