"""L2 order book: aggregated size per price level, per instrument, as dense arrays.

Each instrument owns a window of ``window_ticks`` consecutive price levels per side::

    bid_qty[inst, k]  size resting at price ``base[inst] + k`` on the bid (0 = no level)
    ask_qty[inst, k]  same on the ask
    best_bid[inst]    highest bid price with size > 0, or EMPTY
    best_ask[inst]    lowest ask price with size > 0, or EMPTY

A level update is one subtraction, one bounds check and one store; the best prices are kept
up to date incrementally (an improving level replaces the best, removing the best scans
toward worse prices, which on a real book stops after a tick or two). No hashing, no
allocation, no branches that depend on book depth in the common case.

The window follows the market. ``base[inst] == 0`` means "not centred yet": the first level
an instrument receives centres the window on that price. A later level outside the window
re-centres it on that level: ``base = max(price - window_ticks // 2, 1)``, so the new level
sits in the middle with room on both sides, and base never drops below 1 because prices are
positive ticks. Levels that still fit after the move are kept, the others are dropped, and
both bests are recomputed. Removing a level that lies outside the window is a no-op (we do
not hold it) and never moves the window. Size the window so that re-centring happens only on
a real price jump (a few times the visible depth in ticks); it costs O(window_ticks).

Production scalar types (the ones the warm-up compiles, so nothing recompiles later):
``inst``, ``side``, ``price`` and ``qty`` are int64. Cast record fields (uint16, uint8,
int32) with ``np.int64`` before calling.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.records import BID
from service.kernels.jit import inline_kernel, kernel

EMPTY = -1  # best_bid / best_ask of a side without levels; any real price (>= 1) beats it
MIN_WINDOW_TICKS = 64

Book = namedtuple("Book", "bid_qty ask_qty base best_bid best_ask")
Book.__doc__ = "Dense L2 book of every instrument: sizes per price level and the best prices."


def new_book(n_instruments: int, window_ticks: int) -> Book:
    """Allocate an empty book for ``n_instruments`` with ``window_ticks`` levels per side."""
    if int(n_instruments) < 1:
        raise ValueError(f"n_instruments must be >= 1 (got {n_instruments})")
    window = int(window_ticks)
    if window < MIN_WINDOW_TICKS or window & (window - 1):
        raise ValueError(
            f"window_ticks must be a power of two >= {MIN_WINDOW_TICKS} (got {window_ticks})"
        )
    n = int(n_instruments)
    return Book(
        bid_qty=np.zeros((n, window), dtype=np.int64),
        ask_qty=np.zeros((n, window), dtype=np.int64),
        base=np.zeros(n, dtype=np.int64),
        best_bid=np.full(n, EMPTY, dtype=np.int64),
        best_ask=np.full(n, EMPTY, dtype=np.int64),
    )


@kernel
def book_reset(book, inst):
    """Clear every level of ``inst`` (snapshot start); the window position is kept."""
    for k in range(book.bid_qty.shape[1]):
        book.bid_qty[inst, k] = 0
        book.ask_qty[inst, k] = 0
    book.best_bid[inst] = EMPTY
    book.best_ask[inst] = EMPTY


@inline_kernel
def book_set_level(book, inst, side, price, qty):  # noqa: C901 -- one exit block (docstring)
    """Set the size at ``price`` on ``side`` (BID/ASK) to ``qty``; ``qty <= 0`` removes it.

    Prices must be positive ticks; a non-positive price is ignored rather than allowed to
    corrupt the index arithmetic.

    The shape of this function is part of its speed. numba increfs the five arrays of
    ``book`` on entry and decrefs them on exit, and relies on an LLVM pass to prune those
    pairs; left in, the ten atomic operations cost more than the update itself (8M instead
    of 37M updates/s here). The pass succeeds only when every path reaches one exit block that
    still uses ``book``, when nothing is called out of line (a call's error path is an exit
    without decref) and when no refcounted temporary sits in a conditional block that LLVM
    may merge with another. Hence: per-instrument state is read into locals at the top and
    written back once at the bottom, and the rare path is an inline loop, not a helper.
    Indices are unsigned so that numba emits no negative-index wraparound.
    tests/service/kernels/test_book.py
    checks the compiled IR for leftover refcount operations.
    """
    size = max(qty, 0)
    row = np.uint64(inst)
    window = book.bid_qty.shape[1]
    base = book.base[row]
    best_bid = book.best_bid[row]
    best_ask = book.best_ask[row]
    idx = price - base
    outside = base == 0 or idx < 0 or idx >= window
    # Removing a level outside the window is a no-op: we never held it, and moving the
    # window for it would drop levels we do hold.
    if price > 0 and (size > 0 or not outside):
        if outside:
            # Rare path, O(window): centre the window on ``price``. One pass rebuilds both
            # rows: slot k takes the level of old slot k + shift, or 0 when that slot is
            # outside the old window, and the bests are noted on the way. Slots are visited
            # in the order that reads every source before it is overwritten. A window never
            # centred holds no levels, so it is rebuilt in place (shift 0).
            new_base = max(price - window // 2, 1)
            shift = new_base - base if base != 0 else 0
            step = 1 if shift >= 0 else -1
            k = 0 if shift >= 0 else window - 1
            top_bid = -1  # highest slot with a bid, lowest slot with an ask
            low_ask = window
            for _ in range(window):
                src = min(max(k + shift, 0), window - 1)
                kept = src == k + shift
                bid = book.bid_qty[row, np.uint64(src)] * kept
                ask = book.ask_qty[row, np.uint64(src)] * kept
                book.bid_qty[row, np.uint64(k)] = bid
                book.ask_qty[row, np.uint64(k)] = ask
                if bid > 0:
                    top_bid = max(top_bid, k)
                if ask > 0:
                    low_ask = min(low_ask, k)
                k += step
            best_bid = new_base + top_bid if top_bid >= 0 else EMPTY
            best_ask = new_base + low_ask if low_ask < window else EMPTY
            base = new_base
            idx = price - base

        if side == BID:
            book.bid_qty[row, np.uint64(idx)] = size
            if size > 0:
                best_bid = max(best_bid, price)  # EMPTY (-1) is below every price
            elif price == best_bid:
                # The best is gone: the next one is the nearest lower level with size.
                k = idx - 1
                while k >= 0 and book.bid_qty[row, np.uint64(k)] == 0:
                    k -= 1
                best_bid = base + k if k >= 0 else EMPTY
        else:
            book.ask_qty[row, np.uint64(idx)] = size
            if size > 0:
                if best_ask == EMPTY or price < best_ask:
                    best_ask = price
            elif price == best_ask:
                k = idx + 1
                while k < window and book.ask_qty[row, np.uint64(k)] == 0:
                    k += 1
                best_ask = base + k if k < window else EMPTY

    book.base[row] = base
    book.best_bid[row] = best_bid
    book.best_ask[row] = best_ask


@kernel
def book_level_qty(book, inst, side, price):
    """Size resting at ``price`` on ``side``; 0 when there is none or it is outside the window."""
    window = book.bid_qty.shape[1]
    base = book.base[inst]
    idx = price - base
    inside = base != 0 and idx >= 0 and idx < window
    # Straight-line reads of a clamped slot, masked afterwards: no array access in a
    # conditional block, which keeps numba's refcount pruning effective (see book_set_level).
    slot = np.uint64(min(max(idx, 0), window - 1))
    bid = book.bid_qty[np.uint64(inst), slot]
    ask = book.ask_qty[np.uint64(inst), slot]
    return (bid if side == BID else ask) * inside


@kernel
def book_throughput_kernel(book, insts, sides, prices, qtys, repeats):
    """Apply the update stream ``repeats`` times; returns a checksum of the best prices.

    The checksum depends on every update, so the compiler cannot drop any of them; the
    benchmark divides ``repeats * len(prices)`` by the wall time of this call.
    """
    checksum = np.int64(0)
    for _ in range(repeats):
        for k in range(prices.shape[0]):
            inst = insts[k]
            book_set_level(book, inst, sides[k], prices[k], qtys[k])
            checksum += book.best_bid[inst] ^ book.best_ask[inst]
    return checksum
