"""Backtests on the live kernels: parity with the live loop, accounting, the report."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
import pytest

from contracts import stats_layout as L
from contracts.records import (
    ASK,
    BID,
    BUY,
    MARKET_EVENT,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
    ORDER_POST,
)
from contracts.stages import ALL_STAGES
from service.config import load
from service.kernels import order_book as ob
from service.kernels import stages as S
from service.kernels.risk import risk_check, risk_on_execution
from service.research import backtest as B
from service.research.backtest import Fees, Latency, parse_duration_ns, run_backtest
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
    # and from one compiled decision: the backtest types the risk kernels as live does
    for fn in (risk_check, risk_on_execution):
        assert len(fn.signatures) == 1, (fn.__name__, fn.signatures)


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
    result = run_backtest(
        open_recording(day), config, Latency(20_000, 50_000), fees=Fees(taker=0.01)
    )
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


# --------------------------------------------------------------------------------------------
# The passive (joined) order's queue


def _events(rows):
    """MARKET_EVENTs from (time ns, kind, side, order id, price, qty) rows."""
    out = np.zeros(len(rows), MARKET_EVENT)
    for i, (t, kind, side, oid, price, qty) in enumerate(rows):
        out[i]["seq"], out[i]["time_ns"], out[i]["kind"], out[i]["side"] = i + 1, t, kind, side
        out[i]["order_id"], out[i]["price"], out[i]["qty"] = oid, price, qty
    return out


def _exchange_with_one_joined_buy(rows, arrive=150, ttl=10_000, qty=4):
    """Replay ``rows`` against a joined BUY of ``qty`` at 100 arriving at ``arrive``; returns
    (counters, account, the wire's reports as (at, filled))."""
    events = _events(rows)
    book = ob.new_order_book(1, 64, 16)
    wire, rest = B.new_wire(16), B.new_resting(16)
    wire.arrive[0], wire.inst[0], wire.side[0], wire.price[0], wire.qty[0] = (
        arrive,
        0,
        BUY,
        100,
        qty,
    )
    wire.post[0] = ORDER_POST
    wire.heads[B.W_ORDER_TAIL] = 1
    acct, counters = np.zeros((B.N_ACCT, 1)), np.zeros(B.N_COUNTERS, np.int64)
    # feed, order latency 7 ns, curve step, tick value $0.01, taker $0.003, maker -$0.002, ttl
    params = np.array([0, 7, 1e9, 0.01, 0.003, -0.002, ttl], np.float64)
    assert B._exchange_until(book, events, 0, 1 << 40, wire, rest, acct, counters, params) == len(
        events
    )
    n = wire.heads[B.W_REPORT_TAIL]
    return counters, acct, [(int(wire.report_at[r]), int(wire.report_filled[r])) for r in range(n)]


OPEN = [  # orders 1 (3 lots) and 2 (2 lots) bid at 100 before ours arrives; an ask at 102
    (100, ORDER_ADD, BID, 1, 100, 3),
    (110, ORDER_ADD, BID, 2, 100, 2),
    (120, ORDER_ADD, ASK, 9, 102, 5),
]


def test_a_joined_order_waits_for_the_volume_ahead_of_it_and_fills_as_maker():
    rows = [
        *OPEN,
        (200, ORDER_ADD, BID, 3, 100, 6),  # behind ours
        (300, ORDER_CANCEL, BID, 3, 100, 1),  # behind: nothing moves for us
        (400, ORDER_EXECUTE, BID, 1, 100, 3),  # ahead: 5 -> 2 ahead
        (500, ORDER_DELETE, BID, 2, 100, 2),  # ahead: 2 -> 0
        (600, ORDER_EXECUTE, BID, 3, 100, 3),  # behind ours: the aggressor met ours first
        (700, ORDER_EXECUTE, BID, 3, 100, 2),  # the last lot of ours, then order 3's
    ]
    counters, acct, reports = _exchange_with_one_joined_buy(rows)
    assert counters[B.C_RESTED] == 1 and counters[B.C_MAKER_QTY] == 4
    assert counters[B.C_FILLS] == 2 and counters[B.C_EXPIRED] == 0
    assert reports == [(707, 4)]  # one report, when wholly filled, an order latency later
    assert acct[B.A_POSITION, 0] == 4
    assert acct[B.A_FEES, 0] == pytest.approx(-0.002 * 4)  # a rebate
    assert acct[B.A_CASH, 0] == pytest.approx(-4 * 100 * 0.01)


def test_a_joined_order_that_never_reaches_the_front_expires_unfilled():
    rows = [
        *OPEN,
        (200, ORDER_EXECUTE, BID, 1, 100, 2),  # ahead: 5 -> 3, never 0
        (300, ORDER_CANCEL, BID, 2, 100, 1),
        (90_000, ORDER_EXECUTE, BID, 1, 100, 1),
    ]
    counters, acct, reports = _exchange_with_one_joined_buy(rows, ttl=10_000)
    assert counters[B.C_MAKER_QTY] == 0 and counters[B.C_EXPIRED] == 1
    assert reports == [(150 + 10_000 + 7, 0)]  # cancelled when its time was up
    assert acct[B.A_POSITION, 0] == 0


def test_a_joined_order_is_filled_when_the_market_trades_through_or_crosses_it():
    deeper = (130, ORDER_ADD, BID, 77, 99, 1)  # a bid below ours
    through = (200, ORDER_EXECUTE, BID, 77, 99, 1)  # a sell swept past 100 to reach it
    counters, _, reports = _exchange_with_one_joined_buy([*OPEN, deeper, through])
    assert counters[B.C_MAKER_QTY] == 4 and reports == [(207, 4)]
    crossed = [*OPEN, (200, ORDER_ADD, ASK, 8, 100, 3)]  # a sell at our price: it met ours
    counters, _, reports = _exchange_with_one_joined_buy(crossed)
    assert counters[B.C_MAKER_QTY] == 3 and counters[B.C_EXPIRED] == 1
    assert reports == [(150 + 10_000 + 7, 3)]


def test_a_joined_order_that_crosses_on_arrival_takes_first_then_rests():
    rows = [(100, ORDER_ADD, ASK, 9, 100, 1), (110, ORDER_ADD, BID, 1, 99, 2)]
    counters, acct, reports = _exchange_with_one_joined_buy(rows, qty=3)
    assert counters[B.C_FILLED_QTY] == 1 and counters[B.C_MAKER_QTY] == 0  # 1 taken at 100
    assert acct[B.A_FEES, 0] == pytest.approx(0.003)
    assert counters[B.C_RESTED] == 1 and reports == [(150 + 10_000 + 7, 1)]


def test_join_mode_on_the_day_rests_orders_and_pays_maker_fees(tmp_path, day):
    config = config_for(tmp_path, day, '[engine]\norder_style = "join"\norder_ttl_us = 5000\n')
    s = run_backtest(
        open_recording(day), config, Latency(20_000, 50_000), fees=Fees(0.003, -0.002)
    ).stats
    assert s["rested_orders"] > 0 and s["maker_qty"] > 0
    assert s["expired_orders"] <= s["rested_orders"]
    taken = s["filled_qty"] - s["maker_qty"]
    assert s["fees"] == pytest.approx(0.003 * taken - 0.002 * s["maker_qty"], abs=0.01)
