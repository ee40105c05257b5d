"""``spoold web`` as a subprocess, for the dashboard's tests (HTTP and browser).

``Web(config, workdir, token, name).start(allow_actions=...).wait_serving()``
runs ``python -m spoold web --config C --listen 127.0.0.1:0`` (tests/served.py
does the rest). No fixture here: each test module makes its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from served import Served


@dataclass
class Web(Served):
    """One ``python -m spoold web`` subprocess; its stdout and stderr in files."""

    name: str = "web"
    command: str = "web"

    @property
    def base(self) -> str:
        """The URL without its trailing slash: ``web.base + "/job/x"``."""
        return self.url.rstrip("/")

    def start(self, *args: str, allow_actions: bool = False) -> Self:
        """Start it, with ``--allow-actions`` if asked; no wait."""
        return super().start(*args, *(["--allow-actions"] if allow_actions else []))
