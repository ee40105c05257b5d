"""Who jobs run as: ``[worker] user`` and ``group`` resolved, and the rule for root.

A daemon started as root never runs jobs as root by accident: it needs an
explicit ``user`` (an unprivileged one, or ``"root"`` on purpose, which is
logged as a warning). A daemon that is not root cannot switch users, so the
setting is ignored with a warning; jobs then run as the daemon's own user.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spoold.config import ConfigError, WorkerSettings

if TYPE_CHECKING:
    from spoold.exec.messages import JobUser


@dataclass(frozen=True)
class JobIdentity:
    """The user an attempt switches to; ``uid`` None means: stay as the daemon is."""

    uid: int | None = None
    gid: int | None = None
    name: str = ""
    home: str = ""

    def as_request(self) -> JobUser:
        """What a run request says of the job user: nothing when there is none to switch to."""
        if self.uid is None or self.gid is None:
            return {}
        return {"uid": self.uid, "gid": self.gid, "user": self.name, "home": self.home}


def job_identity(worker: WorkerSettings, euid: int) -> tuple[JobIdentity, list[str]]:
    """Resolve the job user for a daemon running as ``euid``; return it and any warnings."""
    if euid != 0:
        return JobIdentity(), _not_root_warnings(worker, euid)
    if not worker.user:
        raise ConfigError(
            "[worker] user: required when spoold runs as root; name an unprivileged user "
            '(or "root" to run jobs as root on purpose)'
        )
    identity = _lookup(worker.user, worker.group)
    warnings = ['jobs run as root ([worker] user = "root")'] if identity.uid == 0 else []
    return identity, warnings


def _lookup(user: str, group: str) -> JobIdentity:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"[worker] user: no such user {user!r}") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"[worker] group: no such group {group!r}") from None
    return JobIdentity(uid=entry.pw_uid, gid=gid, name=entry.pw_name, home=entry.pw_dir)


def _not_root_warnings(worker: WorkerSettings, euid: int) -> list[str]:
    me = _user_name(euid)
    if worker.user and worker.user != me:
        return [f"[worker] user = {worker.user!r} ignored: spoold is not root, so jobs run as {me}"]
    return []


def who(uid: int) -> str:
    """A uid in words, for reasons and log lines: "alice (uid 1000)", or "uid 1234"."""
    name = _user_name(uid)
    return f"{name} (uid {uid})" if name != str(uid) else f"uid {uid}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
