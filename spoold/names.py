"""What a job may name: a class by its dotted path, and a public method of it.

The allowlist (``config``) and the job format (``job``) hold names to the same
rules, each wording its own refusal. Standard library only: the client imports
``config``, and so this.
"""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_identifier(name: str) -> bool:
    """A Python name (ASCII only): what a module, class or method can be called."""
    return _IDENTIFIER.fullmatch(name) is not None


def is_class_path(class_path: str) -> bool:
    """A module and a class at the least, such as ``app.jobs.SomeClass``."""
    parts = class_path.split(".")
    return len(parts) >= 2 and all(is_identifier(part) for part in parts)


def is_private(method: str) -> bool:
    """``_`` methods are the class's own business: no job may call one, allowed or not."""
    return method.startswith("_")
