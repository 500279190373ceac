"""The exchange's compiled publisher over a real loopback UDP socket: packets numbered without a
hole, cut at most ``per_packet`` messages, the left-out ones counted, heartbeats when idle, the
end of the session; and what `trading-service exchange` says when it cannot open its sockets."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np

from contracts.wire import MAX_DATAGRAM
from service.config import FeedConfig
from service.exchange import publisher as P
from service.kernels import market_packets as mp

SESSION = mp.session_bytes("LOWLAT0001")


def receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    return sock


def sender_to(rx: socket.socket) -> socket.socket:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    return tx


def packets(rx: socket.socket) -> list[tuple[int, int, int]]:
    """(verdict, seq, count) of every datagram waiting."""
    out = []
    rx.setblocking(False)
    while True:
        try:
            data = np.frombuffer(rx.recv(MAX_DATAGRAM), np.uint8).copy()
        except BlockingIOError:
            return out
        verdict, seq, count = mp.packet_check(data, len(data), SESSION, 8)
        out.append((int(verdict), int(seq), int(count)))


def test_a_session_goes_out_numbered_in_packets_with_the_left_out_ones_counted():
    with receiver() as rx, sender_to(rx) as tx:
        pub = P.new_publisher(FeedConfig(), tx.fileno(), SESSION, 1000, 0, per_packet=30)
        pub.ivars[P.P_DROP_EVERY] = 4
        sent = 0
        while sent < 1000:
            sent += P.publish_due(pub, 1_000)
        assert P.published_count(pub) == 1000
        got = packets(rx)
    assert all(v == mp.P_DATA and 1 <= c <= 30 for v, _, c in got)
    cut = -(-1000 // 30)
    assert pub.ivars[P.P_PACKETS] == cut and pub.ivars[P.P_LEFT_OUT] == cut // 4
    assert len(got) == cut - cut // 4
    # the left-out packets are the holes, and nothing else is missing
    numbers = sorted(s + k for _, s, c in got for k in range(c))
    assert len(set(numbers)) == len(numbers)
    missing = set(range(1, 1001)) - set(numbers)
    assert len(missing) == 1000 - len(numbers) and len(missing) == 30 * (cut // 4)
    records = pub.records
    assert records["seq"].tolist() == list(range(1, 1001))
    assert (records["send_ns"] == 1_000).all()  # flat out: each due when it went


def test_at_a_rate_only_the_due_messages_go_and_idle_time_sends_heartbeats_then_the_end():
    with receiver() as rx, sender_to(rx) as tx:
        pub = P.new_publisher(
            FeedConfig(burst_probability=0.0), tx.fileno(), SESSION, 100, 1_000_000,
            heartbeat_ns=1_000_000,
        )  # fmt: skip
        start = 10_000_000
        assert P.publish_due(pub, start) == 1  # the schedule starts now: one due
        assert P.next_due_ns(pub) == start + 1_000  # 1 M/s: the next in 1 us
        assert P.publish_due(pub, start + 10_499) == 10  # due at +1..+10 us
        assert pub.records["send_ns"][:11].tolist() == [start + 1_000 * k for k in range(11)]
        assert P.publish_due(pub, start + 10_600) == 0  # nothing due, not idle long enough
        assert P.publish_due(pub, start + 10_600 + 1_000_000) == 89  # the rest, then idle
        assert P.publish_due(pub, start + 3_000_000) == 0  # idle: a heartbeat
        assert P.publish_end(pub, start + 3_000_001)
        got = packets(rx)
    assert got[-2] == (mp.P_HEARTBEAT, 101, 0)
    assert got[-1] == (mp.P_END, 101, 0)
    assert pub.ivars[P.P_HEARTBEATS] == 1


def test_an_exchange_that_cannot_listen_for_recovery_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "x.toml"
        config.write_text(f'[exchange]\nrecovery = "127.0.0.1:{port}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "exchange", "--config", config],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("trading-service exchange: [exchange] cannot open its sockets")
    assert "Address already in use" in line
