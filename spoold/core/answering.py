"""Answering who asks about a job (``spoold/asking.py``): show, wait and cancel.

The daemon's control socket and its connections sit in the loop's selector
(no thread). A request is read while the loop waits (``on_event``) and
served in the next turn (``serve``), where every decision is made: a cancel
is one of them, so a cancel and the job's own end are never two filings
racing. An answer waits in its connection's buffer until the socket takes
it, so a client that does not read holds nothing up.

Who may: the kernel says who asks (``SO_PEERCRED``). Root and the daemon's
own user may see, wait for and cancel any job; the watching group
(``Engine.view_group``: ``spoold init --view-group``) may see and wait for
any; anyone else only for jobs whose ``submitted_by`` is their uid. A job
that is not the asker's is answered as if there were none, so that nobody
learns another's ids, params or results.

A waiter is answered when this daemon files the job's record (``filed``,
an ``Events`` hook), or, for a record filed by another daemon of a shared
backend, when the backend says so (``Engine.follow_records``: Redis's
``filed:<id>`` channel); a look at the waited jobs every ``LOOK_EVERY``
seconds, only while somebody waits, stands in for a word that was lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger

from spoold.asking import (
    BAD_REQUEST,
    ENDED,
    FORBIDDEN,
    MAX_REQUEST,
    NOT_NOW,
    OPS,
    UNKNOWN,
    Answer,
    socket_path,
)
from spoold.core.backend import CatalogError, Engine, NoSuchJob, StoredJob
from spoold.core.events import Listener
from spoold.job import submitter_of
from spoold.live import Live

LOOK_EVERY = 1.0  # seconds between looks at the waited jobs (records filed elsewhere)
MAX_CONNECTIONS = 256  # open at once; more are closed unanswered
RECORD_STATES = ("done", "failed")
_OWN_UID = os.geteuid()
_PEERCRED = struct.Struct("3i")  # pid, uid, gid

# What the daemon does for a cancel: True if the job will be filed (now or when its
# attempt stops), False if it neither waits nor runs where it can be stopped.
Cancel = Callable[[str, int, float], bool]
Find = Callable[[str], StoredJob]


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    uid: int
    viewer: bool  # in the watching group
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    request: tuple[str, str] | None = None  # (op, job id), read and not yet served

    @property
    def privileged(self) -> bool:
        return self.uid in (0, _OWN_UID)


class Answering(Listener):
    """The control socket, its connections, and the waiters for records."""

    def __init__(
        self,
        live: Live,
        selector: selectors.BaseSelector,
        find: Find,
        cancel: Cancel,
        engine: Engine,
    ) -> None:
        self.live = live
        self.selector = selector
        self.find = find
        self.cancel = cancel
        self.engine = engine  # who may read everything, and records filed by other daemons
        self.path = socket_path(live.config.spool.dir)
        self.listener: socket.socket | None = None
        self.connections: set[Connection] = set()
        self.asked: list[Connection] = []  # requests read, to serve at the next turn
        self.waiters: dict[str, list[Connection]] = {}  # by job id
        self.next_look = 0.0

    # -- life cycle --

    def open(self) -> None:
        """Listen on ``<dir>/control.sock``; say why not in the log if it cannot be made."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a dead daemon's (the spool's lock is this daemon's)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, 0o666)  # noqa: S103 - anyone may ask; each is answered about their own
            listener.listen(64)
        except OSError as exc:
            listener.close()
            logger.warning("cannot listen on {} ({}): spoold cancel, and wait and show for "
                           "submitters, will not work", self.path, exc)  # fmt: skip
            return
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ, self)
        self.listener = listener

    def close(self) -> None:
        for connection in list(self.connections):
            self._drop(connection)
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def next_wakeup(self) -> float | None:
        if self.asked:
            return 0.0
        return self.next_look if self.waiters else None

    # -- the loop's wait: reading and writing --

    def on_event(self, source: object, mask: int) -> None:
        """The selector says ``source`` (this room: the listener; else a connection) is ready."""
        if source is self:
            self._accept()
        elif isinstance(source, Connection) and source in self.connections:
            if mask & selectors.EVENT_WRITE:
                self._flush(source)
            if mask & selectors.EVENT_READ and source in self.connections:
                self._read(source)

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the client waits in the backlog
                logger.debug("cannot take a control connection now ({})", exc)
                return
            if len(self.connections) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            pid, uid, _gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            )
            connection = Connection(sock, uid, self._is_viewer(pid))
            self.connections.add(connection)
            self.selector.register(sock, selectors.EVENT_READ, connection)

    def _is_viewer(self, pid: int) -> bool:
        """Whether the asking process is in the watching group, by its groups as the kernel
        lists them (read while it is connected, so the pid is still its own)."""
        gid = self.engine.view_group()
        return gid is not None and gid in _groups_of(pid)

    def _read(self, connection: Connection) -> None:
        try:
            chunk = connection.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the asker went away (a wait given up): forget it
            self._drop(connection)
            return
        if connection.request is not None or connection.outbox:
            return  # one request per connection: the rest is ignored
        connection.inbox += chunk
        if b"\n" not in connection.inbox:
            if len(connection.inbox) > MAX_REQUEST:
                self._answer(connection, _refusal(BAD_REQUEST, "the request is too long"))
            return
        line = bytes(connection.inbox.split(b"\n", 1)[0])
        request = _parse(line)
        if isinstance(request, Answer):
            self._answer(connection, request)
            return
        connection.request = request
        self.asked.append(connection)

    def _answer(self, connection: Connection, answer: Answer) -> None:
        connection.outbox += answer.to_json()
        self._flush(connection)

    def _flush(self, connection: Connection) -> None:
        try:
            sent = connection.sock.send(connection.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(connection)
            return
        del connection.outbox[:sent]
        if not connection.outbox:
            self._drop(connection)  # answered: one request per connection
            return
        self.selector.modify(connection.sock, selectors.EVENT_WRITE, connection)

    def _drop(self, connection: Connection) -> None:
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection.sock)
        connection.sock.close()
        for job_id, waiting in list(self.waiters.items()):
            if connection in waiting:
                waiting.remove(connection)
                if not waiting:
                    del self.waiters[job_id]

    # -- the turn: serving --

    def serve(self, now: float) -> None:
        """Serve the requests read since the last turn; look at the waited jobs when due."""
        asked, self.asked = self.asked, []
        for connection in asked:
            if connection in self.connections and connection.request is not None:
                op, job_id = connection.request
                self._serve(connection, op, job_id, now)
        for job_id in self.engine.follow_records(self.waiters.keys()):  # filed elsewhere
            self._look(job_id)
        if self.waiters and now >= self.next_look:
            self.next_look = now + LOOK_EVERY
            for job_id in list(self.waiters):
                self._look(job_id)

    def _serve(self, connection: Connection, op: str, job_id: str, now: float) -> None:
        try:
            stored = self.find(job_id)
        except NoSuchJob:
            self._answer(connection, _unknown(job_id))
            return
        except (CatalogError, OSError) as exc:  # the backend cannot be reached now
            self._answer(connection, _refusal(NOT_NOW, str(exc)))
            return
        if not self._may_see(connection, stored):
            self._answer(connection, _unknown(job_id))
            return
        ended = stored.state in RECORD_STATES
        if op == "show" or (op == "wait" and ended):
            self._answer(connection, _found(stored))
        elif op == "wait":
            self.waiters.setdefault(job_id, []).append(connection)
        elif not self._may_cancel(connection, stored):
            self._answer(connection, _refusal(FORBIDDEN, f"you may not cancel job {job_id}: "
                                              "only its submitter and root may"))  # fmt: skip
        elif ended:
            self._answer(connection, _ended(stored))
        else:
            self._cancel(connection, job_id, now)

    def _cancel(self, connection: Connection, job_id: str, now: float) -> None:
        self.waiters.setdefault(job_id, []).append(connection)  # answered when it is filed
        if self.cancel(job_id, connection.uid, now) or connection not in self.connections:
            return
        self._unwait(job_id, connection)
        try:
            stored = self.find(job_id)
        except NoSuchJob:
            self._answer(connection, _unknown(job_id))
            return
        except (CatalogError, OSError) as exc:
            self._answer(connection, _refusal(NOT_NOW, str(exc)))
            return
        if stored.state in RECORD_STATES:
            self._answer(connection, _ended(stored))
            return
        self._answer(connection, _refusal(
            NOT_NOW, f"job {job_id} cannot be cancelled now ({stored.state}); try again"
        ))  # fmt: skip

    def _unwait(self, job_id: str, connection: Connection) -> None:
        waiting = self.waiters.get(job_id, [])
        if connection in waiting:
            waiting.remove(connection)
        if not waiting:
            self.waiters.pop(job_id, None)

    def _may_see(self, connection: Connection, stored: StoredJob) -> bool:
        return connection.privileged or connection.viewer or _submitter(stored, connection.uid)

    def _may_cancel(self, connection: Connection, stored: StoredJob) -> bool:
        return connection.privileged or _submitter(stored, connection.uid)

    # -- records filed --

    def filed(self, job_id: str, status: str, class_path: str) -> None:
        """A record was filed here: answer who waits for it."""
        if job_id in self.waiters:
            self._look(job_id)

    def _look(self, job_id: str) -> None:
        try:
            stored = self.find(job_id)
        except NoSuchJob:  # gone (purged): nothing more will come
            for connection in self.waiters.pop(job_id, []):
                self._answer(connection, _unknown(job_id))
            return
        except (CatalogError, OSError):
            return  # the backend cannot be reached: look again later
        if stored.state not in RECORD_STATES:
            return
        for connection in self.waiters.pop(job_id, []):
            self._answer(connection, _found(stored))


def _parse(line: bytes) -> tuple[str, str] | Answer:
    try:
        said = json.loads(line)
    except ValueError:
        return _refusal(BAD_REQUEST, "the request is not JSON")
    if not isinstance(said, dict) or said.get("op") not in OPS:
        return _refusal(BAD_REQUEST, f"the request needs an op: one of {', '.join(OPS)}")
    job_id = said.get("id")
    if not isinstance(job_id, str) or not job_id:
        return _refusal(BAD_REQUEST, "the request needs a job id")
    return said["op"], job_id


def _submitter(stored: StoredJob, uid: int) -> bool:
    return submitter_of(stored.document or {}) == uid


def _groups_of(pid: int) -> set[int]:
    """The process's groups (its gid and supplementary ones), from /proc."""
    groups: set[int] = set()
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(("Gid:", "Groups:")):
                    groups.update(int(part) for part in line.split()[1:] if part.isdigit())
    except OSError:
        pass
    return groups


def _found(stored: StoredJob) -> Answer:
    return Answer(ok=True, state=stored.state, document=stored.document)


def _ended(stored: StoredJob) -> Answer:
    status = (stored.document or {}).get("status", stored.state)
    return Answer(ok=False, state=stored.state, document=stored.document, code=ENDED,
                  error=f"job {stored.id} has ended already ({status})")  # fmt: skip


def _unknown(job_id: str) -> Answer:
    return _refusal(UNKNOWN, f"no job {job_id} of yours")


def _refusal(code: str, error: str) -> Answer:
    return Answer(ok=False, code=code, error=error)
