"""How an OSError reads in a log line or a message."""

from __future__ import annotations

import errno


def describe_os_error(exc: BaseException, *, code: bool = False) -> str:
    """``Permission denied: /var/spool/spoold/tmp`` rather than ``[Errno 13] ...``.

    ``code`` gives ``EACCES: Permission denied`` instead, for a line about the
    process (out of memory, descriptors) rather than about a path. Anything
    else, or an OSError the system did not word, reads as itself, or as its
    type when it has no text.
    """
    if isinstance(exc, OSError) and code:
        return f"{errno.errorcode.get(exc.errno or 0, '?')}: {exc.strerror}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__
