"""Reading a running engine (``service.research.live``): what it shows is what the engine holds,
a publish is never seen half done, and without an engine the reader says so in one line.

The engine's side is the real kernel (``service.kernels.market.publish_market``) over real
stats segments in a temporary directory; the last test reads a real `trading-service run`.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from contracts import stats_layout as L
from contracts.errors import CannotRunNow
from contracts.features import FEATURE_NAMES
from contracts.records import ASK, BID
from contracts.stages import S_RUNNING
from service.config import load
from service.kernels.atomics import load_acquire
from service.kernels.book import book_reset, book_set_level
from service.kernels.jit import kernel
from service.kernels.market import publish_market
from service.kernels.signals import model_score, update_book_features
from service.research.live import ROW, LiveMarket, NotPublished, read_market
from service.runtime.segments import attach_stats
from service.runtime.shm import SegmentError
from service.runtime.state import new_engine_state
from service.runtime.stats import snapshot
from tests.support.live_engine import running_engine
from tests.support.synthetic_engine import SyntheticEngine

N = 3
_H_PID, _H_LAYOUT = 3, 7  # header words (service.runtime.shm)


@pytest.fixture
def engine(tmp_path, request):
    """Real stats segments this process owns, and an engine state of N instruments."""
    synthetic = SyntheticEngine(tmp_path)
    request.addfinalizer(synthetic.close)
    return synthetic, new_engine_state(synthetic.config, N)


def set_book(state, inst: int, bid: int, bid_qty: int, ask: int, ask_qty: int) -> None:
    book_reset(state.book, inst)
    book_set_level(state.book, inst, BID, bid, bid_qty)
    book_set_level(state.book, inst, ASK, ask, ask_qty)
    update_book_features(state.features, state.book, inst, 0.5)


def consistent_with_the_book(rows: np.ndarray) -> None:
    """What every row of a whole publish satisfies when its book is two-sided."""
    bid, ask = rows["bid_px"].astype(float), rows["ask_px"].astype(float)
    bq, aq = rows["bid_qty"].astype(float), rows["ask_qty"].astype(float)
    assert (rows["bid_px"] > 0).all() and (rows["bid_px"] < rows["ask_px"]).all(), rows
    assert (rows["bid_qty"] > 0).all() and (rows["ask_qty"] > 0).all(), rows
    assert np.array_equal(rows["mid"], (bid + ask) * 0.5), rows
    assert np.array_equal(rows["spread_ticks"], ask - bid), rows
    assert np.allclose(rows["imbalance"], (bq - aq) / (bq + aq), rtol=0, atol=1e-12), rows
    micro = (bid * aq + ask * bq) / (bq + aq) - rows["mid"]
    assert np.allclose(rows["microprice_offset"], micro, rtol=0, atol=1e-9), rows
    for name in (*FEATURE_NAMES, "score"):
        assert np.isfinite(rows[name]).all(), name


def test_a_snapshot_shows_what_the_engine_holds(engine):
    synthetic, state = engine
    set_book(state, 0, 100, 7, 102, 3)
    set_book(state, 1, 5000, 1, 5001, 9)
    book_set_level(state.book, 2, BID, 77, 4)  # one-sided: no mid, features as they were
    update_book_features(state.features, state.book, 2, 0.5)
    synthetic.local[L.POSITIONS : L.POSITIONS + N] = [5, -2, 0]
    synthetic.set_states(S_RUNNING)
    synthetic.publish(1_000)
    publish_market(state, N, synthetic.stats, synthetic.local, 2_000)
    rows = read_market(synthetic.config)
    assert rows.dtype == ROW and rows["instrument"].tolist() == list(range(N))
    assert rows[["bid_px", "bid_qty", "ask_px", "ask_qty"]].tolist() == [
        (100, 7, 102, 3),
        (5000, 1, 5001, 9),
        (77, 4, -1, 0),
    ]
    assert rows["position"].tolist() == [5, -2, 0]
    assert (rows["heartbeat_ns"] == 2_000).all()
    consistent_with_the_book(rows[:2])
    assert np.isnan(rows["mid"][2])
    for k, name in enumerate(FEATURE_NAMES):
        assert np.array_equal(rows[name], state.features.values[:, k], equal_nan=True), name
    m = state.model
    scores = [
        model_score(m.weights, m.bias, m.logistic, state.features.values, i) for i in range(N)
    ]
    assert rows["score"].tolist() == scores
    # only the engine's N records were published: the rest of the section was never written
    assert not synthetic.stats[L.MARKET_RECORDS + N * L.MARKET_RECORD_WORDS : L.MARKET_END].any()
    df = LiveMarket(synthetic.config).frame()
    assert list(df.index) == list(range(N)) and df["bid_qty"].tolist() == [7, 1, 4]


def test_a_reader_before_the_engine_gets_the_one_line_error(tmp_path):
    config = tmp_path / "service.toml"
    config.write_text(f'[service]\nshm_dir = "{tmp_path}"\nshm_prefix = "nobody-here"\n')
    with pytest.raises(SegmentError, match=r"no such segment \(is the service running\?\)") as e:
        LiveMarket(config)
    assert isinstance(e.value, CannotRunNow) and "\n" not in str(e.value)


def test_segments_of_a_dead_run_or_another_build_are_refused(engine):
    synthetic, state = engine
    publish_market(state, N, synthetic.stats, synthetic.local, 1)
    path = synthetic.segments.shm_dir / f"{synthetic.segments.prefix}.stats"
    header = np.memmap(path, dtype=np.int64, mode="r+", shape=(16,))
    market = LiveMarket(synthetic.config)
    header[_H_PID] = 2**22 + 12345  # no such process: the run that made it has ended
    with pytest.raises(SegmentError, match="left by a run that has ended"):
        market.snapshot()  # the reader it was notices too
    header[_H_LAYOUT] ^= 0x5A5A
    with pytest.raises(SegmentError, match="another build of lowlat"):
        LiveMarket(synthetic.config)


def test_an_engine_that_has_not_published_yet_says_so(engine):
    synthetic, _ = engine
    with pytest.raises(NotPublished, match="has not published its market yet"):
        read_market(synthetic.config)


@kernel
def churn(state, n, shared, local, stop, iterations):
    """Publish book after book until ``stop[0]`` (or ``iterations``): publish i has bid size
    1 + i % 1000 and bid price 1000 + 100 * instrument + i % 2 on every instrument and heartbeat
    i, so a reader can tell whether all it copied is publish i. Levels move a tick at a time,
    added before the old ones go: every update is O(1), so the engine publishes flat out."""
    i = 0
    while load_acquire(stop, 0) == 0 and i != iterations:
        i += 1
        for inst in range(n):
            bid = 1000 + 100 * inst + i % 2
            old = 1000 + 100 * inst + (i + 1) % 2
            book_set_level(state.book, inst, BID, bid, 1 + i % 1000)
            book_set_level(state.book, inst, ASK, bid + 2, 1 + (i * 7) % 13)
            book_set_level(state.book, inst, BID, old, 0)
            book_set_level(state.book, inst, ASK, old + 2, 0)
            update_book_features(state.features, state.book, inst, 0.5)
        publish_market(state, n, shared, local, i)
    return i


def test_a_reader_never_sees_a_publish_half_done(engine):
    """The engine publishes all MAX_INSTRUMENTS records flat out on one core while this thread
    reads on the other (a reader without the seqlock sees about 1 % of its copies torn)."""
    synthetic, _ = engine
    n = L.MAX_INSTRUMENTS
    state = new_engine_state(synthetic.config, n)
    stop = np.zeros(1, dtype=np.int64)
    churn(state, n, synthetic.stats, synthetic.local, stop, 1)  # compiled, and published once
    writer = threading.Thread(
        target=churn, args=(state, n, synthetic.stats, synthetic.local, stop, -1), daemon=True
    )
    market = LiveMarket(synthetic.config)
    seen = set()
    reads = 0
    # until the reads have met 1,000 different publishes: on a loaded machine (CI runs the lab
    # beside the tests) the writer thread gets less of a core, so a fixed number of reads
    # could overlap only a few publishes and prove little
    deadline = time.monotonic() + 120
    writer.start()
    try:
        while (len(seen) < 1000 or reads < 2000) and time.monotonic() < deadline:
            reads += 1
            rows = market.snapshot()
            beat = int(rows["heartbeat_ns"][0])
            assert (rows["bid_qty"] == 1 + beat % 1000).all(), rows  # all of publish `beat`
            assert (rows["bid_px"] == 1000 + 100 * rows["instrument"] + beat % 2).all(), rows
            consistent_with_the_book(rows)
            seen.add(beat)
    finally:
        stop[0] = 1
        writer.join()
    assert len(seen) >= 1000, (len(seen), reads)  # the writer really ran between the reads


@pytest.mark.slow
def test_a_running_engine_on_the_simulator(tmp_path):
    with running_engine(tmp_path, "[feed]\nrate = 50000\n") as config:
        n = load(config).feed.instruments
        market = LiveMarket(config)
        _, stats = attach_stats(tmp_path, market.path.name, writable=False)
        beats, agreed = [], 0
        # at least 20 readings, and on until they have met 10 publishes: on a machine as loaded
        # as CI's (the lab's emulator beside the tests) the engine may not run for a while
        deadline = time.monotonic() + 60
        readings = 0
        while readings < 20 or (len(set(beats)) <= 10 and time.monotonic() < deadline):
            readings += 1
            time.sleep(0.001)
            before = market.snapshot()
            engine = snapshot(stats)[L.POSITIONS : L.POSITIONS + n]
            after = market.snapshot()
            for rows in (before, after):
                assert len(rows) == n
                two_sided = (rows["bid_px"] > 0) & (rows["ask_px"] > 0)
                assert two_sided.any(), rows
                consistent_with_the_book(rows[two_sided])
                beats.append(int(rows["heartbeat_ns"][0]))
            if np.array_equal(before["position"], after["position"]):
                assert np.array_equal(before["position"], engine)
                agreed += 1
        assert agreed > 0
        assert beats == sorted(beats) and len(set(beats)) > 10  # published as it runs
        market.close()
