"""Tests for the market-data simulator: determinism, a self-consistent stream, the schedule.

The stream is checked against ``ReferenceBook``, a plain-Python L2 book (dicts of price to size)
that applies the messages the way a consumer would and asserts every promise of
``service.kernels.feed`` on the way: never crossed, trades at the best with a size the level holds
and followed by its reduction, snapshots listing exactly the levels already held.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba.core.registry import CPUDispatcher
from numba.core.runtime import _nrt_python, rtsys

from contracts.records import (
    ASK,
    BID,
    BUY,
    LEVEL,
    MARKET_DATA,
    SELL,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    TRADE,
)
from service.config import FeedConfig
from service.kernels import feed
from service.kernels.feed import (
    Simulator,
    new_simulator,
    normal_interval_stretch,
    sim_fill,
    sim_next,
    sim_next_interval_ns,
    sim_throughput_kernel,
)
from service.kernels.jit import kernel
from tests.support.warmups import warm_feed

BUSY = FeedConfig(
    instruments=8,
    seed=42,
    depth_levels=10,
    max_spread_ticks=4,
    mean_queue_lots=20,
    trade_probability=0.2,
    move_probability=0.1,
    snapshot_interval=5_000,
)


def generate(params: FeedConfig, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=MARKET_DATA)
    sim_fill(new_simulator(params), out, n)
    return out


def generate_to_event_boundary(params: FeedConfig, n: int) -> tuple[Simulator, np.ndarray]:
    """At least n messages, ending where the last event is complete (books comparable)."""
    sim = new_simulator(params)
    out = np.zeros(n + 4 * params.depth_levels + 2, dtype=MARKET_DATA)
    sim_fill(sim, out, n)
    while sim.state[feed._PENDING_HEAD] != sim.state[feed._PENDING_COUNT]:  # event incomplete
        sim_next(sim, out, n)
        n += 1
    return sim, out[:n]


class ReferenceBook:
    """A consumer's L2 books, built from the stream alone, asserting the stream's promises."""

    def __init__(self, n_instruments: int) -> None:
        self.n = n_instruments
        self.bids: list[dict[int, int]] = [{} for _ in range(n_instruments)]
        self.asks: list[dict[int, int]] = [{} for _ in range(n_instruments)]
        self.ready = [False] * n_instruments  # its first snapshot has been received
        self.kinds: Counter[int] = Counter()
        self.instruments: Counter[int] = Counter()
        self.snapshots_checked = 0
        self.trades_removing_level = 0
        self._snapshot: tuple[int, dict[int, int], dict[int, int]] | None = None
        self._expected_after_trade: tuple[int, int, int, int] | None = None

    def apply_all(self, records: np.ndarray) -> ReferenceBook:
        for index, (_seq, _ns, price, qty, instrument, kind, side) in enumerate(records.tolist()):
            try:
                self.apply(price, qty, instrument, kind, side)
            except AssertionError as exc:
                raise AssertionError(f"message {index}: {exc}") from None
        return self

    def apply(self, price: int, qty: int, k: int, kind: int, side: int) -> None:
        assert 0 <= k < self.n, f"instrument {k}"
        self.kinds[kind] += 1
        self.instruments[k] += 1
        if self._expected_after_trade is not None:
            expected = self._expected_after_trade
            self._expected_after_trade = None
            assert kind == LEVEL and (k, side, price, qty) == expected, (
                f"after a trade expected LEVEL {expected}, got kind {kind} {(k, side, price, qty)}"
            )
        if kind == SNAPSHOT_BEGIN:
            assert self._snapshot is None, "snapshot inside a snapshot"
            self._snapshot = (k, dict(self.bids[k]), dict(self.asks[k]))
            self.bids[k].clear()
            self.asks[k].clear()
        elif kind == SNAPSHOT_END:
            assert self._snapshot is not None and self._snapshot[0] == k, "unmatched END"
            _, bids_before, asks_before = self._snapshot
            self._snapshot = None
            if self.ready[k]:
                assert self.bids[k] == bids_before and self.asks[k] == asks_before, (
                    f"snapshot of {k} differs from the book held"
                )
                self.snapshots_checked += 1
            self.ready[k] = True
            self._assert_not_crossed(k)
        elif kind == LEVEL:
            assert price > 0, f"price {price}"
            assert side in (BID, ASK), f"side {side}"
            levels = self.bids[k] if side == BID else self.asks[k]
            if self._snapshot is not None:
                assert self._snapshot[0] == k, "another instrument inside a snapshot"
                assert qty > 0 and price not in levels, "snapshot levels are distinct, non-empty"
                levels[price] = qty
            else:
                assert self.ready[k], f"update for {k} before its first snapshot"
                if qty == 0:
                    assert price in levels, f"removes a level {price} that is not there"
                    del levels[price]
                else:
                    assert qty > 0
                    levels[price] = qty
                self._assert_not_crossed(k)
        elif kind == TRADE:
            assert self._snapshot is None and self.ready[k]
            assert side in (BUY, SELL), f"aggressor {side}"
            # A BUY lifts the best ask, a SELL hits the best bid.
            levels, rested = (self.asks[k], ASK) if side == BUY else (self.bids[k], BID)
            assert levels, "trade against an empty side"
            best = min(levels) if side == BUY else max(levels)
            assert price == best, f"trade at {price}, best is {best}"
            assert 0 < qty <= levels[price], f"trade qty {qty}, level holds {levels[price]}"
            remaining = levels[price] - qty
            self.trades_removing_level += remaining == 0
            self._expected_after_trade = (k, rested, price, remaining)
        else:
            raise AssertionError(f"unknown kind {kind}")

    def _assert_not_crossed(self, k: int) -> None:
        if self.bids[k] and self.asks[k]:
            assert max(self.bids[k]) < min(self.asks[k]), (
                f"instrument {k} crossed: bid {max(self.bids[k])} ask {min(self.asks[k])}"
            )


def simulator_book(sim: Simulator, k: int) -> tuple[dict[int, int], dict[int, int]]:
    bid = int(sim.best_bid[k])
    ask = bid + int(sim.spread[k])
    bids = {bid - j: int(q) for j, q in enumerate(sim.bid_size[k]) if q > 0}
    asks = {ask + j: int(q) for j, q in enumerate(sim.ask_size[k]) if q > 0}
    return bids, asks


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_the_same_stream():
    a = generate(BUSY, 20_000)
    b = generate(BUSY, 20_000)
    assert np.array_equal(a, b)


def test_different_seed_gives_a_different_stream():
    a = generate(BUSY, 20_000)
    b = generate(dataclasses.replace(BUSY, seed=43), 20_000)
    assert not np.array_equal(a, b)


def test_stream_does_not_depend_on_how_it_is_chunked():
    sim = new_simulator(BUSY)
    out = np.zeros(10_000, dtype=MARKET_DATA)
    for start in range(0, 10_000, 777):
        chunk = out[start : start + 777]
        sim_fill(sim, chunk, len(chunk))
    assert np.array_equal(out, generate(BUSY, 10_000))


def test_seq_and_send_ns_are_left_to_the_feed_stage():
    out = np.zeros(1000, dtype=MARKET_DATA)
    out["seq"] = 7
    out["send_ns"] = 9
    sim_fill(new_simulator(BUSY), out, 1000)
    assert (out["seq"] == 7).all() and (out["send_ns"] == 9).all()


def test_throughput_kernel_is_deterministic_and_generates_the_stream():
    out_a = np.zeros(4096, dtype=MARKET_DATA)
    out_b = np.zeros(4096, dtype=MARKET_DATA)
    checksum_a = sim_throughput_kernel(new_simulator(BUSY), out_a, 3)
    checksum_b = sim_throughput_kernel(new_simulator(BUSY), out_b, 3)
    assert checksum_a == checksum_b
    assert np.array_equal(out_a, generate(BUSY, 3 * 4096)[2 * 4096 :])


# --- self-consistency --------------------------------------------------------------------


def test_stream_is_self_consistent_over_200k_messages():
    sim, records = generate_to_event_boundary(BUSY, 200_000)
    book = ReferenceBook(BUSY.instruments).apply_all(records)
    assert set(book.kinds) == {LEVEL, TRADE, SNAPSHOT_BEGIN, SNAPSHOT_END}
    assert set(book.instruments) == set(range(BUSY.instruments))
    assert book.snapshots_checked >= 30  # periodic snapshots, each compared with the book
    assert book.trades_removing_level > 0  # some trades empty their level
    assert (records["price"][records["kind"] == LEVEL] > 0).all()
    # The consumer's books end exactly where the simulator's are.
    for k in range(BUSY.instruments):
        assert (book.bids[k], book.asks[k]) == simulator_book(sim, k)


def test_stream_starts_with_one_snapshot_per_instrument():
    records = generate(BUSY, 2_000)
    begins = np.flatnonzero(records["kind"] == SNAPSHOT_BEGIN)[: BUSY.instruments]
    assert list(records["instrument"][begins]) == list(range(BUSY.instruments))
    first_update = np.flatnonzero(records["kind"] == TRADE)[0]
    ends = np.flatnonzero(records["kind"] == SNAPSHOT_END)
    assert ends[BUSY.instruments - 1] < first_update


def test_moves_walk_the_price():
    records = generate(BUSY, 100_000)
    trades = records[(records["kind"] == TRADE) & (records["instrument"] == 0)]
    assert np.ptp(trades["price"]) > 10


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    n_instruments=st.integers(1, 4),
    seed=st.integers(0, 2**63 - 1),  # a TOML integer: [feed] seed is int64
    depth_levels=st.integers(1, 12),
    price_above_floor=st.integers(0, 20),  # near the floor the walk must turn back up
    max_spread_ticks=st.integers(1, 6),
    mean_queue_lots=st.integers(1, 60),
    trade_probability=st.floats(0.0, 0.6),
    move_probability=st.floats(0.0, 0.4),
    snapshot_interval=st.integers(0, 300),
)
def test_stream_is_self_consistent_for_any_valid_params(  # noqa: PLR0913 -- hypothesis draws each knob
    n_instruments,
    seed,
    depth_levels,
    price_above_floor,
    max_spread_ticks,
    mean_queue_lots,
    trade_probability,
    move_probability,
    snapshot_interval,
):
    params = FeedConfig(
        instruments=n_instruments,
        seed=seed,
        depth_levels=depth_levels,
        start_price_ticks=depth_levels + price_above_floor,
        max_spread_ticks=max_spread_ticks,
        mean_queue_lots=mean_queue_lots,
        trade_probability=trade_probability,
        move_probability=move_probability,
        snapshot_interval=snapshot_interval,
    )
    sim, records = generate_to_event_boundary(params, 3_000)
    book = ReferenceBook(n_instruments).apply_all(records)
    for k in range(n_instruments):
        assert (book.bids[k], book.asks[k]) == simulator_book(sim, k)
        assert sim.best_bid[k] - depth_levels + 1 >= 1
        assert 1 <= sim.spread[k] <= max_spread_ticks


# --- interpreted versus compiled ---------------------------------------------------------


def test_interpreted_and_jitted_streams_are_identical(monkeypatch):
    """Every kernel of service.kernels.feed swapped for its Python function: the same stream."""
    jitted = generate(BUSY, 3_000)
    for name, value in list(vars(feed).items()):
        if isinstance(value, CPUDispatcher):
            monkeypatch.setattr(feed, name, value.py_func)
    out = np.zeros(3_000, dtype=MARKET_DATA)
    with np.errstate(over="ignore"):  # splitmix64 wraps uint64 on purpose
        sim = feed.new_simulator(BUSY)
        for i in range(len(out)):
            feed.sim_next(sim, out, i)
    assert not isinstance(feed.sim_next, CPUDispatcher)
    assert np.array_equal(out, jitted)


def test_rng_matches_reference_splitmix64():
    """splitmix64 from its published definition, in Python integers."""
    mask = 2**64 - 1
    state = 1234567
    expected = []
    for _ in range(5):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        expected.append(z ^ (z >> 31))
    rng = np.array([1234567], dtype=np.uint64)
    assert [int(feed._rand_u64(rng, 0)) for _ in range(5)] == expected


# --- schedule ----------------------------------------------------------------------------


@kernel
def _intervals(sim, base_interval_ns, out):
    for i in range(len(out)):
        out[i] = sim_next_interval_ns(sim, base_interval_ns)


def test_schedule_average_is_the_offered_rate_with_bursts():
    params = dataclasses.replace(BUSY, burst_probability=0.01, burst_length=10, burst_speedup=4.0)
    base = 1_000.0
    intervals = np.zeros(1_000_000)
    _intervals(new_simulator(params), base, intervals)
    assert abs(intervals.mean() / base - 1.0) < 0.005
    burst = intervals == base / 4.0
    normal = intervals == base * normal_interval_stretch(params)
    assert (burst | normal).all()
    # Bursts occur, come in runs of burst_length (or multiples when they follow each other).
    starts = np.flatnonzero(burst & ~np.concatenate(([False], burst[:-1])))
    assert len(starts) > 1_000
    run_lengths = np.diff(np.flatnonzero(np.diff(np.concatenate(([0], burst, [0])))))[::2]
    assert (run_lengths[:-1] % params.burst_length == 0).all()


def test_schedule_without_bursts_is_the_constant_interval():
    params = dataclasses.replace(BUSY, burst_probability=0.0)
    intervals = np.zeros(10_000)
    _intervals(new_simulator(params), 250.0, intervals)
    assert (intervals == 250.0).all()


def test_normal_interval_stretch_formula():
    params = FeedConfig(burst_probability=0.2, burst_length=5, burst_speedup=2.0)
    # Per draw: 0.8 normal messages and 0.2*5 = 1 burst message (at T/2). 0.8*Tn + 0.5 = 1.8.
    assert normal_interval_stretch(params) == pytest.approx(1.3 / 0.8)


def test_schedule_does_not_change_the_message_stream():
    sim = new_simulator(BUSY)
    out = np.zeros(5_000, dtype=MARKET_DATA)
    for i in range(0, 5_000, 1_000):
        sim_fill(sim, out[i:], 1_000)
        _intervals(sim, 100.0, np.zeros(37))
    assert np.array_equal(out, generate(BUSY, 5_000))


# --- hot-path hygiene --------------------------------------------------------------------


def test_generating_messages_allocates_nothing():
    sim = new_simulator(BUSY)
    out = np.zeros(50_000, dtype=MARKET_DATA)
    sim_fill(sim, out, 10)  # compiled or loaded from the cache
    _nrt_python.memsys_enable_stats()
    try:
        # Calling a kernel from Python wraps each array argument once: count a short and a
        # long run; the per-message path must add nothing on top.
        before = rtsys.get_allocation_stats()
        sim_fill(sim, out, 10)
        short = rtsys.get_allocation_stats()
        sim_fill(sim, out, 50_000)
        long = rtsys.get_allocation_stats()
    finally:
        _nrt_python.memsys_disable_stats()
    arrays = sum(isinstance(field, np.ndarray) for field in sim) + 1  # + out
    assert short.alloc - before.alloc == long.alloc - short.alloc <= arrays
    assert long.free - short.free == long.alloc - short.alloc  # and all released


def test_warm_up_compiles_exactly_one_signature_per_kernel():
    warm_feed()
    for dispatcher in (sim_next, sim_fill, sim_throughput_kernel, sim_next_interval_ns):
        assert len(dispatcher.signatures) == 1, (dispatcher, dispatcher.signatures)
    (signature,) = sim_next.signatures
    assert signature[1] == numba.typeof(np.zeros(1, dtype=MARKET_DATA))
