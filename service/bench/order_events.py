"""A LOBSTER-like stream of order events for one instrument: what the bench's order book applies.

The wheel ships no market data, so ``trading-service bench`` makes its own, once, before the
timed part: ``order_events(n, seed)`` is the same stream for the same arguments. It is a book of
one instrument over 40 price levels, 20 a side around a fixed mid (bids at ``MID - 1`` ..
``MID - DEPTH``, asks at ``MID + 1`` .. ``MID + DEPTH``, more of them near the touch), with
about ``live`` orders resting at any time:

- adds (about 45%) of a new id, one more than the last; sizes mostly round lots of 100, a
  third odd lots, as in LOBSTER's GOOG files;
- deletes (about 45%) of a resting order picked at random, its whole remaining size;
- executions (about 7%) of the order at the front of the best level of a side, the whole
  order or part of it;
- partial cancels (about 3%) of a resting order picked at random, leaving some of it.

That mix is the one LOBSTER gives for GOOG's day (2012-06-21); the committed 20,000-message
slice of it (tests/data/lobster) has 48% adds, 46% deletes, 3% executions, 3% hidden
executions and almost no partial cancels. The add share leans towards adds while fewer than
``live`` orders rest and away from them above, so the book fills from empty and then hovers
around ``live``.

Every cancel, delete and execution names an order resting at that moment, at its price and
side, for no more than it has, so every event applies cleanly (``order_book.OK``, no anonymous
volume touched) and the stream can be applied again after ``ob_reset``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from contracts.records import (
    ASK,
    BID,
    MARKET_EVENT,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
)

MID = 58_000  # ticks: GOOG near $580 at a cent a tick
DEPTH = 20  # price levels a side
LIVE = 3_000  # resting orders the stream hovers around
FIRST_ID = 10_000_000
START_NS = 34_200 * 10**9  # 9:30, as LOBSTER's times (ns after midnight)
MEAN_GAP_NS = 123_000  # the committed slice's mean time between messages
ADD_SHARE, DELETE_SHARE, EXECUTE_SHARE = 0.45, 0.45, 0.07  # partial cancels the rest, 0.03
WHOLE_EXECUTIONS = 0.5  # executions that take the whole order
ODD_LOTS = 0.35  # sizes below 100


@dataclass(frozen=True)
class OrderEvents:
    """The stream, and the book it leaves behind (applied to an empty one)."""

    events: np.ndarray  # MARKET_EVENT, instrument 0, level_qty filled in
    resting_orders: int  # orders resting after the last event
    resting_qty: int  # their total size
    max_resting: int  # the most orders resting at once


class _Book:
    """The generator's own book: which orders rest, where, in what order, with how much."""

    def __init__(self) -> None:
        self.live: list[int] = []  # resting ids, for a uniform pick
        self.index: dict[int, int] = {}  # id -> its place in ``live``
        self.orders: dict[int, list[int]] = {}  # id -> [side, distance from MID, qty]
        # per side and distance: the ids in time priority (removed ids are skipped lazily),
        # the number resting, and their total size
        self.queues: list[list[deque[int]]] = [
            [deque() for _ in range(DEPTH + 1)] for _ in range(2)
        ]
        self.count = [[0] * (DEPTH + 1) for _ in range(2)]
        self.level_qty = [[0] * (DEPTH + 1) for _ in range(2)]
        self.next_id = FIRST_ID

    def add(self, side: int, distance: int, qty: int) -> int:
        order_id = self.next_id
        self.next_id += 1
        self.index[order_id] = len(self.live)
        self.live.append(order_id)
        self.orders[order_id] = [side, distance, qty]
        self.queues[side][distance].append(order_id)
        self.count[side][distance] += 1
        self.level_qty[side][distance] += qty
        return order_id

    def reduce(self, order_id: int, qty: int) -> None:
        """Take ``qty`` off an order; at zero it no longer rests."""
        order = self.orders[order_id]
        side, distance = order[0], order[1]
        order[2] -= qty
        self.level_qty[side][distance] -= qty
        if order[2] > 0:
            return
        del self.orders[order_id]
        self.count[side][distance] -= 1
        last = self.live.pop()  # swap-remove from ``live``
        if last != order_id:
            at = self.index[order_id]
            self.live[at] = last
            self.index[last] = at
        del self.index[order_id]

    def front_of_best(self, side: int) -> int:
        """The id at the front of the best level of ``side``, or -1 when the side is empty."""
        for distance in range(1, DEPTH + 1):
            if self.count[side][distance]:
                queue = self.queues[side][distance]
                while queue[0] not in self.orders:
                    queue.popleft()
                return queue[0]
        return -1


def _price(side: int, distance: int) -> int:
    return MID - distance if side == BID else MID + distance


def _kind(u: float, resting: int, live: int) -> int:
    """Which event comes next, from a uniform draw ``u``."""
    if resting == 0:
        return ORDER_ADD
    add = min(0.95, max(0.05, ADD_SHARE + 0.5 * (live - resting) / live))
    if u < add:
        return ORDER_ADD
    v = (u - add) / (1.0 - add) * (1.0 - ADD_SHARE)
    if v < DELETE_SHARE:
        return ORDER_DELETE
    if v < DELETE_SHARE + EXECUTE_SHARE:
        return ORDER_EXECUTE
    return ORDER_CANCEL


def _sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    round_lots = 100 * np.minimum(rng.geometric(0.6, n), 10)
    return np.where(rng.random(n) < ODD_LOTS, rng.integers(1, 100, n), round_lots)


def order_events(n: int, seed: int = 1, live: int = LIVE) -> OrderEvents:
    """``n`` order events that apply cleanly to an empty book, ``live`` resting at a time."""
    if n < 1 or live < 1:
        raise ValueError(f"need n >= 1 and live >= 1 (got n={n}, live={live})")
    rng = np.random.default_rng(seed)
    draws = rng.random((n, 3))  # the kind, which order, how much
    sides = rng.integers(0, 2, n)
    distances = np.minimum(rng.geometric(0.15, n), DEPTH)  # more orders near the touch
    sizes = _sizes(rng, n)
    book = _Book()
    fields = np.zeros((n, 6), np.int64)  # kind, order_id, side, price, qty, level_qty
    max_resting = 0
    for i in range(n):
        kind = _kind(draws[i, 0], len(book.live), live)
        if kind == ORDER_ADD:
            side, distance, qty = int(sides[i]), int(distances[i]), int(sizes[i])
            order_id = book.add(side, distance, qty)
            max_resting = max(max_resting, len(book.live))
        else:
            order_id = _pick(book, kind, int(sides[i]), draws[i, 1])
            side, distance, held = book.orders[order_id]
            kind, qty = _reduction(kind, held, draws[i, 2])
            book.reduce(order_id, qty)
        fields[i] = (
            kind,
            order_id,
            side,
            _price(side, distance),
            qty,
            book.level_qty[side][distance],
        )
    events = np.zeros(n, MARKET_EVENT)
    events["seq"] = np.arange(1, n + 1)
    events["time_ns"] = START_NS + np.cumsum(rng.exponential(MEAN_GAP_NS, n)).astype(np.int64)
    for column, name in enumerate(("kind", "order_id", "side", "price", "qty", "level_qty")):
        events[name] = fields[:, column]
    resting_qty = sum(order[2] for order in book.orders.values())
    return OrderEvents(events, len(book.live), resting_qty, max_resting)


def _pick(book: _Book, kind: int, side: int, u: float) -> int:
    """The order an event reduces: the front of the best level on ``side`` (or the other side
    when it is empty) for an execution, any resting order for a delete or cancel."""
    if kind == ORDER_EXECUTE:
        order_id = book.front_of_best(side)
        return order_id if order_id >= 0 else book.front_of_best(ASK if side == BID else BID)
    return book.live[int(u * len(book.live))]


def _reduction(kind: int, held: int, u: float) -> tuple[int, int]:
    """The event's kind and size for an order of ``held``: a delete takes it all, a partial
    cancel leaves some (a delete for a single lot), an execution takes all or part."""
    if kind == ORDER_DELETE or (kind == ORDER_CANCEL and held == 1):
        return ORDER_DELETE, held
    if kind == ORDER_EXECUTE and (held == 1 or u < WHOLE_EXECUTIONS):
        return ORDER_EXECUTE, held
    # part of it: 1 .. held - 1
    part = u if kind == ORDER_CANCEL else (u - WHOLE_EXECUTIONS) / (1.0 - WHOLE_EXECUTIONS)
    return kind, 1 + min(held - 2, int(part * (held - 1)))
