"""Each kernel module's public kernels called once with the production types.

The tests call these and then assert that every kernel compiled exactly one signature: the
types the stages pass (``service.runtime.state``) are the ones written here, so a second
signature would mean a silent recompile on the hot path.
"""

from __future__ import annotations

import numpy as np

from contracts.records import ASK, BID, BUY, MARKET_DATA, SELL
from service.config import FeedConfig
from service.kernels.book import (
    MIN_WINDOW_TICKS,
    book_level_qty,
    book_reset,
    book_set_level,
    book_throughput_kernel,
    new_book,
)
from service.kernels.feed import (
    new_simulator,
    sim_fill,
    sim_next,
    sim_next_interval_ns,
    sim_throughput_kernel,
)
from service.kernels.risk import RiskLimits, new_risk_state, risk_check, risk_on_execution
from service.kernels.signals import (
    N_FEATURES,
    NO_ORDER,
    Model,
    inference_throughput_kernel,
    model_score,
    new_features,
    strategy_decide,
    strategy_order_price,
    update_book_features,
    update_trade_flow,
)


def warm_book() -> None:
    book = new_book(1, MIN_WINDOW_TICKS)
    one = np.int64(1)
    book_set_level(book, np.int64(0), np.int64(BID), np.int64(100), one)
    book_set_level(book, np.int64(0), np.int64(ASK), np.int64(101), one)
    book_level_qty(book, np.int64(0), np.int64(BID), np.int64(100))
    book_reset(book, np.int64(0))
    stream = np.ones(1, dtype=np.int64)
    book_throughput_kernel(book, stream * 0, stream * BID, stream * 100, stream, one)


def warm_feed() -> None:
    """On a throwaway simulator, so no caller's simulator state is touched."""
    sim = new_simulator(FeedConfig(instruments=1, depth_levels=2, start_price_ticks=100))
    out = np.zeros(8, dtype=MARKET_DATA)
    sim_next(sim, out, 0)
    sim_fill(sim, out, len(out))
    sim_throughput_kernel(sim, out, 1)
    sim_next_interval_ns(sim, 1000.0)


def warm_risk() -> None:
    limits = RiskLimits(
        max_order_qty=np.int64(10),
        max_notional=np.float64(1e6),
        price_band_ticks=np.int64(10),
        position_limit=np.int64(100),
        orders_per_second=np.float64(100.0),
        burst=np.float64(10.0),
        tick_size=np.float64(0.01),
    )
    state = new_risk_state(1, limits)
    inst, side, qty = np.int64(0), np.int64(SELL), np.int64(1)
    price, mid, now = np.int64(100), np.float64(100.0), np.int64(1)
    risk_check(limits, state, inst, side, price, qty, mid, now, False)
    risk_on_execution(state, inst, side, qty, qty)


def warm_signals() -> None:
    book = new_book(1, 64)
    features = new_features(1)
    model = Model(np.zeros(N_FEATURES), 0.0, True)
    inst, alpha = np.int64(0), np.float64(0.1)
    update_book_features(features, book, inst, alpha)
    update_trade_flow(features, inst, np.int64(BUY), np.int64(1), alpha)
    score = model_score(model.weights, model.bias, model.logistic, features.values, inst)
    strategy_decide(score, np.float64(0.1), np.full(1, NO_ORDER, dtype=np.int64), inst)
    strategy_order_price(book, inst, np.int64(BUY), np.int64(0))
    inference_throughput_kernel(
        model.weights, model.bias, model.logistic, features.values, np.int64(1)
    )
