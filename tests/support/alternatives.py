"""Slow, obviously-correct reference implementations the kernels are cross-checked against.

Plain Python over dicts and floats, written for reading, not for speed: each one follows the
rule as the module docstring of the kernel states it, with no incremental cleverness (the
best bid is recomputed as ``max`` of the prices with size, and so on). Also: a generator of
realistic level-update streams, and ``refcount_ops``, which inspects a kernel's compiled IR.
"""

from __future__ import annotations

import math
import re

import numba
import numpy as np
import pytest

from contracts import features
from contracts.records import ASK, BID, BUY, SELL
from contracts.stats_layout import REJECT_REASONS
from service.kernels.jit import KERNEL_OPTIONS

# The feature names and their order are part of the contract, so the reference shares them.
FEATURE_NAMES = features.FEATURE_NAMES

EMPTY = -1
NO_ORDER = -1


# --------------------------------------------------------------------------------------------
# Book


class ReferenceBook:
    """One instrument's book as ``{price: size}`` per side, with the kernel's window rule.

    The window rule is part of the contract (levels outside the window are not held), so
    the reference models it literally: when a new level falls outside ``[base, base+window)``
    the window moves to ``base = max(price - window // 2, 1)`` and every level outside the
    new window is forgotten.
    """

    def __init__(self, window: int):
        self.window = window
        self.base = 0
        self.levels = {BID: {}, ASK: {}}

    def in_window(self, price: int) -> bool:
        return self.base != 0 and self.base <= price < self.base + self.window

    def set_level(self, side: int, price: int, qty: int) -> None:
        if price <= 0:
            return
        if not self.in_window(price):
            if qty <= 0:
                return
            self.base = max(price - self.window // 2, 1)
            for book_side in self.levels.values():
                for p in list(book_side):
                    if not self.in_window(p):
                        del book_side[p]
        if qty > 0:
            self.levels[side][price] = qty
        else:
            self.levels[side].pop(price, None)

    def reset(self) -> None:
        self.levels = {BID: {}, ASK: {}}

    def qty(self, side: int, price: int) -> int:
        return self.levels[side].get(price, 0)

    @property
    def best_bid(self) -> int:
        return max(self.levels[BID], default=EMPTY)

    @property
    def best_ask(self) -> int:
        return min(self.levels[ASK], default=EMPTY)


# --------------------------------------------------------------------------------------------
# Features


class ReferenceFeatures:
    """The six features of one instrument, recomputed from a ReferenceBook after each change."""

    def __init__(self):
        self.mid = math.nan
        self.ret = 0.0
        self.var = 0.0
        self.buy_flow = 0.0
        self.sell_flow = 0.0
        self.values = dict.fromkeys(FEATURE_NAMES, 0.0)
        self.valid = False

    def on_book(self, book: ReferenceBook, alpha: float) -> bool:
        bid, ask = book.best_bid, book.best_ask
        if bid == EMPTY or ask == EMPTY or bid >= ask:
            self.valid = False
            return False
        bid_qty, ask_qty = book.qty(BID, bid), book.qty(ASK, ask)
        mid = (bid + ask) / 2.0
        change = 0.0 if math.isnan(self.mid) else mid - self.mid
        self.mid = mid
        self.ret = (1.0 - alpha) * self.ret + alpha * change
        self.var = (1.0 - alpha) * self.var + alpha * change * change
        microprice = (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty)
        self.values.update(
            mid_return=self.ret,
            microprice_offset=microprice - mid,
            spread_ticks=float(ask - bid),
            imbalance=(bid_qty - ask_qty) / (bid_qty + ask_qty),
            volatility=math.sqrt(self.var),
        )
        self.valid = True
        return True

    def on_trade(self, aggressor_side: int, qty: int, alpha: float) -> None:
        bought = qty if aggressor_side == BUY else 0
        sold = qty if aggressor_side == SELL else 0
        self.buy_flow = (1.0 - alpha) * self.buy_flow + alpha * bought
        self.sell_flow = (1.0 - alpha) * self.sell_flow + alpha * sold
        total = self.buy_flow + self.sell_flow
        self.values["trade_flow"] = 0.0 if total == 0 else (self.buy_flow - self.sell_flow) / total


def reference_score(weights: dict, bias: float, logistic: bool, values: dict) -> float:
    """Model score from weights and feature values, both keyed by feature name."""
    z = bias + sum(weights.get(name, 0.0) * values[name] for name in FEATURE_NAMES)
    if logistic:
        # math.exp raises on overflow where the kernel's np.exp gives inf (score -0.5).
        return 1.0 / (1.0 + math.exp(-z)) - 0.5 if z > -700 else -0.5
    return z


class ReferenceStrategy:
    """Edge-triggered signal with hysteresis, one instrument."""

    def __init__(self):
        self.last = NO_ORDER

    def decide(self, score: float, threshold: float) -> int:
        if score > threshold:
            if self.last == BUY:
                return NO_ORDER
            self.last = BUY
            return BUY
        if score < -threshold:
            if self.last == SELL:
                return NO_ORDER
            self.last = SELL
            return SELL
        if abs(score) <= threshold / 2:
            self.last = NO_ORDER
        return NO_ORDER


# --------------------------------------------------------------------------------------------
# Risk


class ReferenceRisk:
    """Pre-trade risk with one dict per instrument and the rules checked one by one."""

    REASONS = REJECT_REASONS  # the counters' order is the contract

    def __init__(self, limits):
        self.limits = limits
        self.position = {}
        self.pending = {BUY: {}, SELL: {}}
        self.tokens = float(limits.burst)
        self.last_refill_ns = 0.0

    def check(self, inst, side, price, qty, mid, now_ns, kill_switch_on) -> int:  # noqa: PLR0913 -- the same arguments as risk_check
        """0 when accepted, else 1 + index of the first rule that fails."""
        lim = self.limits
        position = self.position.get(inst, 0)
        pending_buy = self.pending[BUY].get(inst, 0)
        pending_sell = self.pending[SELL].get(inst, 0)
        if side == BUY:
            worst_position = position + pending_buy + qty
        else:
            worst_position = -(position - pending_sell - qty)
        rules = [
            ("kill_switch", lambda: not kill_switch_on),
            ("max_order_qty", lambda: 0 < qty <= lim.max_order_qty),
            ("max_notional", lambda: qty * price * lim.tick_size <= lim.max_notional),
            ("price_band", lambda: price > 0 and abs(price - mid) <= lim.price_band_ticks),
            ("position_limit", lambda: worst_position <= lim.position_limit),
            ("rate_throttle", lambda: self._take_token(now_ns)),
        ]
        for reason, passes in rules:
            if not passes():
                return self.REASONS.index(reason) + 1
        book = self.pending[side]
        book[inst] = book.get(inst, 0) + qty
        return 0

    def _take_token(self, now_ns) -> bool:
        """Refill by elapsed time (capped at burst); True, consuming one, when one is there."""
        elapsed = max(float(now_ns) - self.last_refill_ns, 0.0)
        self.last_refill_ns = max(float(now_ns), self.last_refill_ns)
        refill = elapsed * self.limits.orders_per_second / 1e9
        self.tokens = min(self.tokens + refill, float(self.limits.burst))
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def on_execution(self, inst, side, order_qty, filled_qty) -> None:
        pending = self.pending[side]
        pending[inst] = max(pending.get(inst, 0) - order_qty, 0)
        signed = filled_qty if side == BUY else -filled_qty
        self.position[inst] = self.position.get(inst, 0) + signed


# --------------------------------------------------------------------------------------------
# Test data


def realistic_level_stream(
    rng: np.random.Generator, n_instruments: int, n_messages: int, start_price: int = 10_000
):
    """Level updates that look like a live L2 feed: most activity within a few ticks of the top.

    Each instrument has a centre price doing a slow random walk; an update picks a side and
    a distance from the touch (geometric, mean 1.5 ticks) and sets a size, or removes
    the level 30% of the time. When the centre moves, levels now on the wrong side of it
    are removed first, as an exchange would report. Returns int64 arrays
    ``(insts, sides, prices, qtys)``.
    """
    insts = np.empty(n_messages, dtype=np.int64)
    sides = np.empty(n_messages, dtype=np.int64)
    prices = np.empty(n_messages, dtype=np.int64)
    qtys = np.empty(n_messages, dtype=np.int64)
    centre = [start_price + 97 * i for i in range(n_instruments)]
    resting = [{BID: set(), ASK: set()} for _ in range(n_instruments)]
    pending = []  # removals owed after a centre move, emitted before new updates
    k = 0
    while k < n_messages:
        if pending:
            inst, side, price = pending.pop()
            resting[inst][side].discard(price)
            insts[k], sides[k], prices[k], qtys[k] = inst, side, price, 0
            k += 1
            continue
        inst = int(rng.integers(n_instruments))
        if rng.random() < 0.02:
            centre[inst] += 1 if rng.random() < 0.5 else -1
            c = centre[inst]
            pending.extend((inst, BID, p) for p in resting[inst][BID] if p >= c)
            pending.extend((inst, ASK, p) for p in resting[inst][ASK] if p <= c)
            continue
        side = BID if rng.random() < 0.5 else ASK
        distance = int(rng.geometric(0.4)) - 1
        price = centre[inst] - 1 - distance if side == BID else centre[inst] + 1 + distance
        qty = 0 if rng.random() < 0.3 else int(rng.integers(1, 500))
        (resting[inst][side].add if qty else resting[inst][side].discard)(price)
        insts[k], sides[k], prices[k], qtys[k] = inst, side, price, qty
        k += 1
    return insts, sides, prices, qtys


# --------------------------------------------------------------------------------------------
# Test helpers


needs_default_codegen = pytest.mark.skipif(
    bool(numba.config.BOUNDSCHECK), reason="NUMBA_BOUNDSCHECK adds error exits that keep refcounts"
)


def refcount_ops(dispatcher, signature) -> int:
    """NRT incref/decref calls left in the optimised body of ``dispatcher`` for ``signature``.

    Compiles a private, uncached copy (a cached dispatcher has no IR to inspect) and counts
    the refcount calls in the function itself, not in its Python wrapper. Zero means numba's
    refcount pruning removed every pair: no atomic operations per call.
    """
    fresh = numba.njit(**{**KERNEL_OPTIONS, "cache": False})(dispatcher.py_func)
    fresh.compile(signature)
    ir = fresh.inspect_llvm(signature)
    name = dispatcher.py_func.__name__
    for chunk in ir.split("\ndefine ")[1:]:
        symbol = re.search(r"@([\w.]+)\(", chunk).group(1)
        if symbol.startswith("_ZN") and "cpython" not in symbol and f"{len(name)}{name}B" in symbol:
            body = chunk.split("\n}\n", 1)[0]
            return body.count("@NRT_incref(") + body.count("@NRT_decref(")
    raise AssertionError(f"no LLVM function for {name} in the compiled module")
