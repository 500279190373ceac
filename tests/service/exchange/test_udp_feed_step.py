"""The UDP feed stage's step (``udp_feed_step``) against a recovery service that dies and comes
back: the stage sees the connection break, retries with backoff while it is gone, reconnects by
itself when it is back, asks again for what is still missing, and publishes every counter."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import numpy as np

from contracts import stats_layout as L
from contracts.records import LEVEL, MARKET_DATA
from contracts.wire import MAX_DATAGRAM
from service.config import from_dict
from service.kernels import market_packets as mp
from service.kernels.tcp_link import L_FAILURES
from service.kernels.udp_feed import udp_feed_step
from service.runtime.network import open_market_data_socket
from service.runtime.state import new_udp_feed_state
from tests.support.local_ring import drain, local_ring
from tests.support.net import free_port, stop_process

SESSION = mp.session_bytes("LOWLAT0001")
PER_PACKET = 20
MESSAGES = 200


def records() -> np.ndarray:
    recs = np.zeros(MESSAGES, MARKET_DATA)
    recs["kind"] = LEVEL
    recs["price"] = 1000 + np.arange(MESSAGES)
    recs["qty"] = 1
    return recs


# a recovery service in its own process, so that it dies as a process does (SIGKILL)
SERVICE = textwrap.dedent(
    f"""
    import sys, time
    from service.exchange.recovery_service import RecoveryService
    from service.kernels.market_packets import session_bytes
    from tests.service.exchange.test_udp_feed_step import records
    address = ("127.0.0.1", int(sys.argv[1]))
    with RecoveryService(records(), session_bytes("LOWLAT0001"), {PER_PACKET}, lambda: {MESSAGES},
                         address):
        print("serving", flush=True)
        time.sleep(600)
    """
)


def start_service(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
    return proc


def packet(first: int) -> bytes:
    buf = np.zeros(MAX_DATAGRAM, np.uint8)
    n = mp.packet_build(buf, SESSION, first, records(), first - 1, PER_PACKET)
    return buf[:n].tobytes()


class Stage:
    """The feed step on a real socket, as the stage's loop calls it."""

    def __init__(self, recovery_port: int) -> None:
        self.config = from_dict(
            {
                "feed": {"source": "udp", "instruments": 1},
                "exchange": {
                    "market_data": f"127.0.0.1:{free_port()}",
                    "recovery": f"127.0.0.1:{recovery_port}",
                    "reconnect_min_ms": 1,
                    "reconnect_max_ms": 8,
                    "gap_timeout_ms": 60_000,
                },
            }
        )
        self.socket = open_market_data_socket(self.config)
        self.net = new_udp_feed_state(self.config, self.socket.fileno())
        self.md = local_ring(1024)
        self.ctrl = np.zeros(64, np.int64)
        self.shared = np.zeros(L.STATS_WORDS, np.int64)
        self.local = np.zeros(L.STATS_WORDS, np.int64)
        self.seqs: list[int] = []
        self.step_until(lambda: True)  # compiled (or loaded) before any wait is timed

    def send(self, first: int) -> None:
        ep = self.config.exchange.endpoint("market_data")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(packet(first), (ep.host, ep.port))

    def step_until(self, done, timeout: float = 10.0) -> None:
        start = time.monotonic()
        while True:
            now = time.monotonic_ns()
            udp_feed_step(self.net, self.md, self.ctrl, self.shared, self.local, now)
            self.seqs += drain(self.md)["seq"].tolist()
            if done():
                return
            assert time.monotonic() - start < timeout, self.counters()

    def counters(self) -> dict[str, int]:
        return {m.name: int(self.local[m.offset]) for m in L.CATALOG if m.stage == 0}


def test_the_feed_reconnects_to_recovery_by_itself_and_asks_again():
    port = free_port()
    first = start_service(port)
    stage = Stage(port)
    try:
        c = stage.counters
        stage.step_until(lambda: c()["recovery_connected"] == 1)
        stage.send(1)
        stage.send(41)  # 21..40 lost: asked for and recovered
        stage.step_until(lambda: len(stage.seqs) == 60)
        assert stage.seqs == list(range(1, 61))
        assert c()["md_messages_recovered"] == 20 and c()["recovery_requests"] == 1
    finally:
        first.kill()
        first.wait()
    # the service is gone: the stage sees the hang-up, and retries while nothing listens
    stage.step_until(lambda: c()["recovery_drops"] == 1 and c()["recovery_connected"] == 0)
    stage.send(81)  # 61..80 lost: nobody to ask
    link = stage.net.link.ivars
    stage.step_until(lambda: link[L_FAILURES] >= 3, timeout=5)  # refused, and refused again
    assert len(stage.seqs) == 60 and c()["feed_gaps"] == 2
    second = start_service(port)
    try:
        stage.step_until(lambda: len(stage.seqs) == 100)
    finally:
        stop_process(second)
    assert stage.seqs == list(range(1, 101))
    counters = c()
    assert counters["recovery_connects"] == 2 and counters["recovery_connected"] == 1
    assert counters["md_messages_recovered"] == 40 and counters["md_messages_given_up"] == 0
    assert counters["udp_packets"] == 3 + 2  # three live, two recovered
    assert counters["md_messages_sent"] == 100
