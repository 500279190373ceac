"""A TCP service on its own threads: one per connection, off the publisher's hot path.

The exchange's recovery and order-entry services are both one of these: a subclass says what
to do with a connection (``serve``); this class listens, starts and stops, and is a context
manager. Port 0 listens on any free port; ``address`` is the one it got.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from typing import Self


class TcpService:
    """Listen on ``address`` and call ``serve(connection)`` on a thread per connection."""

    def __init__(self, address: tuple[str, int]) -> None:
        service = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                service.serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(address, Handler, bind_and_activate=True)
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread: threading.Thread | None = None

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_exactly(conn: socket.socket, n: int) -> bytes | None:
    """``n`` bytes from ``conn``; None when it closed (or failed) first. On a connection with a
    timeout, TimeoutError means nothing at all came; once part has come, the rest is waited for.
    """
    data = b""
    while len(data) < n:
        try:
            chunk = conn.recv(n - len(data))
        except TimeoutError:
            if not data:
                raise
            continue
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data
