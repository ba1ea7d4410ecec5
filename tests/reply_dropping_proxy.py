"""A loopback TCP proxy that can lose a reply after the server acted on the request.

Placed between a client and PostgreSQL, it forwards bytes both ways. Armed with a byte
pattern, the next client packet containing it is forwarded, the server's reply to it is
swallowed, and once that reply has arrived (the statement ran, and in autocommit, committed)
both sockets are closed: the client sees its connection die with no way to know the outcome.
It fires once per arming, listens on 127.0.0.1 only and stops itself after `lifetime` seconds.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

CHUNK = 65536
POLL_SECONDS = 0.05


class ReplyDroppingProxy:
    """Forwards 127.0.0.1:<port> to `target`; `arm(pattern)` loses the next matching reply."""

    def __init__(self, target_host: str, target_port: int, lifetime: float = 300.0) -> None:
        self.target = (target_host, target_port)
        self.deadline = time.monotonic() + lifetime
        self.fired = 0
        self._pattern: bytes | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_SECONDS)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def arm(self, pattern: bytes) -> None:
        """Lose the reply to the next client packet that contains `pattern`."""
        with self._lock:
            self._pattern = pattern

    def _take_trigger(self, data: bytes) -> bool:
        with self._lock:
            if self._pattern is not None and self._pattern in data:
                self._pattern = None
                return True
            return False

    def _running(self) -> bool:
        return not self._stopping.is_set() and time.monotonic() < self.deadline

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while self._running():
            try:
                client, _ = self._listener.accept()
            except OSError:  # timeout, or the listener was closed
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            self._spawn(self._pump, client, server)
        self._listener.close()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        """Shuttle bytes both ways until either side closes (or the proxy stops)."""
        dropping = False  # the triggering request went out: swallow replies, then cut
        sockets = [client, server]
        try:
            while self._running():
                readable, _, _ = select.select(sockets, [], [], POLL_SECONDS)
                for sock in readable:
                    data = sock.recv(CHUNK)
                    if not data:
                        return
                    if sock is client:
                        server.sendall(data)
                        if not dropping and self._take_trigger(data):
                            dropping = True
                    elif dropping:
                        # The server answered: it has executed (and committed) the statement.
                        # Let the rest of the reply arrive too, then hang up on both sides.
                        self._drain(server)
                        self.fired += 1
                        return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    @staticmethod
    def _drain(server: socket.socket) -> None:
        server.settimeout(0.2)
        with contextlib.suppress(OSError):
            while server.recv(CHUNK):
                pass

    def close(self) -> None:
        """Stop accepting, end every connection, and wait (bounded) for the threads."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def reply_dropping_proxy(target_host: str, target_port: int) -> Iterator[ReplyDroppingProxy]:
    """A running proxy to `target`, closed on exit."""
    proxy = ReplyDroppingProxy(target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.close()
