"""Market data over real sockets: packets sent over loopback UDP with some lost on purpose, read
by the compiled poll (recvmmsg, the handler, the ring), the gaps recovered from the recovery
service over TCP; and the ways the recovery stream can break."""

from __future__ import annotations

import itertools
import socket
import time

import numpy as np
import pytest

from contracts.records import LEVEL, MARKET_DATA
from contracts.wire import LENGTH_PREFIX, MAX_DATAGRAM
from service.exchange.recovery_service import RecoveryService
from service.kernels import feed_handler as fh
from service.kernels import market_packets as mp
from service.kernels.recovery import POLL_BROKEN, R_BROKEN, new_recovery_client, recovery_poll
from service.kernels.sockets import new_receive_batch
from service.kernels.udp_feed import udp_feed_poll
from tests.support.local_ring import drain, local_ring

SESSION = mp.session_bytes("LOWLAT0001")
PER_PACKET = 20
MESSAGES = 5_000
GAP_TIMEOUT_NS = 5_000_000_000


def stream(n: int) -> np.ndarray:
    recs = np.zeros(n, MARKET_DATA)
    recs["kind"] = LEVEL
    recs["price"] = 10_000 + np.arange(n) % 97
    recs["qty"] = 1 + np.arange(n) % 13
    recs["send_ns"] = np.arange(n)
    return recs


def connect(address) -> socket.socket:
    conn = socket.create_connection(address, timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setblocking(False)
    return conn


def datagrams(recs, dropped: set[int]):
    """The packets of ``recs`` but the ``dropped`` ones, then a heartbeat (what comes next)."""
    buf = np.zeros(MAX_DATAGRAM, np.uint8)
    for k, first in enumerate(range(1, len(recs) + 1, PER_PACKET)):
        if k not in dropped:
            n = mp.packet_build(buf, SESSION, first, recs, first - 1, PER_PACKET)
            yield buf[:n].tobytes()
    n = mp.packet_build(buf, SESSION, len(recs) + 1, recs, 0, 0)
    yield buf[:n].tobytes()


@pytest.mark.parametrize("dropped", [set(), {0, 7, 8, 9, 120, 249}])
def test_lost_packets_come_back_through_recovery_and_the_ring_gets_every_message_once(dropped):
    recs = stream(MESSAGES)
    with (
        RecoveryService(recs, SESSION, PER_PACKET, published=lambda: MESSAGES) as service,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        connect(service.address) as recovery,
    ):
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        handler = fh.new_feed_handler(SESSION, 1, hold=512, first_seq=1)
        client = new_recovery_client(recovery.fileno(), retry_ns=50_000_000)
        batch = new_receive_batch(32, MAX_DATAGRAM)
        md = local_ring(1 << 14)
        to_send = datagrams(recs, dropped)
        got: list[np.ndarray] = []
        # compiled (or loaded) before the deadline starts: nothing has been sent yet
        udp_feed_poll(receiver.fileno(), batch, handler, client, md, 0, GAP_TIMEOUT_NS)
        deadline = time.monotonic() + 20
        while sum(map(len, got)) < MESSAGES and time.monotonic() < deadline:
            # a few at a time: loopback drops what overflows the socket's buffer, and this
            # test's losses are the ones it chose
            for datagram in itertools.islice(to_send, 8):
                sender.sendto(datagram, receiver.getsockname())
            _, status = udp_feed_poll(
                receiver.fileno(), batch, handler, client, md, time.monotonic_ns(), GAP_TIMEOUT_NS
            )
            assert status == 0
            got.append(drain(md))
    out = np.concatenate(got)
    assert len(out) == MESSAGES
    assert (out["seq"] == np.arange(1, MESSAGES + 1)).all()
    assert (out["price"] == recs["price"]).all() and (out["qty"] == recs["qty"]).all()
    c = handler.counters
    assert c[fh.C_RECOVERED] == PER_PACKET * len(dropped)
    assert c[fh.C_LOST] == 0 and c[fh.C_DUPLICATES] == 0
    assert (c[fh.C_GAPS] > 0) == bool(dropped)
    assert (service.requests > 0) == bool(dropped)  # asked only when something was lost


def test_the_service_answers_only_what_was_published_and_ends_every_reply():
    recs = stream(100)
    service = RecoveryService(recs, SESSION, PER_PACKET, published=lambda: 50)
    reply = service.reply(45, 40)  # asks up to 84; only 50 published
    frames = []
    while reply:
        n = int.from_bytes(reply[:LENGTH_PREFIX], "big")
        frames.append(np.frombuffer(reply[LENGTH_PREFIX : LENGTH_PREFIX + n], np.uint8))
        reply = reply[LENGTH_PREFIX + n :]
    verdicts = [mp.packet_check(f, len(f), SESSION, 1) for f in frames]
    assert verdicts == [(mp.P_DATA, 41, 10), (mp.P_HEARTBEAT, 51, 0)]
    service.stop()


def test_a_request_for_another_session_is_closed():
    with RecoveryService(stream(10), SESSION, PER_PACKET, published=lambda: 10) as service:
        conn = socket.create_connection(service.address, timeout=5)
        buf = np.zeros(64, np.uint8)
        n = mp.packet_build(buf, mp.session_bytes("OTHER"), 1, stream(1), 0, 0)
        conn.sendall(buf[:n].tobytes())
        assert conn.recv(100) == b""  # closed, nothing sent
        conn.close()


@pytest.mark.parametrize(
    "reply", [b"\x00\x05hello", (MAX_DATAGRAM + 1).to_bytes(2, "big") + bytes(10), b""]
)
def test_a_broken_recovery_stream_is_reported_not_trusted(reply):
    """A frame shorter than a header, one longer than a datagram, or the service hanging up."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, connect(listener.getsockname()) as conn:
        server_side, _ = listener.accept()
        server_side.settimeout(5)
        handler = fh.new_feed_handler(SESSION, 1, hold=4, first_seq=1)
        heartbeat = np.zeros(64, np.uint8)
        n = mp.packet_build(heartbeat, SESSION, 5, stream(1), 0, 0)
        fh.handler_on_datagram(handler, heartbeat, n, local_ring(64), fh.LIVE, 0)
        assert fh.handler_missing(handler) == (1, 4)  # the sender is at 5: 1..4 missing
        client = new_recovery_client(conn.fileno(), retry_ns=0)
        md = local_ring(64)
        assert recovery_poll(client, handler, md, 1) == 0
        assert len(server_side.recv(100)) == 20  # the request
        if reply:
            server_side.sendall(reply)
        else:
            server_side.close()
        deadline = time.monotonic() + 5
        status = 0
        while status == 0 and time.monotonic() < deadline:
            status = recovery_poll(client, handler, md, 2)
        assert status == POLL_BROKEN
        assert client.ivars[R_BROKEN] == (1 if reply else 0)
        assert len(drain(md)) == 0
        server_side.close()
