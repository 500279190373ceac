"""The exchange's matcher against the book it has published: an order meets only what the
market has been shown, takes what rests at the best opposite level, leaves the rest, and what
it took is gone until the market updates that level; a snapshot clears an instrument."""

from __future__ import annotations

import numpy as np

from contracts.records import ASK, BID, BUY, LEVEL, MARKET_DATA, SELL, SNAPSHOT_BEGIN
from service.config import Config
from service.exchange import publisher as P
from service.exchange.matching import Matcher
from service.kernels.market_packets import session_bytes

MESSAGES = [
    (LEVEL, 0, ASK, 101, 5),
    (LEVEL, 0, BID, 99, 3),
    (LEVEL, 0, ASK, 101, 7),  # the market's next word on that level
    (SNAPSHOT_BEGIN, 0, BID, 0, 0),
]


def recording() -> np.ndarray:
    records = np.zeros(len(MESSAGES), MARKET_DATA)
    for k, (kind, inst, side, price, qty) in enumerate(MESSAGES):
        records[k]["kind"], records[k]["instrument"], records[k]["side"] = kind, inst, side
        records[k]["price"], records[k]["qty"] = price, qty
    return records


def publish(pub, count: int) -> None:
    pub.ivars[P.P_PUBLISHED] = count  # as the publisher's release store leaves it


def test_orders_meet_the_published_book_and_take_what_rests():
    config = Config()
    pub = P.new_publisher(
        config.feed, -1, session_bytes("TEST"), len(MESSAGES), 0, replay=recording()
    )
    match = Matcher(pub, 2, config.engine.book_window_ticks)
    assert match(0, BUY, 2, 200) == (0, 0)  # nothing published yet: nothing to meet
    publish(pub, 2)
    assert match(0, BUY, 2, 100) == (0, 0)  # below the best ask
    assert match(0, BUY, 2, 101) == (2, 101)
    assert match(0, BUY, 10, 105) == (3, 101)  # what the first took is gone
    assert match(0, BUY, 1, 105) == (0, 0)  # the ask side is empty now
    assert match(0, SELL, 4, 99) == (3, 99)
    assert match(0, SELL, 1, 100) == (0, 0)  # above the best bid (none left anyway)
    publish(pub, 3)
    assert match(0, BUY, 1, 101) == (1, 101)  # the market restored the level
    publish(pub, 4)
    assert match(0, BUY, 1, 200) == match(0, SELL, 1, 1) == (0, 0)  # a snapshot began
    assert match(1, BUY, 1, 200) == (0, 0)  # an instrument with no book
    assert match(7, BUY, 1, 200) == match(0, 9, 1, 200) == (0, 0)  # none such: no fill
