"""The exchange's order entry: a TCP server for one trading session (OUCH-like,
``contracts.wire``).

A client logs in with the session's name and the next sequence number it expects; the service
replays every message from there, then sends a HEARTBEAT carrying its last sequence number (the
client is caught up). ENTER gets ACCEPTED, then the match's EXECUTED and/or CANCELED; an order
that is not valid is REJECTED. Every message to the client is numbered and kept, so a client
that reconnects misses nothing. An ENTER whose token the session already knows is ignored
(counted): a client that re-sends after a reconnect never trades twice.

Matching is the caller's (``match``: an order in, its (filled lots, price) out) so the venue
can match against the book it publishes. ``disconnect_every`` > 0 closes the connection after
every n-th order, a fault a test can ask for.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import numpy as np

from contracts.records import BUY, SELL
from contracts.wire import (
    ACCEPTED,
    CANCEL,
    CANCELED,
    ENTER,
    ENTRY_MESSAGES,
    EXECUTED,
    HEARTBEAT,
    LENGTH_PREFIX,
    LOGIN,
    REJECTED,
)
from service.exchange.tcp_service import TcpService, read_exactly

HEARTBEAT_S = 1.0  # when idle; the gateway gives a session up after three silent seconds
# REJECTED.reason
R_BAD_INSTRUMENT, R_BAD_SIDE, R_BAD_QTY, R_BAD_PRICE = 1, 2, 3, 4


def message(kind: int, *fields) -> bytes:
    """One order-entry message with its length prefix."""
    body = np.array([fields], dtype=ENTRY_MESSAGES[kind]).tobytes()
    return (1 + len(body)).to_bytes(LENGTH_PREFIX, "big") + bytes([kind]) + body


class OrderEntryService(TcpService):
    """Serve order entry for ``session`` on ``address`` (port 0: any; ``address`` after
    start). ``match(instrument, side, qty, price)`` returns (lots filled, price)."""

    def __init__(
        self,
        session: bytes,
        n_instruments: int,
        match: Callable[[int, int, int, int], tuple[int, int]],
        address: tuple[str, int] = ("127.0.0.1", 0),
        disconnect_every: int = 0,
    ) -> None:
        self.session = session
        self.n_instruments = n_instruments
        self.match = match
        self.disconnect_every = disconnect_every
        self.log: list[bytes] = []  # message k has sequence number k + 1
        self.tokens: set[int] = set()
        self.orders = 0
        self.duplicate_enters = 0
        self.logins = 0
        self.fills = 0
        self._lock = threading.Lock()  # one session: its log and tokens
        super().__init__(address)

    # ----------------------------------------------------------------------------- session

    def _emit(self, out: list[bytes], kind: int, *fields) -> None:
        """Number a message, keep it, and queue it for this connection."""
        seq = len(self.log) + 1
        data = message(kind, seq, *fields)
        self.log.append(data)
        out.append(data)

    def serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(HEARTBEAT_S)
        login = _read_message(conn)
        if login is None or login[0] != LOGIN:
            return
        fields = np.frombuffer(login[1], ENTRY_MESSAGES[LOGIN])[0]
        if fields["session"] != self.session:
            return
        with self._lock:
            self.logins += 1
            start = max(int(fields["next_seq"]), 1) - 1
            replay = b"".join(self.log[start:]) + message(HEARTBEAT, len(self.log))
        conn.sendall(replay)
        last_sent = time.monotonic()
        while True:
            quiet = False
            try:
                got = _read_message(conn)
            except TimeoutError:
                got, quiet = None, True
            if got is None and not quiet:
                return  # closed
            out: list[bytes] = []
            if got is not None:
                kind, body = got
                if kind == ENTER:
                    if not self._enter(np.frombuffer(body, ENTRY_MESSAGES[ENTER])[0], out):
                        conn.sendall(b"".join(out))
                        conn.close()  # the fault asked for: the client must reconnect
                        return
                elif kind not in (HEARTBEAT, CANCEL):
                    return  # not a client message: close
            if not out and time.monotonic() - last_sent >= HEARTBEAT_S:
                with self._lock:
                    out.append(message(HEARTBEAT, len(self.log)))
            if out:
                conn.sendall(b"".join(out))
                last_sent = time.monotonic()

    def _enter(self, order, out: list[bytes]) -> bool:
        """Accept, match and answer one order; False when the fault says to disconnect now."""
        token = int(order["token"])
        instrument, side = int(order["instrument"]), int(order["side"])
        qty, price = int(order["qty"]), int(order["price"])
        with self._lock:
            if token in self.tokens:
                self.duplicate_enters += 1
                return True
            self.tokens.add(token)
            self.orders += 1
            reason = (
                R_BAD_INSTRUMENT
                if instrument >= self.n_instruments
                else R_BAD_SIDE
                if side not in (BUY, SELL)
                else R_BAD_QTY
                if qty <= 0
                else R_BAD_PRICE
                if price <= 0
                else 0
            )
            if reason:
                self._emit(out, REJECTED, token, reason)
            else:
                self._emit(out, ACCEPTED, token, time.monotonic_ns())
                filled, at = self.match(instrument, side, qty, price)
                if filled > 0:
                    self.fills += 1
                    self._emit(out, EXECUTED, token, filled, at, self.fills)
                if filled < qty:
                    self._emit(out, CANCELED, token, qty - filled)
            return not (self.disconnect_every and self.orders % self.disconnect_every == 0)


def _read_message(conn: socket.socket) -> tuple[int, bytes] | None:
    """(type, body) of the next message; None when the connection closed or sent garbage."""
    head = read_exactly(conn, LENGTH_PREFIX)
    if head is None:
        return None
    length = int.from_bytes(head, "big")
    if length < 1 or length > 64:
        return None
    data = read_exactly(conn, length)
    if data is None:
        return None
    kind = data[0]
    if kind not in ENTRY_MESSAGES or len(data) != 1 + ENTRY_MESSAGES[kind].itemsize:
        return None
    return kind, data[1:]
