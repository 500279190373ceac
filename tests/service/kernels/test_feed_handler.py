"""The feed handler's sequencing: in order, duplicates, gaps recovered or given up, a full hold
pool, a full ring; and a property: whatever the network does to the packets (reorder,
duplicate, drop), with every gap it asks for recovered, the ring gets the stream exactly once,
in order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.records import LEVEL, MARKET_DATA
from contracts.wire import MAX_DATAGRAM
from service.kernels import feed_handler as fh
from service.kernels import market_packets as mp
from tests.support.local_ring import drain as drain_records
from tests.support.local_ring import local_ring

SESSION = mp.session_bytes("LOWLAT0001")
PER_PACKET = 10
TIMEOUT_NS = 1_000_000


def stream(n: int) -> np.ndarray:
    recs = np.zeros(n, MARKET_DATA)
    recs["kind"] = LEVEL
    recs["price"] = 1000 + np.arange(n)
    recs["qty"] = 5
    recs["send_ns"] = np.arange(n) * 100
    return recs


def packet(recs: np.ndarray, first_seq: int, count: int = PER_PACKET) -> np.ndarray:
    """The packet that carries messages first_seq .. first_seq + count - 1 of ``recs``."""
    buf = np.zeros(MAX_DATAGRAM, np.uint8)
    n = mp.packet_build(buf, SESSION, first_seq, recs, first_seq - 1, count)
    return buf[:n].copy()


def ring(capacity: int = 1024):
    return local_ring(capacity)


def drain(md) -> list[int]:
    return drain_records(md)["seq"].tolist()


def feed(h, md, buf, source=fh.LIVE, now=0) -> int:
    return fh.handler_on_datagram(h, buf, len(buf), md, source, now)


def counters(h) -> dict[str, int]:
    names = [n for n in dir(fh) if n.startswith("C_")]
    return {n[2:].lower(): int(h.counters[getattr(fh, n)]) for n in names}


def test_packets_in_order_reach_the_ring_in_order():
    recs, h, md = stream(50), fh.new_feed_handler(SESSION, 1, 4), ring()
    for first in range(1, 51, PER_PACKET):
        assert feed(h, md, packet(recs, first)) == PER_PACKET
    got = drain(md)
    assert got == list(range(1, 51))
    assert (md.data[:50]["price"] == recs["price"]).all()
    c = counters(h)
    assert (c["packets"], c["messages"], c["gaps"], c["duplicates"]) == (5, 50, 0, 0)


def test_duplicates_and_overlaps_deliver_only_what_is_new():
    recs, h, md = stream(40), fh.new_feed_handler(SESSION, 1, 4), ring()
    feed(h, md, packet(recs, 1))
    assert feed(h, md, packet(recs, 1)) == 0  # the same packet again (an A/B line)
    assert feed(h, md, packet(recs, 6)) == 5  # 6..15: 6..10 seen, 11..15 new
    assert drain(md) == list(range(1, 16))
    assert counters(h)["duplicates"] == 15


def test_a_gap_is_asked_for_and_its_recovery_releases_what_was_held():
    recs, h, md = stream(40), fh.new_feed_handler(SESSION, 1, 4), ring()
    feed(h, md, packet(recs, 1))
    assert feed(h, md, packet(recs, 21), now=5) == 0  # 11..20 lost: held
    assert feed(h, md, packet(recs, 31), now=6) == 0
    assert fh.handler_missing(h) == (11, 10)
    assert drain(md) == list(range(1, 11))
    assert feed(h, md, packet(recs, 11), source=fh.RECOVERY, now=7) == 30
    assert drain(md) == list(range(11, 41))
    assert fh.handler_missing(h) == (41, 0)
    c = counters(h)
    assert (c["gaps"], c["recovered"], c["lost"], c["messages"]) == (1, 10, 0, 40)
    assert h.ivars[fh.I_HELD] == 0


def test_a_gap_not_recovered_in_time_is_given_up_and_the_jump_delivered():
    recs, h, md = stream(30), fh.new_feed_handler(SESSION, 1, 4), ring()
    feed(h, md, packet(recs, 1), now=0)
    feed(h, md, packet(recs, 21), now=100)
    assert fh.handler_expire(h, md, 100 + TIMEOUT_NS, TIMEOUT_NS) == 0  # not yet
    assert fh.handler_expire(h, md, 101 + TIMEOUT_NS, TIMEOUT_NS) == 10
    assert drain(md) == list(range(1, 11)) + list(range(21, 31))
    assert counters(h)["lost"] == 10 and fh.handler_missing(h) == (31, 0)
    assert feed(h, md, packet(recs, 11), source=fh.RECOVERY) == 0  # too late: a duplicate


def test_recovery_that_overlaps_what_the_feed_sent_is_not_a_duplicate():
    recs, h, md = stream(40), fh.new_feed_handler(SESSION, 1, 4), ring()
    feed(h, md, packet(recs, 1, 5))
    feed(h, md, packet(recs, 11, 5))  # 6..10 lost: held
    # recovery answers with its own packet cut, 1..20, overlapping both live ones
    assert feed(h, md, packet(recs, 1, 20), source=fh.RECOVERY) == 15
    feed(h, md, packet(recs, 16, 5))  # then the live feed goes on: 16..20 recovered already
    feed(h, md, packet(recs, 16, 5))  # and sends 16..20 once more: that is a duplicate
    assert drain(md) == list(range(1, 21))
    c = counters(h)
    assert (c["duplicates"], c["recovered"], c["messages"]) == (5, 15, 20)


def test_each_gap_behind_a_recovered_one_gets_its_own_time():
    recs, h, md = stream(40), fh.new_feed_handler(SESSION, 1, 8), ring()
    feed(h, md, packet(recs, 1), now=0)
    feed(h, md, packet(recs, 21), now=10)  # 11..20 missing from t=10
    feed(h, md, packet(recs, 31), now=TIMEOUT_NS)  # ...and 31..40 arrives: held
    feed(h, md, packet(recs, 11), source=fh.RECOVERY, now=TIMEOUT_NS)  # the first gap filled
    assert fh.handler_missing(h) == (41, 0) and counters(h)["gaps"] == 1
    # two gaps one after the other: the second is timed from when the first was filled
    h2, md2 = fh.new_feed_handler(SESSION, 1, 8), ring()
    feed(h2, md2, packet(recs, 1, 5), now=0)
    feed(h2, md2, packet(recs, 11, 5), now=10)  # 6..10 missing from t=10
    feed(h2, md2, packet(recs, 21, 5), now=20)  # 16..20 missing behind it
    later = 10 + TIMEOUT_NS // 2
    feed(h2, md2, packet(recs, 6, 5), source=fh.RECOVERY, now=later)
    assert fh.handler_missing(h2) == (16, 5) and counters(h2)["gaps"] == 2
    # the first gap's time would have run out here; the second's has not
    assert fh.handler_expire(h2, md2, 11 + TIMEOUT_NS, TIMEOUT_NS) == 0
    assert fh.handler_expire(h2, md2, later + TIMEOUT_NS + 1, TIMEOUT_NS) == 5
    assert counters(h2)["lost"] == 5


def test_a_full_hold_pool_gives_the_gap_up_rather_than_block():
    recs, h, md = stream(60), fh.new_feed_handler(SESSION, 1, 2), ring()
    feed(h, md, packet(recs, 1))
    for first in (21, 31):
        feed(h, md, packet(recs, first))
    assert feed(h, md, packet(recs, 41)) == 30  # no room to hold 41: give up 11..20
    assert drain(md) == list(range(1, 11)) + list(range(21, 51))
    assert counters(h)["lost"] == 10


def test_a_heartbeat_beyond_what_arrived_reveals_a_gap():
    recs, h, md = stream(20), fh.new_feed_handler(SESSION, 1, 2), ring()
    feed(h, md, packet(recs, 1))
    assert feed(h, md, packet(recs, 15, count=0)) == 0
    assert fh.handler_missing(h) == (11, 4)
    assert counters(h)["heartbeats"] == 1


def test_a_full_ring_holds_packets_and_delivers_them_in_order_later():
    recs, h, md = stream(40), fh.new_feed_handler(SESSION, 1, 8), ring(capacity=16)
    assert feed(h, md, packet(recs, 1)) == 10
    assert feed(h, md, packet(recs, 11)) == 0  # 6 slots free, 10 needed: held
    assert feed(h, md, packet(recs, 21)) == 0  # behind a held one: held too, in order
    assert drain(md) == list(range(1, 11))
    assert fh.handler_release(h, md) == 10  # room for one packet at a time
    assert drain(md) == list(range(11, 21))
    assert fh.handler_release(h, md) == 10
    assert drain(md) == list(range(21, 31))
    assert counters(h)["lost"] == 0 and fh.handler_missing(h) == (31, 0)


def test_a_handler_that_expects_the_start_asks_for_it_and_one_that_joins_does_not():
    recs, md = stream(30), ring()
    from_start = fh.new_feed_handler(SESSION, 1, 2, first_seq=1)
    feed(from_start, md, packet(recs, 21))
    assert fh.handler_missing(from_start) == (1, 20)
    joining = fh.new_feed_handler(SESSION, 1, 2)
    assert feed(joining, md, packet(recs, 21)) == 10
    assert fh.handler_missing(joining) == (31, 0)


def test_malformed_and_foreign_packets_are_counted_and_change_nothing():
    recs, h, md = stream(20), fh.new_feed_handler(SESSION, 1, 2), ring()
    feed(h, md, packet(recs, 1))
    bad = packet(recs, 11)
    assert feed(h, md, bad[:-3]) == 0
    other = bad.copy()
    other[0] ^= 1
    assert feed(h, md, other) == 0
    assert fh.handler_missing(h) == (11, 0)
    c = counters(h)
    assert (c["malformed"], c["wrong_session"], c["messages"]) == (1, 1, 10)


@settings(max_examples=150, deadline=None)
@given(
    order=st.permutations(list(range(12))),
    dropped=st.sets(st.integers(0, 11), max_size=6),
    doubled=st.sets(st.integers(0, 11), max_size=4),
)
def test_any_reordering_loss_and_duplication_recovered_gives_the_stream_once_in_order(
    order, dropped, doubled
):
    recs, h, md = stream(120), fh.new_feed_handler(SESSION, 1, 16, first_seq=1), ring()
    arrivals = [k for k in order if k not in dropped] + sorted(doubled)
    for k in arrivals:
        feed(h, md, packet(recs, 1 + k * PER_PACKET))
        first, count = fh.handler_missing(h)
        while count:  # the recovery service answers with the packets that carry the range
            k_first = (first - 1) // PER_PACKET
            feed(h, md, packet(recs, 1 + k_first * PER_PACKET), source=fh.RECOVERY)
            first, count = fh.handler_missing(h)
    tail_first, _ = fh.handler_missing(h)
    while tail_first <= 120:  # the packets dropped at the end: no later packet revealed them
        feed(h, md, packet(recs, tail_first), source=fh.RECOVERY)
        tail_first, _ = fh.handler_missing(h)
    assert drain(md) == list(range(1, 121))
    assert counters(h)["lost"] == 0
