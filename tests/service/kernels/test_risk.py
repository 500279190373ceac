"""Pre-trade risk: every rule triggered on purpose, the token bucket, and a reference check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.records import BUY, SELL
from service.kernels.risk import (
    ACCEPTED,
    LAST_REFILL_NS,
    REJECT_KILL_SWITCH,
    REJECT_MAX_NOTIONAL,
    REJECT_MAX_ORDER_QTY,
    REJECT_POSITION_LIMIT,
    REJECT_PRICE_BAND,
    REJECT_RATE_THROTTLE,
    REJECT_REASONS,
    TOKENS,
    RiskLimits,
    new_risk_state,
    risk_check,
    risk_on_execution,
)
from tests.support.alternatives import ReferenceRisk, needs_default_codegen, refcount_ops
from tests.support.warmups import warm_risk

SECOND = 1_000_000_000
T0 = 5 * SECOND  # a monotonic clock reading well after boot


def limits(**overrides) -> RiskLimits:
    values = {
        "max_order_qty": np.int64(10),
        "max_notional": np.float64(5_000.0),
        "price_band_ticks": np.int64(5),
        "position_limit": np.int64(20),
        "orders_per_second": np.float64(10.0),
        "burst": np.float64(3.0),
        "tick_size": np.float64(0.5),
    }
    values.update(overrides)
    return RiskLimits(**values)


@pytest.fixture(params=["jit", "py"])
def kernels(request):
    """(risk_check, risk_on_execution), compiled or as plain Python."""
    if request.param == "py":
        return risk_check.py_func, risk_on_execution.py_func
    return risk_check, risk_on_execution


def test_reason_codes_follow_the_reason_names():
    assert ACCEPTED == 0
    codes = [
        REJECT_KILL_SWITCH,
        REJECT_MAX_ORDER_QTY,
        REJECT_MAX_NOTIONAL,
        REJECT_PRICE_BAND,
        REJECT_POSITION_LIMIT,
        REJECT_RATE_THROTTLE,
    ]
    assert [REJECT_REASONS[c - 1] for c in codes] == list(REJECT_REASONS)
    assert codes == list(range(1, 7))


# Each case: (overrides of a default order at price 100 / qty 5 / mid 100, expected reason).
# qty 5 * price 100 * tick 0.5 = 250 <= 5000 notional.
CASES = {
    "accepted": ({}, ACCEPTED),
    "kill_switch": ({"kill": True}, REJECT_KILL_SWITCH),
    "qty_over_max": ({"qty": 11}, REJECT_MAX_ORDER_QTY),
    "qty_zero": ({"qty": 0}, REJECT_MAX_ORDER_QTY),
    "qty_negative": ({"qty": -3}, REJECT_MAX_ORDER_QTY),
    "notional": ({"price": 1_001, "mid": 1_001.0, "qty": 10}, REJECT_MAX_NOTIONAL),
    "band_above": ({"price": 106}, REJECT_PRICE_BAND),
    "band_below": ({"price": 94, "side": SELL}, REJECT_PRICE_BAND),
    "band_edge_ok": ({"price": 105}, ACCEPTED),
    "no_mid_yet": ({"mid": math.nan}, REJECT_PRICE_BAND),
    "non_positive_price": ({"price": 0, "mid": 2.0}, REJECT_PRICE_BAND),
    "position_buy": ({"position": 16}, REJECT_POSITION_LIMIT),
    "position_buy_edge": ({"position": 15}, ACCEPTED),
    "position_sell": ({"position": -16, "side": SELL}, REJECT_POSITION_LIMIT),
    "pending_buy": ({"pending_buy": 16}, REJECT_POSITION_LIMIT),
    "pending_sell": ({"pending_sell": 16, "side": SELL}, REJECT_POSITION_LIMIT),
    "long_may_sell": ({"position": 40, "side": SELL}, ACCEPTED),
    "throttle": ({"tokens": 0.5}, REJECT_RATE_THROTTLE),
    # Several failures at once: the first in REJECT_REASONS order wins.
    "kill_beats_all": ({"kill": True, "qty": 99, "price": 999, "tokens": 0.0}, REJECT_KILL_SWITCH),
    "qty_beats_band": ({"qty": 11, "price": 999}, REJECT_MAX_ORDER_QTY),
    "band_beats_position": ({"price": 999, "mid": 100.0, "position": 99}, REJECT_PRICE_BAND),
    "position_beats_throttle": ({"position": 99, "tokens": 0.0}, REJECT_POSITION_LIMIT),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_rule(kernels, case):
    check, _ = kernels
    overrides, expected = CASES[case]
    order = {"side": BUY, "price": 100, "qty": 5, "mid": 100.0, "kill": False, **overrides}
    state = new_risk_state(2, limits())
    state.position[1] = overrides.get("position", 0)
    state.pending_buy[1] = overrides.get("pending_buy", 0)
    state.pending_sell[1] = overrides.get("pending_sell", 0)
    state.tokens[TOKENS] = overrides.get("tokens", 3.0)
    state.tokens[LAST_REFILL_NS] = T0
    before = [a.copy() for a in state]

    side, price, qty, mid = order["side"], order["price"], order["qty"], order["mid"]
    reason = check(limits(), state, 1, side, price, qty, mid, T0, order["kill"])
    assert reason == expected
    if expected == ACCEPTED:
        assert state.tokens[TOKENS] == before[3][TOKENS] - 1.0
        booked = state.pending_buy if order["side"] == BUY else state.pending_sell
        assert booked[1] == before[1 if order["side"] == BUY else 2][1] + order["qty"]
    else:
        # No token taken, nothing booked (the refill time may move; nothing else does).
        for got, was in zip(state[:3], before[:3], strict=True):
            np.testing.assert_array_equal(got, was)
        assert state.tokens[TOKENS] == before[3][TOKENS]
    np.testing.assert_array_equal(state.position, before[0])  # only executions move positions


def test_token_bucket_refills_at_the_configured_rate(kernels):
    check, _ = kernels
    lim = limits(burst=np.float64(3.0), orders_per_second=np.float64(10.0))
    state = new_risk_state(1, lim)

    def order(now_ns):
        return check(lim, state, 0, BUY, 100, 1, 100.0, now_ns, False)

    assert [order(T0) for _ in range(4)] == [ACCEPTED] * 3 + [REJECT_RATE_THROTTLE]
    assert order(T0 + 50_000_000) == REJECT_RATE_THROTTLE  # half a token after 50 ms
    assert order(T0 + 100_000_000) == ACCEPTED  # one token after 100 ms in all
    assert state.tokens[TOKENS] == pytest.approx(0.0, abs=1e-9)
    assert order(T0 + 100 * SECOND) == ACCEPTED  # a long pause refills only up to burst
    assert state.tokens[TOKENS] == pytest.approx(2.0)
    # A clock that steps back refills nothing and keeps the latest refill time.
    assert order(T0) == ACCEPTED
    assert state.tokens[LAST_REFILL_NS] == T0 + 100 * SECOND
    assert state.tokens[TOKENS] == pytest.approx(1.0)


def test_zero_rate_allows_only_the_burst(kernels):
    check, _ = kernels
    lim = limits(orders_per_second=np.float64(0.0), burst=np.float64(2.0))
    state = new_risk_state(1, lim)
    reasons = [check(lim, state, 0, BUY, 100, 1, 100.0, T0 + k * SECOND, False) for k in range(4)]
    assert reasons == [ACCEPTED, ACCEPTED, REJECT_RATE_THROTTLE, REJECT_RATE_THROTTLE]


def test_pending_and_positions_follow_executions(kernels):
    check, on_execution = kernels
    lim = limits(position_limit=np.int64(12), burst=np.float64(100.0))
    state = new_risk_state(1, lim)

    def buy(qty):
        return check(lim, state, 0, BUY, 100, qty, 100.0, T0, False)

    def sell(qty):
        return check(lim, state, 0, SELL, 100, qty, 100.0, T0, False)

    assert buy(8) == ACCEPTED
    assert buy(5) == REJECT_POSITION_LIMIT  # 8 pending + 5 > 12, although the position is 0
    assert state.pending_buy[0] == 8
    on_execution(state, 0, BUY, 8, 6)  # partly filled, the rest cancelled
    assert (state.position[0], state.pending_buy[0]) == (6, 0)
    assert buy(6) == ACCEPTED and buy(1) == REJECT_POSITION_LIMIT
    on_execution(state, 0, BUY, 6, 0)  # cancelled unfilled
    assert (state.position[0], state.pending_buy[0]) == (6, 0)

    assert sell(10) == ACCEPTED  # worst case -(6 - 10) = 4
    assert sell(9) == REJECT_POSITION_LIMIT  # -(6 - 19) = 13
    on_execution(state, 0, SELL, 10, 10)
    assert (state.position[0], state.pending_sell[0]) == (-4, 0)
    on_execution(state, 0, SELL, 10, 0)  # a duplicate report cannot make pending negative
    assert state.pending_sell[0] == 0


@pytest.mark.parametrize("which", ["jit", "py"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_orders_match_the_reference(which, seed):
    check = risk_check if which == "jit" else risk_check.py_func
    on_execution = risk_on_execution if which == "jit" else risk_on_execution.py_func
    rng = np.random.default_rng(seed)
    lim = limits(orders_per_second=np.float64(1_000.0), burst=np.float64(5.0))
    state = new_risk_state(3, lim)
    ref = ReferenceRisk(lim)
    open_orders = []
    now = T0
    for _ in range(2_000):
        now += int(rng.integers(-1_000, 3_000_000))  # occasionally steps back a little
        if open_orders and rng.random() < 0.4:
            inst, side, qty = open_orders.pop(int(rng.integers(len(open_orders))))
            filled = int(rng.integers(0, qty + 1))
            on_execution(state, inst, side, qty, filled)
            ref.on_execution(inst, side, qty, filled)
        else:
            inst = int(rng.integers(3))
            side = BUY if rng.random() < 0.5 else SELL
            price = int(rng.integers(90, 111))
            qty = int(rng.integers(-1, 13))
            mid = math.nan if rng.random() < 0.02 else float(rng.integers(95, 106)) + 0.5
            kill = bool(rng.random() < 0.02)
            reason = check(lim, state, inst, side, price, qty, mid, now, kill)
            assert reason == ref.check(inst, side, price, qty, mid, now, kill)
            if reason == ACCEPTED:
                open_orders.append((inst, side, qty))
        for inst in range(3):
            assert state.position[inst] == ref.position.get(inst, 0)
            assert state.pending_buy[inst] == ref.pending[BUY].get(inst, 0)
            assert state.pending_sell[inst] == ref.pending[SELL].get(inst, 0)
        assert state.tokens[TOKENS] == pytest.approx(ref.tokens, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([BUY, SELL]), st.integers(0, 12), st.integers(0, 400_000_000)),
        max_size=40,
    )
)
def test_any_order_sequence_matches_the_reference(steps):
    lim = limits()
    state = new_risk_state(1, lim)
    ref = ReferenceRisk(lim)
    now = T0
    for side, qty, gap in steps:
        now += gap
        got = risk_check(lim, state, 0, side, 100, qty, 100.0, now, False)
        assert got == ref.check(0, side, 100, qty, 100.0, now, False)
        if got == ACCEPTED and qty % 3 == 0:  # fill some orders completely, straight away
            risk_on_execution(state, 0, side, qty, qty)
            ref.on_execution(0, side, qty, qty)
    assert state.position[0] == ref.position.get(0, 0)
    assert state.pending_buy[0] == ref.pending[BUY].get(0, 0)


def test_new_state_starts_flat_with_a_full_bucket():
    state = new_risk_state(4, limits(burst=np.float64(7.0)))
    assert state.tokens[TOKENS] == 7.0
    for array in state[:3]:
        assert array.dtype == np.int64 and array.shape == (4,) and not array.any()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"burst": np.float64(0.5)}, "burst must be >= 1"),
        ({"orders_per_second": np.float64(-1.0)}, "orders_per_second must be a number >= 0"),
        ({"max_order_qty": np.int64(0)}, "max_order_qty must be >= 1"),
        ({"tick_size": np.float64(-1.0)}, "tick_size must be a positive"),
        ({"max_notional": np.float64(math.inf)}, "max_notional must be a number >= 0"),
        ({"position_limit": np.int64(-1)}, "position_limit must be >= 0"),
        ({"price_band_ticks": np.int64(-1)}, "price_band_ticks must be >= 0"),
    ],
)
def test_unusable_limits_are_refused(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        new_risk_state(1, limits(**overrides))


def test_each_kernel_compiles_one_signature_after_warm_up():
    warm_risk()
    for fn in (risk_check, risk_on_execution):
        assert len(fn.signatures) == 1, (fn.__name__, fn.signatures)


@needs_default_codegen
@pytest.mark.parametrize("fn", [risk_check, risk_on_execution])
def test_kernels_leave_no_refcount_operations(fn):
    warm_risk()
    assert refcount_ops(fn, fn.signatures[0]) == 0
