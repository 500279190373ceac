"""Backtests on the live kernels: parity with the live loop, accounting, the report."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
import pytest

from contracts import stats_layout as L
from contracts.stages import ALL_STAGES
from service.config import load
from service.kernels import stages as S
from service.research.backtest import Latency, parse_duration_ns, run_backtest
from service.runtime.recording import open_recording
from service.runtime.segments import create_segments
from service.runtime.state import new_engine_state, new_feed_state, new_gateway_state
from tests.support.lobster import imported_day
from tests.support.paths import REPO

ROWS = 4000
# Limits no order stream of this slice reaches: then the decisions depend on the market data
# alone, not on the fills (the live gateway's are a coin toss, the backtest's the book's) or on
# the wall clock (the live rate throttle).
LOOSE = """
[risk]
position_limit = 1000000000
orders_per_second = 1e12
burst = 1e12
max_notional = 1e15
"""


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return imported_day(tmp_path_factory.mktemp("bt"), ROWS)


def config_for(tmp_path, day, extra=""):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[service]\nshm_prefix = "llbt{uuid.uuid4().hex[:8]}"\n'
        f'[feed]\nsource = "replay"\nreplay_file = "{day}"\nrate = 0\n{LOOSE}{extra}'
    )
    return load(path)


def live_decisions(config, recording):
    """The live loop, fused, over real rings in shared memory: the orders its engine sent."""
    segments = create_segments(config, config.service.shm_prefix)
    try:
        rings = S.Rings(segments.rings["md"], segments.rings["orders"], segments.rings["fills"])
        feed = new_feed_state(config, recording.records)
        engine = new_engine_state(config, recording.n_instruments, decisions=100_000)
        gateway = new_gateway_state(config)
        local = np.zeros(L.STATS_WORDS, dtype=np.int64)
        S.run_loop(
            ALL_STAGES,
            rings,
            feed,
            engine,
            gateway,
            segments.control,
            segments.stats,
            local,
            10**6,
            -1,
        )
        assert local[L.MD_PROCESSED] == len(recording.records)
        return engine.decisions[: engine.ivars[S.E_DECISIONS]].copy(), local
    finally:
        segments.unlink()


def test_with_zero_latency_the_backtest_decides_exactly_as_the_live_loop(tmp_path, day):
    config = config_for(tmp_path, day)
    recording = open_recording(day)
    live, local = live_decisions(config, recording)
    backtest = run_backtest(recording, config, Latency(0, 0), keep_decisions=100_000).decisions
    assert len(live) > 100  # the strategy trades on this slice
    assert local[L.ORDERS_SENT] == len(live)
    fields = ["instrument", "side", "price", "qty"]
    assert len(backtest) == len(live)
    for field in fields:
        assert np.array_equal(backtest[field], live[field]), field


def test_latency_changes_what_the_orders_meet(tmp_path, day):
    config = config_for(tmp_path, day)
    recording = open_recording(day)
    zero = run_backtest(recording, config, Latency(0, 0))
    slow = run_backtest(recording, config, Latency(0, 50_000_000))
    # the same decisions (the engine's view is not delayed) meet other books 50 ms later
    assert zero.stats["orders"] == slow.stats["orders"]
    assert zero.stats["filled_qty"] != slow.stats["filled_qty"] or (
        zero.stats["pnl"] != slow.stats["pnl"]
    )


def test_the_accounting_adds_up(tmp_path, day):
    config = config_for(tmp_path, day)
    result = run_backtest(open_recording(day), config, Latency(20_000, 50_000), taker_fee=0.01)
    s = result.stats
    assert s["fees"] == pytest.approx(0.01 * s["filled_qty"], abs=0.01)
    assert s["pnl"] == pytest.approx(s["realized_pnl"] + s["unrealized_pnl"] - s["fees"], abs=0.05)
    assert s["pnl"] == pytest.approx(result.curve[-1, 1], abs=0.01)
    assert 0 <= s["fill_ratio"] <= 1 and s["trades"] >= s["orders"] * s["fill_ratio"]
    equity = result.curve[:, 1]
    assert s["max_drawdown"] == pytest.approx(
        float((np.maximum.accumulate(equity) - equity).max()), abs=0.01
    )
    assert sum(int(v) for v in s["final_position"].values()) == result.curve[-1, 2]


@pytest.mark.parametrize(
    ("text", "ns"), [("0", 0), ("20us", 20_000), ("1.5ms", 1_500_000), ("300ns", 300), ("2s", 2e9)]
)
def test_durations(text, ns):
    assert parse_duration_ns(text, "--latency order") == ns


def test_the_report_and_the_cli(tmp_path, day):
    report = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "backtest",
            "--data",
            str(day),
            "--latency",
            "feed=20us,order=50us",
            "--fees",
            "taker=0.003",
            "--report",
            str(report),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    on_disk = json.loads((report / "stats.json").read_text())
    for key in ("pnl", "max_drawdown", "sharpe", "trades", "fill_ratio", "events_per_s"):
        assert key in stats and on_disk[key] == stats[key]
    assert {s["order_ns"] for s in on_disk["latency_sensitivity"]} >= {0, 50_000, 20_000_000}
    for png in ("equity.png", "pnl_by_hour.png", "latency_sensitivity.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "P&L after fees" in (report / "summary.md").read_text()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "backtest",
            "--data",
            str(day),
            "--latency",
            "feed=fast",
            "--report",
            str(tmp_path / "r2"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "'fast' is not a duration" in bad.stderr
    assert not (tmp_path / "r2").exists()
