"""The stage-cost probes drive the production kernels and agree with them: the engine's chain
decides as ``engine_on_message`` does, the feed probe publishes what it is asked (and stops at a
replay's end), the gateway probe batches every order; and ``measure_stage_costs`` reports every
step. Timings are not asserted (the machine is shared): what is counted is."""

from __future__ import annotations

import time

import numpy as np
import pytest

from contracts import stats_layout as L
from service.bench import capacity
from service.bench.capacity import _config, _Pipeline, measure_stage_costs, simulated_stream
from service.kernels.cost_probes import RISK, engine_steps_cost, feed_cost, gateway_cost
from service.kernels.risk import ACCEPTED, risk_on_execution
from service.kernels.stages import BATCH, E_ORDER_QTY, engine_on_message
from service.runtime.state import new_engine_state

CONFIG = _config(capacity.FLAT_OUT)


def test_the_chain_cut_after_risk_decides_as_the_engine_does():
    stream = simulated_stream(CONFIG, 20_000)
    now = time.monotonic_ns()
    live = new_engine_state(CONFIG, CONFIG.feed.instruments)
    qty = live.ivars[E_ORDER_QTY]
    accepted = 0
    for msg in stream:
        inst = np.int64(msg["instrument"])
        side, _price, reason = engine_on_message(
            live, inst, msg["kind"], np.int64(msg["side"]), msg["price"], np.int64(msg["qty"]),
            now, False,
        )  # fmt: skip
        if side >= 0 and reason == ACCEPTED:
            accepted += 1
            risk_on_execution(live.risk, inst, side, qty, 0)
    probed = new_engine_state(CONFIG, CONFIG.feed.instruments)
    _, probe_accepted = engine_steps_cost(probed, stream, RISK, now)
    assert accepted > 0
    assert probe_accepted == accepted
    np.testing.assert_array_equal(probed.last_signal, live.last_signal)
    np.testing.assert_array_equal(probed.features.values, live.features.values)


@pytest.mark.parametrize("source", ["simulator", "replay"])
def test_the_feed_probe_publishes_what_it_is_asked(source):
    replay = simulated_stream(CONFIG, 3_000) if source == "replay" else None
    with _Pipeline(CONFIG, replay) as p:
        seg = p.segments
        ns, sent = feed_cost(p.feed, p.rings.md, seg.control, seg.stats, p.local, 10_000)
        # a replay ends with its recording; the simulator publishes what was asked, in whole
        # steps of up to BATCH messages
        if replay is not None:
            assert sent == 3_000
        else:
            assert 10_000 <= sent < 10_000 + BATCH
        assert p.local[L.MD_SENT] == sent and p.local[L.MD_DROPPED] == 0
        assert ns > 0


def test_the_gateway_probe_batches_and_flushes_every_order():
    with _Pipeline(CONFIG, None) as p:
        seg = p.segments
        ns, orders = gateway_cost(p.gateway, p.rings, seg.control, seg.stats, p.local, 5_000)
        assert orders == 5_000 and ns > 0
        assert p.local[L.ORDERS_RECEIVED] == 5_000
        assert p.local[L.EXCHANGE_FILLS] + p.local[L.EXCHANGE_CANCELS] == 5_000
        assert 0 < p.local[L.BATCHES] <= 5_000


def test_every_step_has_a_cost(monkeypatch):
    monkeypatch.setattr(capacity, "STREAM", 20_000)
    monkeypatch.setattr(capacity, "ORDERS", 2_000)
    costs = measure_stage_costs(0, 1)
    assert set(costs) == {
        "feed_simulator", "feed_replay", "book", "features", "model", "strategy", "risk",
        "fused_replay", "fused_simulator", "batching", "batching_per_order",
    }  # fmt: skip
    assert all(np.isfinite(v) and v >= 0 for v in costs.values()), costs
    assert costs["fused_replay"] > 0 and costs["fused_simulator"] > 0
    # orders are rarer than messages: the gateway's cost per message is below its cost per order
    assert costs["batching"] < costs["batching_per_order"]
