"""Each stage's state, built from the config: the arrays the kernels of
``service.kernels.stages`` run on. Built once per process, before the clock starts; the engine's
model file is read here (``service.runtime.model``), never on the hot path.
"""

from __future__ import annotations

import numpy as np

from contracts import stats_layout as L
from contracts.records import MARKET_DATA, ORDER, ORDER_POST
from service.config import Config
from service.kernels.book import new_book
from service.kernels.feed import new_simulator
from service.kernels.feed_handler import new_feed_handler
from service.kernels.market_packets import session_bytes
from service.kernels.order_entry import OrderEntry, new_order_entry
from service.kernels.recovery import new_recovery_client
from service.kernels.risk import RiskLimits, new_risk_state
from service.kernels.signals import decision_bounds, new_features
from service.kernels.stages import (
    E_INSTRUMENTS,
    E_NEXT_ORDER_ID,
    E_ORDER_FLAGS,
    E_ORDER_QTY,
    E_STALE,
    F_INTERVAL_NS,
    F_NEXT_NS,
    F_NEXT_SEQ,
    F_SPEED,
    F_START_NS,
    G_BATCH_SIZE,
    G_RNG,
    G_TIMEOUT_NS,
    EngineState,
    FeedState,
    GatewayState,
)
from service.kernels.tcp_link import new_tcp_link
from service.kernels.udp_feed import UdpFeed, new_udp_feed
from service.runtime.model import default_model_path, load_model


def new_feed_state(
    config: Config,
    replay: np.ndarray | None = None,
    start_ns: float = 0.0,
    net: UdpFeed | None = None,
) -> FeedState:
    """The feed's state: the simulator, the ``replay`` records, or ``net``, the UDP feed
    (``new_udp_feed_state``, on a socket the caller opened)."""
    if replay is None:
        replay = np.zeros(0, dtype=MARKET_DATA)
    ivars = np.zeros(4, dtype=np.int64)
    ivars[F_NEXT_SEQ] = 1
    fvars = np.zeros(4, dtype=np.float64)
    fvars[F_INTERVAL_NS] = 1e9 / config.feed.rate if config.feed.rate > 0 else 0.0
    fvars[F_NEXT_NS] = start_ns
    fvars[F_START_NS] = start_ns
    if config.feed.replay_pace == "recorded":
        fvars[F_SPEED] = config.feed.replay_speed
    if net is None:
        net = new_udp_feed_state(config, -1)
    return FeedState(
        new_simulator(config.feed), replay, np.zeros(1, dtype=MARKET_DATA), ivars, fvars, net
    )


def new_udp_feed_state(config: Config, fd: int) -> UdpFeed:
    """The UDP feed on bound socket ``fd``, with its handler, recovery client and link to
    ``[exchange] recovery``; ``fd`` -1 makes the placeholder the other sources carry (the
    state's types are the same for every source, so one compiled loop serves them all)."""
    x = config.exchange
    live = fd >= 0
    handler = new_feed_handler(
        session_bytes(x.session), config.feed.instruments, x.hold_packets if live else 1, 0
    )  # first_seq 0: join the session at the first packet seen (the engine waits for snapshots)
    recovery = x.endpoint("recovery")
    # a request unanswered this long is asked again (the service may have lost it)
    client = new_recovery_client(-1, retry_ns=max(x.gap_timeout_ms * 1_000_000 // 4, 1_000_000))
    link = new_tcp_link(
        recovery.host,
        recovery.port,
        x.reconnect_min_ms * 1_000_000,
        x.reconnect_max_ms * 1_000_000,
    )
    return new_udp_feed(fd, handler, client, link, x.gap_timeout_ms * 1_000_000)


def new_engine_state(config: Config, n_instruments: int, decisions: int = 0) -> EngineState:
    """The engine's state; ``decisions`` > 0 keeps a log of that many accepted orders."""
    e, r = config.engine, config.risk
    model = load_model(e.model_file or default_model_path())  # off the hot path, once
    limits = RiskLimits(
        np.int64(r.max_order_qty),
        np.float64(r.max_notional),
        np.int64(r.price_band_ticks),
        np.int64(r.position_limit),
        np.float64(r.orders_per_second),
        np.float64(r.burst),
        np.float64(r.tick_size),
    )
    ivars = np.zeros(8, dtype=np.int64)
    ivars[E_NEXT_ORDER_ID] = 1
    ivars[E_INSTRUMENTS] = n_instruments
    ivars[E_ORDER_QTY] = e.order_qty
    ivars[E_ORDER_FLAGS] = ORDER_POST if e.order_style == "join" else 0
    enter, rearm = decision_bounds(e.signal_threshold, bool(model.logistic))
    fvars = np.array([e.ewma_alpha, e.signal_threshold, enter, rearm], dtype=np.float64)
    # the UDP feed joins the exchange's session wherever it is: no book is true before its
    # first snapshot (the simulator and a recording start with one)
    joins_live = config.feed.source == "udp"
    ivars[E_STALE] = n_instruments if joins_live else 0
    return EngineState(
        new_book(n_instruments, e.book_window_ticks),
        new_features(n_instruments),
        model,
        limits,
        new_risk_state(n_instruments, limits),
        np.full(n_instruments, -1, dtype=np.int64),
        np.full(n_instruments, int(joins_live), dtype=np.int64),  # stale
        np.zeros(n_instruments, dtype=np.int64),
        ivars,
        fvars,
        np.zeros(decisions, dtype=ORDER),
    )


def slo_thresholds(config: Config) -> np.ndarray:
    """The SLO thresholds in ns, padded with 0 (unused) to MAX_SLO_THRESHOLDS."""
    out = np.zeros(L.MAX_SLO_THRESHOLDS, dtype=np.int64)
    thresholds = config.slo.thresholds_ns()[: L.MAX_SLO_THRESHOLDS]
    out[: len(thresholds)] = thresholds
    return out


def new_gateway_state(config: Config, seed: int = 0x9E3779B97F4A7C15) -> GatewayState:
    g = config.gateway
    ivars = np.zeros(4, dtype=np.int64)
    ivars[G_BATCH_SIZE] = g.batch_size
    ivars[G_TIMEOUT_NS] = g.batch_timeout_us * 1000
    ivars[G_RNG] = np.uint64(seed).astype(np.int64) | 1
    return GatewayState(
        np.zeros(g.batch_size, dtype=ORDER),
        np.zeros(g.batch_size, dtype=np.int64),
        ivars,
        np.array([g.fill_ratio], dtype=np.float64),
        slo_thresholds(config),
        new_order_entry_state(config, live=False),
    )


def new_order_entry_state(config: Config, live: bool) -> OrderEntry:
    """Order entry to ``[exchange] orders`` (``live``: the gateway's real one; else the
    placeholder the simulated exchange and the warm-up carry, with the same types)."""
    g, x = config.gateway, config.exchange
    link = None
    if live:
        orders = x.endpoint("orders")
        link = new_tcp_link(
            orders.host, orders.port, x.reconnect_min_ms * 1_000_000, x.reconnect_max_ms * 1_000_000
        )
    table = g.open_orders if live else 64
    return new_order_entry(link, session_bytes(x.session), table, g.heartbeat_ms * 1_000_000)


def pre_touch(state) -> None:
    """Write one byte per page of every array in ``state`` (nested tuples), in place.

    np.zeros memory is mapped on first write; a page fault on the hot path costs microseconds.
    """
    if isinstance(state, np.ndarray):
        if state.flags.writeable and state.nbytes:
            pages = state.reshape(-1).view(np.uint8)[::4096]
            pages[:] = pages  # same values: only the first touch is the point
    elif isinstance(state, tuple):
        for item in state:
            pre_touch(item)
