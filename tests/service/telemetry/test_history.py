"""``/history``'s points, read from a real stats block (a synthetic engine's segments)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from contracts import stats_layout as L
from contracts.stages import S_RUNNING
from service.telemetry.engine_view import RATES, RINGS, EngineView
from service.telemetry.history import MAX_POINTS, PERCENTILES, History
from tests.support.synthetic_engine import SyntheticEngine, record

INTERVAL_S = 0.05
T2O = next(m for m in L.CATALOG if m.name == "tick_to_order")


@pytest.fixture
def engine(tmp_path, request) -> SyntheticEngine:
    engine = SyntheticEngine(tmp_path)
    request.addfinalizer(engine.close)
    engine.set_states(S_RUNNING)
    engine.publish()
    return engine


def later(view: EngineView, after_s: float = INTERVAL_S):
    time.sleep(after_s)
    return view.sample()


def test_a_point_holds_the_interval_since_the_previous_reading(engine):
    view, history = EngineView(engine.config), History(INTERVAL_S)
    history.record(view.sample(), 1000.0)
    engine.local[L.MD_PROCESSED] += 5000
    engine.local[L.ORDERS_SENT] += 40
    engine.local[L.REJECTS + 2] += 3
    engine.local[L.MD_RING_OCCUPANCY] = 17
    engine.publish()
    record(engine, T2O, np.array([2_000] * 90 + [900_000] * 10))
    second = later(view)
    history.record(second, 1000.5)
    first, point = history.since()
    assert first["t"] == 1000.0 and first["window_s"] is None  # nothing before it
    assert point["t"] == 1000.5 and point["engine_running"] is True
    window = point["window_s"]
    assert window >= INTERVAL_S
    assert point["rates_per_s"]["md_messages"] == pytest.approx(5000 / window)
    assert point["rates_per_s"]["orders"] == pytest.approx(40 / window)
    assert point["rates_per_s"]["rejects"] == pytest.approx(3 / window)
    assert set(point["rates_per_s"]) == {label for label, _, _ in RATES}
    assert point["rings"] == {name: 17 if name == "md" else 0 for name, _, _ in RINGS}
    t2o = point["latency_ns"]["tick_to_order"]
    assert t2o["count"] == 100 and set(t2o) == {"count", *PERCENTILES}
    # p50 in 2 us's bucket, p99 and p99.9 in 900 us's: never below what was recorded
    assert 2_000 <= t2o["p50"] <= 2_000 * 1.0625
    assert 900_000 <= t2o["p99"] <= 900_000 * 1.0625 and t2o["p999"] >= t2o["p99"]
    # a path with nothing recorded in the interval has no percentiles, not zeros
    assert point["latency_ns"]["feed_lag"] == {"count": 0, **dict.fromkeys(PERCENTILES)}


def test_at_most_one_point_per_interval_but_always_when_the_engine_comes_or_goes(engine):
    view, history = EngineView(engine.config), History(interval_s=10.0)
    history.record(view.sample(), 1.0)
    history.record(view.sample(), 2.0)  # within the interval: no point
    assert [p["t"] for p in history.since()] == [1.0]
    engine.close()
    gone = view.sample()
    assert not gone.running
    history.record(gone, 3.0)  # the engine went: a point at once
    history.record(view.sample(), 4.0)  # still gone, within the interval: none
    points = history.since()
    assert [p["t"] for p in points] == [1.0, 3.0]
    assert points[-1] == {"t": 3.0, "engine_running": False, "window_s": None, "latency_ns": {},
                          "rates_per_s": {}, "rings": {}}  # fmt: skip


def test_since_returns_only_newer_points_and_the_span_bounds_them(engine):
    view = EngineView(engine.config)
    history = History(interval_s=INTERVAL_S, span_s=4 * INTERVAL_S)
    for t in range(1, 8):
        history.record(later(view), float(t))
    assert [p["t"] for p in history.since()] == [4.0, 5.0, 6.0, 7.0]
    assert [p["t"] for p in history.since(5.0)] == [6.0, 7.0]
    assert history.since(7.0) == [] and len(history.since(float("-inf"))) == 4
    assert np.isfinite([p["rates_per_s"]["md_messages"] for p in history.since()]).all()


def test_the_body_is_the_points_asked_for_and_the_newest_state_as_json(engine):
    view, history = EngineView(engine.config), History(INTERVAL_S)
    assert json.loads(history.body()) == {
        "interval_s": INTERVAL_S, "span_s": history.span_s, "latest": None, "points": [],
    }  # fmt: skip
    states = iter([{"n": 1, "x": float("nan")}, {"n": 2, "x": 0.5}])
    history.record(later(view), 10.0, lambda: next(states))
    history.record(later(view), 11.0, lambda: next(states))
    doc = json.loads(history.body())
    assert doc["points"] == history.since() and [p["t"] for p in doc["points"]] == [10.0, 11.0]
    assert doc["latest"] == {"n": 2, "x": 0.5}  # the newest point's
    assert json.loads(history.body(10.0))["points"] == history.since(10.0)
    # a state that is not finite JSON comes out as null, never as NaN
    first = History(INTERVAL_S)
    first.record(later(view), 1.0, lambda: {"x": float("nan")})
    assert json.loads(first.body())["latest"] == {"x": None}


def test_a_short_sample_interval_keeps_fewer_minutes_not_more_points():
    assert History(1.0).span_s == 300.0
    short = History(0.05)
    assert short.span_s == pytest.approx(MAX_POINTS * 0.05)
    assert json.loads(short.body())["span_s"] == short.span_s
