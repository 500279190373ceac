"""Pre-trade risk: every order passes these checks, in this order, before it leaves the engine.

    1 kill_switch     the operator's kill switch is on: nothing goes out
    2 max_order_qty   qty must be in 1 .. max_order_qty (a non-positive qty is never valid)
    3 max_notional    qty * price * tick_size <= max_notional (currency)
    4 price_band      price > 0 and |price - mid| <= price_band_ticks; no mid yet (NaN) fails
    5 position_limit  worst case per instrument if every open order fills:
                      BUY:  position + pending_buy + qty <= position_limit
                      SELL: -(position - pending_sell - qty) <= position_limit
    6 rate_throttle   a global token bucket: refilled at orders_per_second, holding at most
                      burst tokens; an order needs one whole token

The first failing check is the reason (1..6, ``REJECT_*``); 0 (``ACCEPTED``) means the order
may be sent. An accepted order consumes one token and is added to its side's pending
quantity; a rejected one changes neither. Execution reports release the pending quantity of
the order and move the position by what was filled (``risk_on_execution``).

The token bucket is refilled only when an order reaches the throttle check; the refill is
``elapsed_ns * orders_per_second / 1e9`` capped at ``burst``, and capping makes it
path-independent (refilling twice equals refilling once over both intervals), so skipping
refills for orders rejected earlier loses nothing. A clock that steps back refills nothing
and never moves the refill time backwards.

Kernels read state into locals, decide, and write it back once (see
``service.kernels.book.book_set_level`` for why that shape matters to numba). Production scalar
types: ``inst``, ``side``, ``price``, ``qty``, ``now_ns``, ``order_qty``, ``filled_qty``
int64; ``mid_ticks`` float64; ``kill_switch_on`` bool.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from contracts.records import BUY
from contracts.stats_layout import REJECT_REASONS  # one list: the counters are indexed by it
from service.kernels.jit import kernel

ACCEPTED = 0
(
    REJECT_KILL_SWITCH,
    REJECT_MAX_ORDER_QTY,
    REJECT_MAX_NOTIONAL,
    REJECT_PRICE_BAND,
    REJECT_POSITION_LIMIT,
    REJECT_RATE_THROTTLE,
) = range(1, len(REJECT_REASONS) + 1)

# RiskState.tokens
TOKENS = 0  # tokens available (float: the bucket refills continuously)
LAST_REFILL_NS = 1  # monotonic ns of the last refill

RiskLimits = namedtuple(
    "RiskLimits",
    "max_order_qty max_notional price_band_ticks position_limit orders_per_second burst tick_size",
)
RiskLimits.__doc__ = (
    "Pre-trade limits (scalars). Types: max_order_qty, price_band_ticks, position_limit int64; "
    "max_notional, orders_per_second, burst, tick_size float64. Build them with these types "
    "(np.int64 / np.float64): another type compiles another copy of risk_check."
)

RiskState = namedtuple("RiskState", "position pending_buy pending_sell tokens")
RiskState.__doc__ = (
    "Per-instrument position and open quantity per side (int64[n]); the global token bucket "
    "tokens = float64[TOKENS available, LAST_REFILL_NS]."
)


def _check_limits(limits: RiskLimits) -> None:
    """Refuse limits under which the checks cannot mean what they say."""
    problems = []
    if not limits.max_order_qty >= 1:
        problems.append(f"max_order_qty must be >= 1 (got {limits.max_order_qty})")
    if not (limits.max_notional >= 0 and math.isfinite(limits.max_notional)):
        problems.append(f"max_notional must be a number >= 0 (got {limits.max_notional})")
    if not limits.price_band_ticks >= 0:
        problems.append(f"price_band_ticks must be >= 0 (got {limits.price_band_ticks})")
    if not limits.position_limit >= 0:
        problems.append(f"position_limit must be >= 0 (got {limits.position_limit})")
    # 0 is allowed: the bucket then never refills (at most `burst` orders in all).
    if not (limits.orders_per_second >= 0 and math.isfinite(limits.orders_per_second)):
        problems.append(f"orders_per_second must be a number >= 0 (got {limits.orders_per_second})")
    if not (limits.burst >= 1 and math.isfinite(limits.burst)):
        problems.append(f"burst must be >= 1, or no order could pass (got {limits.burst})")
    if not (limits.tick_size > 0 and math.isfinite(limits.tick_size)):
        problems.append(f"tick_size must be a positive number (got {limits.tick_size})")
    if problems:
        raise ValueError("invalid risk limits: " + "; ".join(problems))


def new_risk_state(n_instruments: int, limits: RiskLimits) -> RiskState:
    """Flat positions, nothing pending, a full token bucket; ValueError on unusable limits."""
    n = int(n_instruments)
    if n < 1:
        raise ValueError(f"n_instruments must be >= 1 (got {n_instruments})")
    _check_limits(limits)
    tokens = np.zeros(2, dtype=np.float64)
    # A full bucket; refill time 0 is harmless because refills are capped at burst.
    tokens[TOKENS] = float(limits.burst)
    return RiskState(
        position=np.zeros(n, dtype=np.int64),
        pending_buy=np.zeros(n, dtype=np.int64),
        pending_sell=np.zeros(n, dtype=np.int64),
        tokens=tokens,
    )


@kernel
def risk_check(  # noqa: PLR0913 -- a kernel takes scalars, not objects, on the hot path
    limits, state, inst, side, price, qty, mid_ticks, now_ns, kill_switch_on
):
    """ACCEPTED (0) or the code of the first failing check; books the order when accepted.

    ``side`` is BUY or SELL (anything but BUY counts as SELL).
    """
    row = np.uint64(inst)
    position = state.position[row]
    pending_buy = state.pending_buy[row]
    pending_sell = state.pending_sell[row]
    tokens = state.tokens[TOKENS]
    last_refill = state.tokens[LAST_REFILL_NS]
    if side == BUY:
        worst_position = position + pending_buy + qty
    else:
        worst_position = -(position - pending_sell - qty)

    reason = ACCEPTED
    if kill_switch_on:
        reason = REJECT_KILL_SWITCH
    elif qty <= 0 or qty > limits.max_order_qty:
        reason = REJECT_MAX_ORDER_QTY
    elif qty * price * limits.tick_size > limits.max_notional:
        reason = REJECT_MAX_NOTIONAL
    # Written as "not within" so that a NaN mid (no two-sided book yet) fails the check.
    elif not (price > 0 and abs(price - mid_ticks) <= limits.price_band_ticks):
        reason = REJECT_PRICE_BAND
    elif worst_position > limits.position_limit:
        reason = REJECT_POSITION_LIMIT
    else:
        elapsed = max(now_ns - last_refill, 0.0)
        last_refill = max(float(now_ns), last_refill)
        # Product before division: whole-ns intervals at round rates refill exact tokens.
        tokens = min(tokens + elapsed * limits.orders_per_second / 1e9, limits.burst)
        if tokens < 1.0:
            reason = REJECT_RATE_THROTTLE
        else:
            tokens -= 1.0
            if side == BUY:
                pending_buy += qty
            else:
                pending_sell += qty

    state.pending_buy[row] = pending_buy
    state.pending_sell[row] = pending_sell
    state.tokens[TOKENS] = tokens
    state.tokens[LAST_REFILL_NS] = last_refill
    return reason


@kernel
def risk_on_execution(state, inst, side, order_qty, filled_qty):
    """An order of ``order_qty`` on ``side`` has ended with ``filled_qty`` filled.

    Releases the whole order from pending (IOC orders end with their one report) and moves
    the position by the fill. Pending never goes below 0, so a duplicate report cannot
    loosen the position check.
    """
    row = np.uint64(inst)
    position = state.position[row]
    pending_buy = state.pending_buy[row]
    pending_sell = state.pending_sell[row]
    if side == BUY:
        pending_buy = max(pending_buy - order_qty, 0)
        position += filled_qty
    else:
        pending_sell = max(pending_sell - order_qty, 0)
        position -= filled_qty
    state.position[row] = position
    state.pending_buy[row] = pending_buy
    state.pending_sell[row] = pending_sell
