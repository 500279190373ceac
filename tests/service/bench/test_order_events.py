"""The bench's generated order events: a stream the order-level book applies cleanly, again
and again, ending with the book the generator says it leaves."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.records import ASK, BID, ORDER_ADD, ORDER_CANCEL, ORDER_DELETE, ORDER_EXECUTE
from service.bench.order_events import DEPTH, MID, order_events
from service.kernels import order_book as ob

N = 20_000


@pytest.fixture(scope="module")
def stream():
    return order_events(N, seed=3, live=1_000)


def resting_orders(book) -> int:
    return book.o_id.shape[0] - int(book.o_free[0])


def test_every_event_applies_cleanly_and_leaves_the_book_the_generator_says(stream):
    events = stream.events
    book = ob.new_order_book(1, 4 * 1_000, 2 * DEPTH)
    # the whole book (DEPTH levels a side) after every event
    rows, row_of = np.zeros((N, 4 * DEPTH), np.int64), np.arange(N, dtype=np.int64)
    assert ob.ob_replay(book, events, 0, DEPTH, rows, row_of) == -1  # every event OK
    assert resting_orders(book) == stream.resting_orders
    ranked = [ob.ob_level_at(book, 0, s, k) for s in (BID, ASK) for k in range(book.n_ranked[0, s])]
    assert sum(int(book.l_qty[lv]) for lv in ranked) == stream.resting_qty
    assert book.counters[ob.C_UNKNOWN_ORDER] == book.counters[ob.C_SHORTFALL] == 0
    # and the size the generator gives for the event's level is the book's
    bid = (events["side"] == BID)[:, None]
    prices = np.where(bid, rows[:, 2::4], rows[:, 0::4])
    sizes = np.where(bid, rows[:, 3::4], rows[:, 1::4])
    at_price = (sizes * (prices == events["price"][:, None])).sum(axis=1)
    assert (at_price == events["level_qty"]).all()


def test_it_replays_the_same_after_a_reset(stream):
    events = stream.events
    book = ob.new_order_book(1, 4 * 1_000, 2 * DEPTH)
    rows, row_of = np.zeros((2, 4), np.int64), np.zeros(len(events), np.int64)
    for n in range(2):
        row_of[-1] = n  # the top of the book after the last event
        assert ob.ob_replay(book, events, 0, 1, rows, row_of) == -1
        assert resting_orders(book) == stream.resting_orders
        ob.ob_reset(book, 0)
    assert rows[0].tolist() == rows[1].tolist()
    assert resting_orders(book) == 0
    assert ob.ob_throughput_kernel(book, events, 3) == 3 * ob.ob_throughput_kernel(book, events, 1)


def test_the_stream_is_lobster_like(stream):
    e = stream.events
    share = {k: float(np.mean(e["kind"] == k)) for k in (ORDER_ADD, ORDER_DELETE)}
    assert 0.4 < share[ORDER_ADD] < 0.55 and 0.38 < share[ORDER_DELETE] < 0.5
    assert 0.04 < np.mean(e["kind"] == ORDER_EXECUTE) < 0.1
    assert 0.01 < np.mean(e["kind"] == ORDER_CANCEL) < 0.05
    adds = e[e["kind"] == ORDER_ADD]
    assert (np.diff(adds["order_id"]) == 1).all()  # ids increasing
    assert (np.diff(e["time_ns"]) >= 0).all() and (e["seq"] == np.arange(1, N + 1)).all()
    bids, asks = e["price"][e["side"] == BID], e["price"][e["side"] == ASK]
    assert bids.max() < MID < asks.min()
    assert np.unique(e["price"]).size == 2 * DEPTH
    assert 500 < stream.max_resting <= 1_100  # bounded, around ``live``


def test_the_same_seed_gives_the_same_stream():
    a, b = order_events(2_000, seed=7), order_events(2_000, seed=7)
    assert a.events.tobytes() == b.events.tobytes() and a.resting_qty == b.resting_qty
    assert order_events(2_000, seed=8).events.tobytes() != a.events.tobytes()
    with pytest.raises(ValueError):
        order_events(0)
