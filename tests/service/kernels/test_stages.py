"""The stage kernels driven step by step in one process, with hand-made messages.

Each test builds real segments (in a temporary directory), puts crafted records into the rings
and calls one step at a time, so the rules of the hot path can be checked exactly: gaps mark
books stale until a snapshot, stale books send no orders, the batcher flushes on size and as
soon as its input runs empty, and the drain handshake finishes front to back.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from contracts import segments as C
from contracts import stats_layout as L
from contracts.records import ASK, BID, LEVEL, MARKET_DATA, ORDER, SNAPSHOT_BEGIN, SNAPSHOT_END
from contracts.stages import ALL_STAGES
from service.config import Config, EngineConfig, GatewayConfig, ServiceConfig
from service.kernels import stages as S
from service.kernels.control import get_word, set_word
from service.kernels.ring import ring_occupancy, ring_pop_batch, ring_push_batch
from service.runtime.segments import create_segments
from service.runtime.state import new_engine_state, new_feed_state, new_gateway_state

N = 2


@pytest.fixture
def pipe(tmp_path):
    base = Config()
    config = dataclasses.replace(
        base,
        service=dataclasses.replace(ServiceConfig(), shm_dir=str(tmp_path)),
        # a threshold of 0 makes every fresh book send an order: the strategy's edge trigger
        # still allows one order per side change
        engine=dataclasses.replace(EngineConfig(), signal_threshold=0.0),
        gateway=dataclasses.replace(GatewayConfig(), batch_size=4, batch_timeout_us=1_000_000),
    )
    seg = create_segments(config)
    rings = S.Rings(seg.rings["md"], seg.rings["orders"], seg.rings["fills"])
    engine = new_engine_state(config, N)
    gateway = new_gateway_state(config)
    local = np.zeros(L.STATS_WORDS, dtype=np.int64)
    yield config, seg, rings, engine, gateway, local
    seg.unlink()


def messages(*rows) -> np.ndarray:
    """rows of (seq, kind, instrument, side, price, qty)."""
    out = np.zeros(len(rows), dtype=MARKET_DATA)
    for i, (seq, kind, inst, side, price, qty) in enumerate(rows):
        out[i] = (seq, 1_000 + seq, price, qty, inst, kind, side)
    return out


def two_sided(seq: int, inst: int, bid: int = 100, ask: int = 101, qty: int = 10):
    return [(seq, LEVEL, inst, BID, bid, qty), (seq + 1, LEVEL, inst, ASK, ask, qty)]


def feed(rings, rows) -> None:
    records = messages(*rows)
    assert ring_push_batch(rings.md, records, len(records)) == len(records)


def engine_step(seg, rings, engine, local, now=10**12):
    return S.engine_step(engine, rings, seg.control, seg.stats, local, now)


def test_a_gap_makes_every_book_stale_until_its_snapshot(pipe):
    _, seg, rings, engine, _, local = pipe
    feed(rings, two_sided(1, 0) + two_sided(3, 1))
    engine_step(seg, rings, engine, local)
    assert local[L.SEQUENCE_GAPS] == 0 and not engine.stale.any()

    feed(rings, [(10, LEVEL, 0, BID, 100, 5)])  # 5..9 lost
    engine_step(seg, rings, engine, local)
    assert local[L.SEQUENCE_GAPS] == 1 and local[L.MD_LOST] == 5
    assert engine.stale.tolist() == [1, 1] and local[L.STALE_BOOKS] == 2

    # a snapshot of instrument 1 only: instrument 0 stays stale
    feed(
        rings, [(11, SNAPSHOT_BEGIN, 1, 0, 0, 0), *two_sided(12, 1), (14, SNAPSHOT_END, 1, 0, 0, 0)]
    )
    engine_step(seg, rings, engine, local)
    assert engine.stale.tolist() == [1, 0] and local[L.STALE_BOOKS] == 1
    assert local[L.SEQUENCE_GAPS] == 1


def test_a_gap_inside_a_snapshot_keeps_the_book_stale(pipe):
    _, seg, rings, engine, _, local = pipe
    feed(rings, two_sided(1, 0))
    feed(rings, [(5, SNAPSHOT_BEGIN, 0, 0, 0, 0)])  # gap before it: both books stale
    feed(rings, [(6, LEVEL, 0, BID, 100, 3), (9, LEVEL, 0, ASK, 101, 3)])  # gap inside it
    feed(rings, [(10, SNAPSHOT_END, 0, 0, 0, 0)])
    engine_step(seg, rings, engine, local)
    assert local[L.SEQUENCE_GAPS] == 2
    assert engine.stale[0] == 1  # the snapshot was not whole: still not trusted


def test_stale_books_send_no_orders_and_fresh_ones_do(pipe):
    _, seg, rings, engine, _, local = pipe
    feed(rings, [(5, LEVEL, 0, BID, 100, 1)])  # first message: no gap yet
    feed(rings, [(7, LEVEL, 0, ASK, 101, 50)])  # gap: stale
    feed(rings, [(8, LEVEL, 0, BID, 100, 90), (9, LEVEL, 0, BID, 100, 1)])
    engine_step(seg, rings, engine, local)
    assert local[L.ORDERS_SENT] == 0 and ring_occupancy(rings.orders) == 0
    feed(rings, [(10, SNAPSHOT_BEGIN, 0, 0, 0, 0), *two_sided(11, 0, qty=40)])
    feed(rings, [(13, SNAPSHOT_END, 0, 0, 0, 0), (14, LEVEL, 0, BID, 100, 400)])
    engine_step(seg, rings, engine, local)
    assert local[L.ORDERS_SENT] >= 1
    out = np.zeros(8, dtype=ORDER)
    n = ring_pop_batch(rings.orders, out, 8)
    assert n == local[L.ORDERS_SENT]
    assert out[0]["tick_ns"] == 1_000 + 14  # stamped with the message that caused it
    assert out[0]["instrument"] == 0 and out[0]["qty"] == 1


def test_the_kill_switch_rejects_and_counts(pipe):
    _, seg, rings, engine, _, local = pipe
    set_word(seg.control, C.KILL_SWITCH, 1)
    feed(rings, [*two_sided(1, 0, qty=40), (3, LEVEL, 0, BID, 100, 400)])
    engine_step(seg, rings, engine, local)
    assert local[L.ORDERS_SENT] == 0
    assert local[L.REJECTS + L.REJECT_REASONS.index("kill_switch")] >= 1


def orders(n: int, start_id: int = 1) -> np.ndarray:
    out = np.zeros(n, dtype=ORDER)
    out["order_id"] = np.arange(start_id, start_id + n)
    out["qty"], out["price"], out["tick_ns"] = 1, 100, 1
    return out


def test_gateway_flushes_at_once_when_its_input_runs_empty(pipe):
    _, seg, rings, _, gateway, local = pipe
    ring_push_batch(rings.orders, orders(2), 2)
    S.gateway_step(gateway, rings, seg.control, seg.stats, local, 10**12)
    assert local[L.BATCHES] == 1 and ring_occupancy(rings.fills) == 2
    assert gateway.ivars[S.G_PENDING] == 0


def test_gateway_batches_by_size_while_orders_keep_coming(pipe):
    _, seg, rings, _, gateway, local = pipe
    ring_push_batch(rings.orders, orders(6), 6)
    S.gateway_step(gateway, rings, seg.control, seg.stats, local, 10**12)
    assert local[L.BATCHES] == 1 and ring_occupancy(rings.fills) == 4  # batch_size 4
    S.gateway_step(gateway, rings, seg.control, seg.stats, local, 10**12)
    assert local[L.BATCHES] == 2 and ring_occupancy(rings.fills) == 6
    filled, cancelled = local[L.EXCHANGE_FILLS], local[L.EXCHANGE_CANCELS]
    assert filled + cancelled == 6


def test_fills_move_positions_and_release_pending(pipe):
    _, seg, rings, engine, gateway, local = pipe
    feed(rings, [*two_sided(1, 0, qty=40), (3, LEVEL, 0, BID, 100, 400)])
    engine_step(seg, rings, engine, local)
    sent = int(local[L.ORDERS_SENT])
    assert sent >= 1
    S.gateway_step(gateway, rings, seg.control, seg.stats, local, 10**12)
    engine_step(seg, rings, engine, local)  # takes the fills
    assert local[L.FILLS] + local[L.CANCELS] == sent
    assert engine.risk.pending_buy[0] == 0 and engine.risk.pending_sell[0] == 0
    assert abs(local[L.POSITIONS + 0]) == local[L.FILLS]


def test_drain_finishes_front_to_back(pipe):
    config, seg, rings, engine, gateway, local = pipe
    feed_state = new_feed_state(config)
    set_word(seg.control, C.STOP, 1)
    feed(rings, [*two_sided(1, 0, qty=40), (3, LEVEL, 0, BID, 100, 400)])
    iterations = S.run_loop(
        ALL_STAGES,
        rings,
        feed_state,
        engine,
        gateway,
        seg.control,
        seg.stats,
        local,
        10**6,
        100_000,
    )
    assert iterations < 100_000  # it finished by itself
    assert [get_word(seg.control, w) for w in C.DONE] == [1, 1, 1]
    assert ring_occupancy(rings.md) == ring_occupancy(rings.orders) == 0
    assert ring_occupancy(rings.fills) == 0
    assert local[L.ORDERS_SENT] == local[L.FILLS] + local[L.CANCELS]


def test_warm_up_and_live_segments_compile_one_signature(tmp_path):
    """The stage process warms run_loop on segments it creates and runs it on segments it
    attaches to: a type difference between the two would be a silent JIT compile on the hot
    path, after the service said it was ready."""
    import numba

    from service.runtime.pipeline import attach_segments

    config = dataclasses.replace(
        Config(), service=dataclasses.replace(ServiceConfig(), shm_dir=str(tmp_path))
    )
    created = create_segments(config, "shadow")
    live_owner = create_segments(config)
    try:
        live = attach_segments(config)
        types = []
        for seg in (created, live):
            rings = S.Rings(seg.rings["md"], seg.rings["orders"], seg.rings["fills"])
            args = (
                ALL_STAGES,
                rings,
                new_feed_state(config),
                new_engine_state(config, config.feed.instruments),
                new_gateway_state(config),
                seg.control,
                seg.stats,
                np.zeros(L.STATS_WORDS, dtype=np.int64),
                10**6,
                100,
            )
            S.run_loop(*args)
            types.append(tuple(numba.typeof(a) for a in args))
        assert types[0] == types[1]
        assert sum(sig == types[0] for sig in S.run_loop.signatures) == 1
    finally:
        created.unlink()
        live_owner.unlink()
