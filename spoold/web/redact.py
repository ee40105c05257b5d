"""What of a job a viewer may see: contents hidden without auth, secrets masked with it.

Params, results, rejected bytes and tracebacks can hold anything a caller
put there, so a viewer who has not authenticated sees none of them, and an
authenticated one sees values under a ``[web] redact`` key (matched
case-insensitively, as a part of the key: "db_password" is masked by
"password") replaced by ``MASK``, at any depth. Flower and Huey learnt this
late (flower#231, Huey's ``capture_args=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MASK = "••••••"
# Fields of a job or record that carry what callers and jobs wrote.
CONTENT_KEYS = ("params", "result", "raw")
HISTORY_CONTENT = ("traceback",)
HIDDEN = "(hidden: sign in to see job contents)"


def masked(value: Any, keys: Sequence[str]) -> Any:
    """``value`` with every item under a secret-looking key replaced by MASK."""
    if isinstance(value, dict):
        return {name: MASK if _secret(name, keys) else masked(item, keys)
                for name, item in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [masked(item, keys) for item in value]
    return value


def _secret(name: Any, keys: Sequence[str]) -> bool:
    lowered = str(name).lower()
    return any(key in lowered for key in keys)


def for_viewer(document: dict[str, Any], *, signed_in: bool, keys: Sequence[str]) -> dict[str, Any]:
    """The record as this viewer may see it: masked, or with its contents hidden."""
    if signed_in:
        shown = masked(document, keys)
        return shown if isinstance(shown, dict) else {}
    shown = {name: HIDDEN if name in CONTENT_KEYS else value for name, value in document.items()}
    history = shown.get("history")
    if isinstance(history, list):
        shown["history"] = [
            {name: HIDDEN if name in HISTORY_CONTENT else value for name, value in entry.items()}
            if isinstance(entry, dict)
            else entry
            for entry in history
        ]
    return masked(shown, keys)  # type: ignore[no-any-return]
