"""The order-level book kernel against a plain-Python model of the same book."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.records import (
    ASK,
    BID,
    LEVEL,
    MARKET_EVENT,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
)
from service.kernels import order_book as ob


def event(kind, side, order_id, price, qty):
    e = np.zeros(1, MARKET_EVENT)
    e["kind"], e["side"], e["order_id"], e["price"], e["qty"] = kind, side, order_id, price, qty
    return e


def apply(book, kind, side, order_id, price, qty):
    return ob.ob_apply(book, event(kind, side, order_id, price, qty), 0)


def top(book, levels=3):
    row = np.zeros(4 * levels, np.int64)
    ob.ob_top(book, 0, levels, row)
    return row.tolist()


def queue(book, side, price):
    """Order ids resting at a level, front first, by walking the kernel's own links."""
    lv = ob._get_level(book, 0, side, price, False)
    ids, o = [], book.l_head[lv]
    while o != ob.NONE:
        ids.append(int(book.o_id[o]))
        o = book.o_next[o]
    return ids


def test_levels_rank_best_first_and_queues_keep_time_priority():
    book = ob.new_order_book(1, 100, 16)
    for oid, side, price, qty in [
        (1, BID, 100, 5),
        (2, BID, 101, 7),
        (3, ASK, 103, 4),
        (4, BID, 100, 2),
        (5, ASK, 102, 1),
        (6, BID, 100, 3),
    ]:
        assert apply(book, ORDER_ADD, side, oid, price, qty) == ob.OK
    assert top(book) == [102, 1, 101, 7, 103, 4, 100, 10, -1, 0, -1, 0]
    assert queue(book, BID, 100) == [1, 4, 6]
    apply(book, ORDER_CANCEL, BID, 4, 100, 1)  # partial: keeps its place
    assert queue(book, BID, 100) == [1, 4, 6]
    apply(book, ORDER_EXECUTE, BID, 1, 100, 5)  # whole: leaves the queue
    apply(book, ORDER_DELETE, BID, 2, 101, 7)  # the best bid goes
    assert queue(book, BID, 100) == [4, 6]
    assert top(book)[:4] == [102, 1, 100, 4]


def test_an_unknown_id_comes_off_the_anonymous_volume_and_is_counted():
    book = ob.new_order_book(1, 10, 8)
    apply(book, LEVEL, ASK, 0, 200, 50)  # a level known only by its size
    apply(book, ORDER_ADD, ASK, 9, 200, 5)
    assert apply(book, ORDER_EXECUTE, ASK, 12345, 200, 20) == ob.OK
    assert ob.ob_level_qty(book, 0, ASK, 200) == 35
    assert book.counters[ob.C_UNKNOWN_ORDER] == 1
    assert apply(book, ORDER_DELETE, ASK, 777, 300, 10) == ob.OK  # no such level at all
    assert book.counters[ob.C_SHORTFALL] == 1


def test_full_pools_and_duplicate_ids_are_refused_and_leave_the_book_as_it_was():
    book = ob.new_order_book(1, 2, 2)
    assert apply(book, ORDER_ADD, BID, 1, 100, 1) == ob.OK
    assert apply(book, ORDER_ADD, BID, 1, 100, 1) == ob.E_DUPLICATE_ID
    assert apply(book, ORDER_ADD, BID, 2, 99, 1) == ob.OK
    assert apply(book, ORDER_ADD, BID, 3, 98, 1) == ob.E_ORDER_POOL_FULL
    apply(book, ORDER_DELETE, BID, 2, 99, 1)
    assert apply(book, ORDER_ADD, BID, 3, 98, 1) == ob.OK
    assert apply(book, ORDER_ADD, BID, 4, 97, 1) == ob.E_ORDER_POOL_FULL
    book = ob.new_order_book(1, 10, 2)
    apply(book, ORDER_ADD, ASK, 1, 100, 1)
    apply(book, ORDER_ADD, ASK, 2, 101, 1)
    assert apply(book, ORDER_ADD, ASK, 3, 102, 1) == ob.E_LEVEL_POOL_FULL
    assert top(book, 3)[0::4] == [100, 101, -1]
    with pytest.raises(ValueError, match="max_orders must be an integer >= 1"):
        ob.new_order_book(1, 0, 8)


@pytest.mark.parametrize("width", [10, 60])
def test_a_long_random_stream_agrees_with_a_python_model(width):
    """Thousands of adds, partial cancels, executions and deletes over few prices (so
    levels empty and refill and the id hash wraps and shifts back) against dicts; over 60
    prices a side, levels come and go beyond the 16 that the ranking scans from the best
    before it bisects."""
    rng = np.random.default_rng(7)
    book = ob.new_order_book(1, 512, 2 * width)
    resting: dict[int, list[int]] = {}  # id -> [side, price, qty]
    next_id = 1
    for _ in range(20_000):
        if not resting or (len(resting) < 400 and rng.random() < 0.5):
            side = int(rng.integers(2))
            price = int(
                rng.integers(100 - width, 100) if side == BID else rng.integers(100, 100 + width)
            )
            qty = int(rng.integers(1, 50))
            assert apply(book, ORDER_ADD, side, next_id, price, qty) == ob.OK
            resting[next_id] = [side, price, qty]
            next_id += int(rng.integers(1, 1000))  # sparse ids, like an exchange's
        else:
            oid = int(rng.choice(list(resting)))
            side, price, qty = resting[oid]
            kind = int(rng.choice([ORDER_CANCEL, ORDER_EXECUTE, ORDER_DELETE]))
            take = qty if kind == ORDER_DELETE else int(rng.integers(1, qty + 1))
            assert apply(book, kind, side, oid, price, take) == ob.OK
            resting[oid][2] -= take
            if resting[oid][2] == 0:
                del resting[oid]
    for side in (BID, ASK):
        sizes: dict[int, int] = {}
        for s, price, qty in resting.values():
            if s == side:
                sizes[price] = sizes.get(price, 0) + qty
        ranked = sorted(sizes, reverse=side == BID)
        got = top(book, width)[(0 if side == ASK else 2) :: 4]
        assert got[: len(ranked)] == ranked
        for price in ranked:
            assert ob.ob_level_qty(book, 0, side, price) == sizes[price]
    assert book.o_free[0] == 512 - len(resting)  # every freed slot came back
    assert book.counters[ob.C_UNKNOWN_ORDER] == 0
