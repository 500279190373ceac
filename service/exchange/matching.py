"""The exchange's matching: orders against the book it has published.

The matcher keeps its own L2 book (``service.kernels.book``, the engine's), built from the
messages the publisher has sent so far: before it matches an order it applies those published
since the last one (``book_follow``; the publisher's count is a release store, read with an
acquire load, so the records it covers are whole, on arm64 too). The book is the order-entry
thread's own, so the publisher never waits for a lock. The same book serves the simulator's
session and a recording's: an order meets what the market showed, not the simulator's state
ahead of it, and a recording is matched as well as a simulated day.

An order takes what rests at the best opposite level when its price reaches it (a buy at or
above the best ask, a sell at or below the best bid), up to its size, at that level's price;
the rest is cancelled (nothing rests). What it took is gone from the matcher's book until the
market's next update of that level says otherwise.
"""

from __future__ import annotations

import numpy as np

from contracts.records import ASK, BID, BUY, LEVEL, SELL, SNAPSHOT_BEGIN
from service.exchange import publisher as P
from service.kernels.book import EMPTY, book_level_qty, book_reset, book_set_level, new_book
from service.kernels.jit import kernel


@kernel
def book_follow(book, records, start, end):
    """Apply published records ``start``..``end``-1 to ``book``; returns ``end``."""
    for k in range(start, end):
        kind = records[k]["kind"]
        inst = np.int64(records[k]["instrument"])
        if kind == LEVEL:
            side, price = np.int64(records[k]["side"]), np.int64(records[k]["price"])
            book_set_level(book, inst, side, price, np.int64(records[k]["qty"]))
        elif kind == SNAPSHOT_BEGIN:
            book_reset(book, inst)
    return end


@kernel
def book_take(book, inst, side, qty, price):
    """An order of ``qty`` at limit ``price`` against the best opposite level: (lots taken,
    their price), (0, 0) when it does not reach; what it took leaves the book."""
    if side == BUY:
        best, opposite = book.best_ask[inst], ASK
        reaches = best != EMPTY and price >= best
    else:
        best, opposite = book.best_bid[inst], BID
        reaches = best != EMPTY and price <= best
    if not reaches:
        return np.int64(0), np.int64(0)
    resting = book_level_qty(book, inst, opposite, best)
    taken = min(qty, resting)
    book_set_level(book, inst, opposite, best, resting - taken)
    return taken, best


class Matcher:
    """``match(instrument, side, qty, price)`` -> (lots filled, price), for the order-entry
    service's thread, against the book of what ``pub`` has published."""

    def __init__(self, pub, instruments: int, window_ticks: int) -> None:
        self.pub = pub
        self.book = new_book(instruments, window_ticks)
        self.applied = 0
        book_follow(self.book, pub.records, 0, 0)  # compiled before the first order
        book_take(self.book, 0, BUY, 0, 0)

    def __call__(self, instrument: int, side: int, qty: int, price: int) -> tuple[int, int]:
        published = int(P.published_count(self.pub))
        self.applied = int(book_follow(self.book, self.pub.records, self.applied, published))
        if side not in (BUY, SELL) or not 0 <= instrument < self.book.best_bid.shape[0]:
            return 0, 0
        taken, at = book_take(self.book, instrument, side, qty, price)
        return int(taken), int(at)
