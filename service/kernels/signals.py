"""From book to decision: features, model inference and the strategy, one instrument at a time.

Features (all in ticks or unitless, one row per instrument in ``Features.values``):

    mid_return         EWMA of the change of the mid between book updates
    microprice_offset  size-weighted microprice minus mid: where the next trade leans
    spread_ticks       best ask minus best bid
    imbalance          (bid size - ask size) / (bid size + ask size) at the top, in [-1, 1]
    volatility         square root of the EWMA of squared mid changes
    trade_flow         (B - S) / (B + S), B and S EWMAs of buyer- and seller-initiated volume

The EWMAs run in event time: one step per book update (or per trade for the flow) of that
instrument, with weight ``alpha`` on the newest observation. The first two-sided book of an
instrument contributes a mid change of 0. A book that is one-sided, crossed or locked is not
valid: its features are left as they were and the caller should not trade on them.

Every EWMA step flushes a result below ``TINY`` to 0. In a quiet market (a mid that does not
move, a side that does not trade) an average decays geometrically and, after some 70,000 steps
at alpha 0.01, becomes a subnormal float; on x86 each operation on one takes a microcode assist.
The engine took 195 ns a message on a stream whose mid never moved, 34 ns on a real day,
until this flush (docs/performance.md).

The model is linear in the features, ``z = bias + w . x``; a logistic model reports
``sigmoid(z) - 0.5`` so that both kinds give a score centred on 0 (positive: buy). Models are
TOML files read by ``service.runtime.model.load_model``, off the hot path.

The strategy is edge-triggered with hysteresis: it fires once when the score crosses
``threshold`` (or ``-threshold``) and re-arms only after the score has come back within
``threshold / 2`` of zero, so a score hovering at the threshold does not send a stream of
orders. Orders take liquidity: a buy at the best ask, a sell at the best bid.

Kernels read per-instrument state into locals, compute, and write it back once, without calling
other kernels out of line: that keeps numba's refcount pruning effective (see
``service.kernels.book.book_set_level``). Production scalar types: ``inst``, ``side``, ``qty``
int64; ``alpha``, ``score``, ``threshold``, ``bias`` float64; ``logistic`` bool.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from contracts.features import N_FEATURES
from contracts.records import BUY, SELL
from service.kernels.book import EMPTY
from service.kernels.jit import inline_kernel, kernel, llvm_inline_kernel

# Column of each feature in Features.values (compile-time constants inside kernels).
MID_RETURN, MICROPRICE_OFFSET, SPREAD_TICKS, IMBALANCE, VOLATILITY, TRADE_FLOW = range(N_FEATURES)

NO_ORDER = -1  # strategy_decide: nothing to send
TINY = 1e-100  # an EWMA below this is 0: far above subnormals (2.2e-308), far below any signal
MODEL_KINDS = ("logistic", "linear")

Features = namedtuple("Features", "values mid valid buy_flow sell_flow var ret")
Features.__doc__ = (
    "Feature rows and EWMA state per instrument: values[n, N_FEATURES], last mid (nan before "
    "the first two-sided book), valid flag, and the buy/sell flow, variance and return EWMAs."
)

Model = namedtuple("Model", "weights bias logistic")
Model.__doc__ = "Linear model over the features: weights[N_FEATURES], bias, logistic link or not."


def new_features(n_instruments: int) -> Features:
    """Allocate feature state for ``n_instruments``: no book seen yet, all EWMAs at 0."""
    n = int(n_instruments)
    if n < 1:
        raise ValueError(f"n_instruments must be >= 1 (got {n_instruments})")
    return Features(
        values=np.zeros((n, N_FEATURES), dtype=np.float64),
        mid=np.full(n, np.nan, dtype=np.float64),
        valid=np.zeros(n, dtype=np.uint8),
        buy_flow=np.zeros(n, dtype=np.float64),
        sell_flow=np.zeros(n, dtype=np.float64),
        var=np.zeros(n, dtype=np.float64),
        ret=np.zeros(n, dtype=np.float64),
    )


@inline_kernel
def ewma_step(average, observation, alpha):
    """``average`` moved ``alpha`` of the way to ``observation``; 0 once below ``TINY``."""
    value = (1.0 - alpha) * average + alpha * observation
    return value if abs(value) >= TINY else 0.0


@llvm_inline_kernel
def update_book_features(features, book, inst, alpha):
    """Recompute the book features of ``inst``; True when its book is two-sided and uncrossed."""
    row = np.uint64(inst)
    window = book.bid_qty.shape[1]
    bid = book.best_bid[row]
    ask = book.best_ask[row]
    base = book.base[row]
    # Top sizes read unconditionally from clamped slots (only used when both sides exist):
    # no array access in a conditional block (see module docstring).
    bid_size = book.bid_qty[row, np.uint64(min(max(bid - base, 0), window - 1))]
    ask_size = book.ask_qty[row, np.uint64(min(max(ask - base, 0), window - 1))]
    mid = features.mid[row]
    ret = features.ret[row]
    var = features.var[row]
    mid_return = features.values[row, MID_RETURN]
    microprice_offset = features.values[row, MICROPRICE_OFFSET]
    spread = features.values[row, SPREAD_TICKS]
    imbalance = features.values[row, IMBALANCE]
    volatility = features.values[row, VOLATILITY]

    valid = bid != EMPTY and ask != EMPTY and bid < ask
    if valid:
        new_mid = (bid + ask) * 0.5
        change = 0.0 if np.isnan(mid) else new_mid - mid
        mid = new_mid
        ret = ewma_step(ret, change, alpha)
        var = ewma_step(var, change * change, alpha)
        top = bid_size + ask_size  # > 0: a best price always has size
        mid_return = ret
        microprice_offset = (bid * ask_size + ask * bid_size) / top - mid
        spread = float(ask - bid)
        imbalance = (bid_size - ask_size) / top
        volatility = np.sqrt(var)

    features.mid[row] = mid
    features.ret[row] = ret
    features.var[row] = var
    features.values[row, MID_RETURN] = mid_return
    features.values[row, MICROPRICE_OFFSET] = microprice_offset
    features.values[row, SPREAD_TICKS] = spread
    features.values[row, IMBALANCE] = imbalance
    features.values[row, VOLATILITY] = volatility
    features.valid[row] = valid
    return valid


@llvm_inline_kernel
def update_trade_flow(features, inst, aggressor_side, qty, alpha):
    """Fold one trade into the buy/sell volume EWMAs of ``inst`` and its trade_flow feature."""
    row = np.uint64(inst)
    bought = qty * (aggressor_side == BUY)
    sold = qty * (aggressor_side == SELL)
    buy_flow = ewma_step(features.buy_flow[row], bought, alpha)
    sell_flow = ewma_step(features.sell_flow[row], sold, alpha)
    total = buy_flow + sell_flow
    flow = (buy_flow - sell_flow) / total if total > 0.0 else 0.0
    features.buy_flow[row] = buy_flow
    features.sell_flow[row] = sell_flow
    features.values[row, TRADE_FLOW] = flow


@llvm_inline_kernel
def model_linear(weights, bias, features_values, inst):
    """The linear value of ``inst``'s feature row: ``z = bias + w . x`` (what the engine judges
    against ``decision_bounds``)."""
    row = np.uint64(inst)
    z = bias
    for k in range(N_FEATURES):
        z += weights[k] * features_values[row, k]
    return z


@llvm_inline_kernel
def model_score(weights, bias, logistic, features_values, inst):
    """Score of ``inst``'s feature row: ``z = bias + w . x``; ``sigmoid(z) - 0.5`` if logistic."""
    z = model_linear(weights, bias, features_values, inst)
    if logistic:
        # exp overflows to inf for very negative z, giving exactly -0.5: no special case.
        z = 1.0 / (1.0 + np.exp(-z)) - 0.5
    return z


@llvm_inline_kernel
def strategy_decide(score, threshold, last_signal, inst):
    """BUY, SELL or NO_ORDER for ``score``, edge-triggered with hysteresis (see module doc).

    A NaN score compares false everywhere: no order and no change of state.
    """
    return strategy_decide_between(score, threshold, 0.5 * threshold, last_signal, inst)


@llvm_inline_kernel
def strategy_decide_between(value, enter, rearm, last_signal, inst):
    """``strategy_decide`` with its two bounds given: fire beyond ``enter`` (either sign),
    re-arm within ``rearm`` of 0. The engine calls it with the model's linear value and
    ``decision_bounds`` (no sigmoid per message).

    Written as selects, not branches: the score is as random as the market, so branches on it
    were mispredicted often, and each miss stalled the loop until the whole chain (book,
    features, model) of that message had finished instead of overlapping it with the next
    message's. The bench measured 40 ns a message for this step with branches.
    """
    last = last_signal[inst]
    buy = value > enter
    sell = value < -enter
    rearm = abs(value) <= rearm
    # & rather than `and`: `and` short-circuits, which is a branch
    decision = BUY if buy & (last != BUY) else (SELL if sell & (last != SELL) else NO_ORDER)
    last = BUY if buy else (SELL if sell else (NO_ORDER if rearm else last))
    last_signal[inst] = last
    return decision


def decision_bounds(threshold: float, logistic: bool) -> tuple[float, float]:
    """The strategy's (enter, rearm) bounds on the model's linear value ``z``, equivalent to
    ``threshold`` and ``threshold / 2`` on its score.

    A logistic score is ``sigmoid(z) - 0.5``, strictly increasing and odd in ``z``, so
    ``score > t`` exactly when ``z > logit(0.5 + t)``, and likewise for ``-t`` and ``t / 2``: the
    engine compares ``z`` and never computes the sigmoid (an ``exp`` per message, about a tenth of
    the engine's cost). A bound of 0.5 or more can never be crossed: infinite. Only a ``z`` within
    a rounding error of a bound may be decided differently from the score, the same way live
    and in the backtest, which share this.
    """
    if not logistic:
        return float(threshold), 0.5 * float(threshold)

    def logit_above_half(t: float) -> float:
        return math.inf if t >= 0.5 else math.log((0.5 + t) / (0.5 - t))

    return logit_above_half(float(threshold)), logit_above_half(0.5 * float(threshold))


@llvm_inline_kernel
def strategy_order_price(book, inst, side, join):
    """Limit price: to take liquidity, the best ask for a BUY and the best bid for a SELL; to
    ``join`` the queue on the order's own side, the best bid for a BUY and the best ask for a
    SELL (EMPTY if none)."""
    bid = book.best_bid[inst]
    ask = book.best_ask[inst]
    if join:
        return bid if side == BUY else ask
    return ask if side == BUY else bid


@kernel
def inference_throughput_kernel(weights, bias, logistic, values, repeats):
    """Score every row of ``values`` ``repeats`` times; returns the sum (keeps every score live)."""
    total = 0.0
    for _ in range(repeats):
        for inst in range(values.shape[0]):
            total += model_score(weights, bias, logistic, values, inst)
    return total
