"""The recovery service: re-sends the market-data packets a feed handler missed, over TCP.

Packets are cut the same way every time (message k has sequence number k + 1, a packet holds
``per_packet`` messages from a multiple of ``per_packet`` plus 1), so any packet can be rebuilt
from the records alone: the service keeps no copy of what was sent. A request (session,
first, count: ``contracts.wire.RECOVERY_REQUEST``) gets the packets that carry the part of the
range already published, each behind a u16 length, then a packet of count 0 numbered with the
next sequence number: the reply's end. A request for another session, or a connection that
sends anything else, is closed. It runs on its own threads, off the publisher's hot path
(``tcp_service``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import numpy as np

from contracts.wire import LENGTH_PREFIX, MAX_DATAGRAM, RECOVERY_REQUEST
from service.exchange.tcp_service import TcpService, read_exactly
from service.kernels.market_packets import packet_build


class RecoveryService(TcpService):
    """Serve recovery for ``records`` (MARKET_DATA) of ``session`` on ``address`` (port 0: any
    free one; ``address`` after ``start``). ``published()`` says how many records have gone
    out so far: nothing beyond them is re-sent."""

    def __init__(
        self,
        records: np.ndarray,
        session: np.ndarray,
        per_packet: int,
        published: Callable[[], int],
        address: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.records = records
        self.session = session
        self.per_packet = per_packet
        self.published = published
        self.requests = 0
        super().__init__(address)

    def serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            raw = read_exactly(conn, RECOVERY_REQUEST.itemsize)
            if raw is None:
                return
            request = np.frombuffer(raw, RECOVERY_REQUEST)[0]
            if request["session"] != self.session.tobytes() or request["seq"] == 0:
                return  # not ours: close
            self.requests += 1
            conn.sendall(self.reply(int(request["seq"]), int(request["count"])))

    def reply(self, first: int, count: int) -> bytes:
        """The bytes that answer a request for ``count`` messages from ``first``."""
        out = bytearray()
        buf = np.zeros(MAX_DATAGRAM, np.uint8)
        published_end = self.published() + 1  # read once: the publisher moves on meanwhile
        end = min(first + count, published_end)  # exclusive
        seq = first - (first - 1) % self.per_packet  # the packet that carries ``first``
        while seq < end:
            n = min(self.per_packet, published_end - seq)
            size = packet_build(buf, self.session, seq, self.records, seq - 1, n)
            out += size.to_bytes(LENGTH_PREFIX, "big") + buf[:size].tobytes()
            seq += n
        size = packet_build(buf, self.session, max(seq, end), self.records, 0, 0)
        out += size.to_bytes(LENGTH_PREFIX, "big") + buf[:size].tobytes()
        return bytes(out)
