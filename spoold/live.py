"""The configuration in force: one holder, shared by every room of the daemon that reads it.

A SIGHUP reload swaps it here, in one place. Rooms keep the holder, never a
copy of what it holds: a room that kept its own ``Config`` would go on with
the old allowlist, limits or fsync setting after a reload (the daemon used
to reassign three such copies by hand, and the next room added would have
been forgotten).
"""

from __future__ import annotations

from dataclasses import dataclass

from spoold.config import Config
from spoold.identity import JobIdentity


@dataclass
class Live:
    config: Config
    identity: JobIdentity  # who jobs run as, resolved from config.worker

    def swap(self, config: Config, identity: JobIdentity) -> None:
        """Put a reloaded configuration in force, everywhere at once."""
        self.config = config
        self.identity = identity
