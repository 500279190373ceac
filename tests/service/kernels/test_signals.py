"""Features, model and strategy kernels against plain-Python references; model file errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.features import FEATURE_NAMES, N_FEATURES
from contracts.records import ASK, BID, BUY, SELL
from service.kernels import signals
from service.kernels.book import EMPTY, book_set_level, new_book
from service.kernels.signals import (
    decision_bounds,
    inference_throughput_kernel,
    model_score,
    new_features,
    strategy_decide,
    strategy_decide_between,
    strategy_order_price,
    update_book_features,
    update_trade_flow,
)
from tests.support.alternatives import (
    FEATURE_NAMES as REFERENCE_FEATURE_NAMES,
)
from tests.support.alternatives import (
    NO_ORDER,
    ReferenceBook,
    ReferenceFeatures,
    ReferenceStrategy,
    needs_default_codegen,
    refcount_ops,
    reference_score,
)
from tests.support.warmups import warm_signals

ALPHA = 0.2


def impl(fn, which):
    return fn.py_func if which == "py" else fn


def row_as_dict(values, inst):
    return {name: float(values[inst, k]) for k, name in enumerate(FEATURE_NAMES)}


def test_feature_names_are_the_contract():
    assert FEATURE_NAMES == REFERENCE_FEATURE_NAMES
    assert N_FEATURES == 6


@pytest.mark.parametrize("which", ["jit", "py"])
@pytest.mark.parametrize("seed", [0, 1])
def test_features_follow_the_reference_on_a_random_stream(which, seed):
    on_book = impl(update_book_features, which)
    on_trade = impl(update_trade_flow, which)
    rng = np.random.default_rng(seed)
    n = 2
    book = new_book(n, 64)
    features = new_features(n)
    ref_books = [ReferenceBook(64) for _ in range(n)]
    refs = [ReferenceFeatures() for _ in range(n)]
    centre = [1_000, 2_000]
    for _ in range(1_500):
        inst = int(rng.integers(n))
        if rng.random() < 0.2:
            side, qty = (BUY if rng.random() < 0.5 else SELL), int(rng.integers(1, 100))
            on_trade(features, inst, side, qty, ALPHA)
            refs[inst].on_trade(side, qty, ALPHA)
        else:
            if rng.random() < 0.05:
                centre[inst] += int(rng.integers(-3, 4))
            side = BID if rng.random() < 0.5 else ASK
            # Mostly the right side of the centre, sometimes crossing it: crossed and locked
            # books must be reported invalid.
            offset = int(rng.integers(-1, 6))
            price = centre[inst] - offset if side == BID else centre[inst] + offset
            qty = 0 if rng.random() < 0.4 else int(rng.integers(1, 300))
            book_set_level(book, inst, side, price, qty)
            ref_books[inst].set_level(side, price, qty)
            valid = on_book(features, book, inst, ALPHA)
            assert bool(valid) == refs[inst].on_book(ref_books[inst], ALPHA)
        ref = refs[inst]
        assert features.valid[inst] == ref.valid
        assert features.mid[inst] == pytest.approx(ref.mid, rel=1e-12, nan_ok=True)
        assert row_as_dict(features.values, inst) == pytest.approx(ref.values, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("which", ["jit", "py"])
def test_one_sided_crossed_and_first_books(which):
    on_book = impl(update_book_features, which)
    book = new_book(1, 64)
    features = new_features(1)
    book_set_level(book, 0, BID, 100, 30)
    assert not on_book(features, book, 0, ALPHA)
    assert math.isnan(features.mid[0]) and features.valid[0] == 0

    book_set_level(book, 0, ASK, 102, 10)
    assert on_book(features, book, 0, ALPHA)
    values = row_as_dict(features.values, 0)
    assert features.mid[0] == 101.0
    assert values["mid_return"] == 0.0 and values["volatility"] == 0.0  # first mid: no change
    assert values["spread_ticks"] == 2.0
    assert values["imbalance"] == pytest.approx((30 - 10) / 40)
    assert values["microprice_offset"] == pytest.approx((100 * 10 + 102 * 30) / 40 - 101)

    before = features.values.copy()
    book_set_level(book, 0, BID, 102, 5)  # locked book: invalid, features kept
    assert not on_book(features, book, 0, ALPHA)
    assert features.valid[0] == 0 and features.mid[0] == 101.0
    np.testing.assert_array_equal(features.values, before)

    book_set_level(book, 0, BID, 102, 0)
    assert on_book(features, book, 0, ALPHA)  # back to 100 x 102
    book_set_level(book, 0, ASK, 104, 10)
    book_set_level(book, 0, ASK, 102, 0)  # mid 101 -> 102
    assert on_book(features, book, 0, ALPHA)
    assert features.values[0, signals.MID_RETURN] == pytest.approx(ALPHA * 1.0)
    assert features.values[0, signals.VOLATILITY] == pytest.approx(math.sqrt(ALPHA))


@pytest.mark.parametrize("which", ["jit", "py"])
def test_trade_flow(which):
    on_trade = impl(update_trade_flow, which)
    features = new_features(2)
    assert features.values[0, signals.TRADE_FLOW] == 0.0
    on_trade(features, 0, BUY, 10, 0.5)
    assert features.values[0, signals.TRADE_FLOW] == 1.0
    on_trade(features, 0, SELL, 10, 0.5)  # B = 2.5, S = 5
    assert features.values[0, signals.TRADE_FLOW] == pytest.approx((2.5 - 5) / 7.5)
    assert features.values[1, signals.TRADE_FLOW] == 0.0


@pytest.mark.parametrize("which", ["jit", "py"])
def test_quiet_market_averages_settle_at_zero_not_subnormal(which):
    """A mid that moves once and then never, a side that trades once and then never: the
    averages decay to exactly 0, never into subnormal floats (each operation on one costs a
    microcode assist on x86: the engine ran 4-6x slower on such a stream)."""
    on_book = impl(update_book_features, which)
    on_trade = impl(update_trade_flow, which)
    book, features = new_book(1, 64), new_features(1)
    book_set_level(book, 0, BID, 100, 5)
    book_set_level(book, 0, ASK, 102, 5)
    on_book(features, book, 0, ALPHA)
    book_set_level(book, 0, ASK, 101, 5)  # the mid moves half a tick, once
    on_trade(features, 0, BUY, 10, ALPHA)
    for _ in range(5_000):  # 0.8^5000 underflows: without the flush, subnormal long before
        on_book(features, book, 0, ALPHA)
        on_trade(features, 0, SELL, 10, ALPHA)
    for value in (features.ret[0], features.var[0], features.buy_flow[0]):
        assert value == 0.0
    assert features.values[0, signals.MID_RETURN] == 0.0
    assert features.values[0, signals.VOLATILITY] == 0.0
    assert features.values[0, signals.TRADE_FLOW] == -1.0
    assert features.sell_flow[0] == pytest.approx(10.0)


@pytest.mark.parametrize("which", ["jit", "py"])
@pytest.mark.parametrize("logistic", [True, False])
def test_model_score_matches_reference(which, logistic):
    score = impl(model_score, which)
    rng = np.random.default_rng(5)
    values = rng.normal(scale=2.0, size=(50, N_FEATURES))
    values[0] = 400.0  # saturates the logistic: exp overflows to inf without a fault
    values[1] = -400.0
    weights = rng.normal(size=N_FEATURES)
    named = dict(zip(FEATURE_NAMES, weights, strict=True))
    for inst in range(values.shape[0]):
        expected = reference_score(named, 0.3, logistic, row_as_dict(values, inst))
        assert score(weights, 0.3, logistic, values, inst) == pytest.approx(expected, rel=1e-12)


def test_logistic_score_is_centred_and_bounded():
    weights = np.ones(N_FEATURES)
    values = np.zeros((3, N_FEATURES))
    values[1] = 1e6
    values[2] = -1e6
    assert model_score(weights, 0.0, True, values, 0) == 0.0
    assert model_score(weights, 0.0, True, values, 1) == 0.5
    assert model_score(weights, 0.0, True, values, 2) == -0.5


@pytest.mark.parametrize("which", ["jit", "py"])
def test_inference_throughput_kernel_sums_every_score(which):
    fn = impl(inference_throughput_kernel, which)
    rng = np.random.default_rng(2)
    values = rng.normal(size=(20, N_FEATURES))
    weights = rng.normal(size=N_FEATURES)
    named = dict(zip(FEATURE_NAMES, weights, strict=True))
    one_pass = sum(reference_score(named, 0.1, True, row_as_dict(values, i)) for i in range(20))
    assert fn(weights, 0.1, True, values, 3) == pytest.approx(3 * one_pass, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(-1.0, 1.0, allow_nan=False) | st.just(math.nan), max_size=60),
    threshold=st.floats(0.01, 0.5),
)
def test_strategy_matches_reference(scores, threshold):
    last = np.full(2, NO_ORDER, dtype=np.int64)
    ref = ReferenceStrategy()
    for score in scores:
        assert strategy_decide(score, threshold, last, 1) == ref.decide(score, threshold)
        assert last[1] == ref.last
    assert last[0] == NO_ORDER  # other instruments untouched


@settings(max_examples=200, deadline=None)
@given(
    zs=st.lists(st.floats(-8.0, 8.0, allow_nan=False) | st.just(math.nan), max_size=60),
    threshold=st.floats(0.0, 0.6),
    logistic=st.booleans(),
)
def test_bounds_on_the_linear_value_decide_as_the_threshold_on_the_score(zs, threshold, logistic):
    """What the engine does (the linear value against decision_bounds) is what the strategy
    does on the model's score, away from a rounding error of a bound."""
    enter, rearm = decision_bounds(threshold, logistic)
    by_score = np.full(1, NO_ORDER, dtype=np.int64)
    by_value = np.full(1, NO_ORDER, dtype=np.int64)
    for z in zs:
        score = 1.0 / (1.0 + math.exp(-z)) - 0.5 if logistic else z
        near = [b for b in (threshold, 0.5 * threshold) if abs(abs(score) - b) < 1e-9]
        want = strategy_decide(score, threshold, by_score, 0)
        got = strategy_decide_between(z, enter, rearm, by_value, 0)
        if near:  # a tie may go either way: carry on from the score's state
            by_value[0] = by_score[0]
            continue
        assert got == want, (z, score)
        assert by_value[0] == by_score[0]


def test_a_logistic_bound_of_half_or_more_is_never_crossed():
    assert decision_bounds(0.5, True) == (math.inf, math.log(3.0))
    assert decision_bounds(1.0, True) == (math.inf, math.inf)
    assert decision_bounds(0.2, False) == (0.2, 0.1)


@pytest.mark.parametrize("which", ["jit", "py"])
def test_strategy_is_edge_triggered_with_hysteresis(which):
    decide = impl(strategy_decide, which)
    last = np.full(1, NO_ORDER, dtype=np.int64)
    sequence = [0.3, 0.35, 0.22, 0.15, 0.3, 0.05, 0.3, -0.3, -0.4, 0.0, -0.25, float("nan")]
    got = [decide(s, 0.2, last, 0) for s in sequence]
    # 0.15 is inside the band (0.1, 0.2]: not re-armed; 0.05 re-arms; a flip fires at once.
    assert got == [BUY, -1, -1, -1, -1, -1, BUY, SELL, -1, -1, SELL, -1]


@pytest.mark.parametrize("which", ["jit", "py"])
def test_order_price_takes_liquidity_or_joins_the_queue(which):
    price = impl(strategy_order_price, which)
    book = new_book(1, 64)
    assert price(book, 0, BUY, 0) == EMPTY
    book_set_level(book, 0, BID, 100, 1)
    book_set_level(book, 0, ASK, 103, 1)
    assert price(book, 0, BUY, 0) == 103
    assert price(book, 0, SELL, 0) == 100
    assert price(book, 0, BUY, 1) == 100  # join: its own side's best
    assert price(book, 0, SELL, 1) == 103


# --------------------------------------------------------------------------------------------
# Compilation


KERNELS = [
    update_book_features,
    update_trade_flow,
    model_score,
    strategy_decide,
    strategy_order_price,
    inference_throughput_kernel,
]


def test_each_kernel_compiles_one_signature_after_warm_up():
    warm_signals()
    for fn in KERNELS:
        assert len(fn.signatures) == 1, (fn.__name__, fn.signatures)


@needs_default_codegen
@pytest.mark.parametrize("fn", KERNELS[:-1])
def test_per_message_kernels_leave_no_refcount_operations(fn):
    warm_signals()
    assert refcount_ops(fn, fn.signatures[0]) == 0
