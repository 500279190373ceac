"""``trading-service exchange``: the other side of the wire, as its own process.

It publishes a session of market data as sequenced UDP packets to ``[exchange] market_data``
(``publisher``), serves recovery on ``[exchange] recovery`` (``recovery_service``) from the
same records, and takes orders on ``[exchange] orders`` (``order_entry_service``). The
messages are the feed simulator's (``[feed]``: instruments, rate, bursts, snapshots) or a
recording's. Orders are matched against the book it has published (``matching``): a buy at or
above the best ask takes up to the lots there, at that price, a sell likewise at the best bid,
and the rest is cancelled (nothing rests).

When the last message has gone out, or on SIGTERM/SIGINT, it sends the end of the session,
keeps answering recovery and orders for ``linger_s`` so a feed can fetch what it missed at the
end and open orders can end, and stops.

It runs on the CPUs the config leaves free of stages (``housekeeping_cpus``): an exchange on
the same machine that the scheduler put on a stage's core would take turns with a busy
poller. Between packets it sleeps rather than spins unless asked to (``spin``), since it
shares those CPUs with the supervisor and the telemetry API. A message still carries its
intended time, so what sleeping delays shows in the receiver's latency, not hidden.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.config import Config, housekeeping_cpus
from service.exchange import publisher as P
from service.exchange.matching import Matcher
from service.exchange.order_entry_service import OrderEntryService
from service.exchange.recovery_service import RecoveryService
from service.kernels.market_packets import session_bytes

END_REPEATS = 3  # the end of a session is sent more than once: a datagram may be lost
MAX_NAP_S = 0.0002  # the longest sleep between two looks at the schedule


@dataclass
class ExchangeResult:
    messages: int
    packets: int
    left_out: int
    heartbeats: int
    send_errors: int
    recovery_requests: int
    orders: int
    order_fills: int
    order_logins: int
    duplicate_enters: int
    elapsed_s: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def market_data_sender(config: Config) -> socket.socket:
    """A UDP socket connected to ``[exchange] market_data`` (sent from ``interface``)."""
    x = config.exchange
    ep = x.endpoint("market_data")
    family = socket.AF_INET6 if ep.ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if ep.multicast and family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            if x.interface:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(x.interface)
                )
        elif ep.multicast:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        elif x.interface:
            sock.bind((x.interface, 0))
        sock.connect((ep.host, ep.port))
    except BaseException:
        sock.close()
        raise
    return sock


def run_exchange(  # noqa: PLR0913 -- the session's whole description
    config: Config,
    messages: int,
    replay: np.ndarray | None = None,
    drop_every: int = 0,
    disconnect_every: int = 0,
    linger_s: float = 2.0,
    spin: bool = False,
    log: Callable[[str], None] = print,
    stop: Callable[[], bool] = lambda: False,
) -> ExchangeResult:
    """Publish one session and serve its recovery; returns what was sent."""
    x = config.exchange
    os.sched_setaffinity(0, housekeeping_cpus(config))  # its threads too: set before they start
    session = session_bytes(x.session)
    _warm_up(config, session)
    sender = market_data_sender(config)
    pub = P.new_publisher(
        config.feed,
        sender.fileno(),
        session,
        messages,
        config.feed.rate,
        replay=replay,
        drop_every=drop_every,
    )
    orders_at = x.endpoint("orders")
    instruments = config.feed.instruments if replay is None else int(replay["instrument"].max()) + 1
    orders = OrderEntryService(
        session.tobytes(),
        instruments,
        Matcher(pub, instruments, config.engine.book_window_ticks),
        (orders_at.host, orders_at.port),
        disconnect_every=disconnect_every,
    )
    recovery_at = x.endpoint("recovery")
    service = RecoveryService(
        pub.records,
        session,
        int(pub.ivars[P.P_PER_PACKET]),
        lambda: int(P.published_count(pub)),
        (recovery_at.host, recovery_at.port),
    )
    signalled = []
    previous = {
        s: signal.signal(s, lambda signum, frame: signalled.append(signum))
        for s in (signal.SIGTERM, signal.SIGINT)
    }
    start = time.monotonic()
    try:
        with service, orders, sender:
            log(
                f"exchange: session {x.session.strip()}, {int(pub.ivars[P.P_TOTAL])} messages "
                f"to {x.market_data} (udp), recovery on {x.recovery} (tcp), orders on "
                f"{x.orders} (tcp)"
            )
            total = int(pub.ivars[P.P_TOTAL])
            while int(pub.ivars[P.P_PUBLISHED]) < total and not signalled and not stop():
                now = time.monotonic_ns()
                published = P.publish_due(pub, now)
                if published == 0 and not spin:
                    due = int(P.next_due_ns(pub))
                    time.sleep(min(MAX_NAP_S, max(0.0, (due - now) / 1e9)) if due else 0)
            for _ in range(END_REPEATS):
                P.publish_end(pub, time.monotonic_ns())
            elapsed = time.monotonic() - start
            log(f"exchange: session ended after {int(pub.ivars[P.P_PUBLISHED])} messages")
            _linger(linger_s, signalled, stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    iv = pub.ivars
    return ExchangeResult(
        messages=int(iv[P.P_PUBLISHED]),
        packets=int(iv[P.P_PACKETS]),
        left_out=int(iv[P.P_LEFT_OUT]),
        heartbeats=int(iv[P.P_HEARTBEATS]),
        send_errors=int(iv[P.P_SEND_ERRORS]),
        recovery_requests=service.requests,
        orders=orders.orders,
        order_fills=orders.fills,
        order_logins=orders.logins,
        duplicate_enters=orders.duplicate_enters,
        elapsed_s=elapsed,
    )


def _warm_up(config: Config, session: np.ndarray) -> None:
    """Compile (or load) the publisher's kernels before the session's clock starts: the first
    messages would otherwise be late by the compile time."""
    pub = P.new_publisher(config.feed, -1, session, 1, 0)
    P.publish_due(pub, 0)  # to no socket: the send fails and is counted
    P.publish_end(pub, 0)
    P.next_due_ns(pub)
    P.published_count(pub)


def _linger(seconds: float, signalled: list, stop: Callable[[], bool]) -> None:
    """Serve recovery a while after the end; a second signal cuts it short."""
    first = len(signalled)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(signalled) <= first and not stop():
        with contextlib.suppress(InterruptedError):
            time.sleep(0.01)
