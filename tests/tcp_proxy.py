"""A TCP proxy a test controls: one host's link to Redis, to cut, stall or reset.

``TcpProxy(target_port).start()`` listens on a free port of 127.0.0.1 and
forwards every connection to the target, in a thread of the test process
(the daemons under test stay single-threaded). ``cut()`` stops forwarding
in both directions without closing anything, as a network partition does
(bytes wait in the proxy's hands; calls time out); ``heal()`` forwards again,
dropping what was held back (a partition loses packets, and TCP would have
given up on them). ``reset()`` closes every connection at once; ``delay``
(seconds) holds every chunk that long before passing it on: a latency spike.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.create_server((host, 0))
        self.port: int = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.pairs: dict[socket.socket, socket.socket] = {}
        self.passing = True
        self.delay = 0.0
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> TcpProxy:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.thread.start()
        return self

    def cut(self) -> None:
        self.passing = False

    def heal(self) -> None:
        self.passing = True

    def reset(self) -> None:
        with self.lock:
            for sock in list(self.pairs):
                self._drop(sock)

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.reset()
        self.listener.close()
        self.selector.close()

    def _run(self) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(0.05):
                with self.lock:
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._forward(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            client, _ = self.listener.accept()
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                return
            for one, other in ((client, upstream), (upstream, client)):
                one.setblocking(False)
                self.pairs[one] = other
                self.selector.register(one, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        if sock not in self.pairs:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        if not self.passing:
            return  # a partition: the bytes are lost
        if self.delay:
            time.sleep(self.delay)  # every connection waits: the link is slow, not lossy
        try:
            self.pairs[sock].sendall(data)
        except OSError:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        other = self.pairs.pop(sock, None)
        for one in (sock, other):
            if one is None:
                continue
            self.pairs.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(one)
            one.close()
