"""Backtests on the live kernels: would this strategy, at this latency, have made money?

One numba loop replays a version-2 recording twice over, as the two sides of a wire:

- the **exchange** applies the recorded order events to the order-level book
  (``service.kernels.order_book``) at their historical times;
- the **engine** sees the market data those events imply (``recording.market_data_of``)
  ``feed`` ns late and runs the live engine's own decision kernel on each message
  (``service.kernels.stages.engine_on_message``: book, features, model, strategy, risk);
- each accepted order reaches the exchange ``order`` ns after the decision. The live strategy
  sends immediate-or-cancel orders that take liquidity at the best opposite price it saw, so
  at arrival the order walks the exchange's book up to its limit price (the book as recorded:
  no market impact) and the rest is cancelled; its one report returns to the engine ``order``
  ns later and moves the risk state as a live fill would.

Accounting (per instrument and in total): cash, position, average-cost realized P&L, P&L
marked to the exchange's mid, taker fees per share, turnover, an equity curve sampled every
``curve_step_ns`` of recorded time. ``stats`` derives drawdown, Sharpe and the rest from it.
"""

from __future__ import annotations

import time
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from contracts.records import ASK, BID, BUY, ORDER
from service.config import Config
from service.kernels import order_book as ob_mod
from service.kernels.jit import kernel
from service.kernels.risk import ACCEPTED, risk_on_execution
from service.kernels.stages import (
    E_DECISIONS,
    E_NEXT_ORDER_ID,
    E_ORDER_QTY,
    engine_on_message,
    log_decision,
)
from service.runtime.recording import Recording
from service.runtime.state import new_engine_state

NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

# Account arrays, per instrument: acct[A_*, inst]
A_POSITION, A_CASH, A_AVG_COST, A_REALIZED, A_FEES, A_TURNOVER, A_MID = range(7)
N_ACCT = 7
# counters[C_*]
C_ORDERS, C_FILLED_ORDERS, C_FILLS, C_FILLED_QTY, C_REJECTS, C_MESSAGES, C_CURVE = range(7)
N_COUNTERS = 8

Wire = namedtuple(
    "Wire",
    "arrive inst side price qty report_at report_inst report_side report_qty report_filled heads",
)
Wire.__doc__ = "Orders in flight to the exchange and reports in flight back: FIFO rings."
W_ORDER_HEAD, W_ORDER_TAIL, W_REPORT_HEAD, W_REPORT_TAIL = range(4)


def new_wire(capacity: int) -> Wire:
    def i64():
        return np.zeros(capacity, np.int64)

    return Wire(
        i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64(), np.zeros(4, np.int64)
    )


@kernel
def _account_fill(acct, inst, side, price, qty, tick_value, fee):  # noqa: PLR0913
    """Book one fill: position, cash, average cost, realized P&L, fees, turnover."""
    signed = qty if side == BUY else -qty
    pos = acct[A_POSITION, inst]
    value = price * tick_value
    if pos == 0 or (pos > 0) == (signed > 0):  # opening or adding: a new average
        acct[A_AVG_COST, inst] = (acct[A_AVG_COST, inst] * abs(pos) + value * qty) / (
            abs(pos) + qty
        )
    else:  # closing, perhaps through zero
        closed = min(abs(pos), qty)
        direction = 1.0 if pos > 0 else -1.0
        acct[A_REALIZED, inst] += (value - acct[A_AVG_COST, inst]) * closed * direction
        if qty > abs(pos):
            acct[A_AVG_COST, inst] = value
    acct[A_POSITION, inst] = pos + signed
    acct[A_CASH, inst] -= signed * value
    acct[A_FEES, inst] += fee * qty
    acct[A_TURNOVER, inst] += value * qty


@kernel
def _execute(ob, acct, counters, inst, side, limit, qty, tick_value, fee):  # noqa: PLR0913
    """An IOC order arrives: walk the opposite side up to ``limit``; returns the filled qty."""
    opposite = ASK if side == BUY else BID
    remaining = qty
    for k in range(ob.n_ranked[inst, opposite]):
        lv = ob.ranked[inst, opposite, k]
        price = ob.l_price[lv]
        if (side == BUY and price > limit) or (side != BUY and price < limit):
            break
        take = min(remaining, ob.l_qty[lv])
        if take > 0:
            _account_fill(acct, inst, side, price, take, tick_value, fee)
            counters[C_FILLS] += 1
            remaining -= take
        if remaining == 0:
            break
    filled = qty - remaining
    counters[C_FILLED_QTY] += filled
    counters[C_FILLED_ORDERS] += filled > 0
    return filled


@kernel
def _mark(ob, acct, inst):
    """The exchange's mid for ``inst`` (ticks), kept when a side is empty."""
    if ob.n_ranked[inst, BID] > 0 and ob.n_ranked[inst, ASK] > 0:
        bid = ob.l_price[ob.ranked[inst, BID, 0]]
        ask = ob.l_price[ob.ranked[inst, ASK, 0]]
        acct[A_MID, inst] = 0.5 * (bid + ask)


@kernel
def _equity(acct, tick_value):
    total = 0.0
    for inst in range(acct.shape[1]):
        total += acct[A_CASH, inst] + acct[A_POSITION, inst] * acct[A_MID, inst] * tick_value
        total -= acct[A_FEES, inst]
    return total


@kernel
def _sample(curve, n, at, acct, tick_value):
    """Row ``n`` of the equity curve: time, equity, total position, realized P&L."""
    pos = 0.0
    realized = 0.0
    for inst in range(acct.shape[1]):
        pos += acct[A_POSITION, inst]
        realized += acct[A_REALIZED, inst]
    curve[n, 0] = at
    curve[n, 1] = _equity(acct, tick_value)
    curve[n, 2] = pos
    curve[n, 3] = realized


@kernel
def _exchange_until(ob, events, e, until, wire, acct, counters, tick_value, fee, order_latency):  # noqa: PLR0913
    """Apply recorded events and arriving orders in time order up to ``until`` (events
    first on a tie: an order decided on an event arrives after it); returns the next event."""
    heads = wire.heads
    while True:
        next_event = events[e].time_ns if e < events.shape[0] else np.int64(1) << 62
        h = heads[W_ORDER_HEAD]
        capacity = wire.arrive.shape[0]
        next_order = wire.arrive[h % capacity] if h < heads[W_ORDER_TAIL] else np.int64(1) << 62
        if next_event <= next_order and next_event <= until:
            ob_mod.ob_apply(ob, events, e)
            inst = np.int64(events[e].instrument)
            if inst < acct.shape[1]:
                _mark(ob, acct, inst)
            e += 1
        elif next_order <= until:
            i = h % capacity
            inst = wire.inst[i]
            filled = _execute(
                ob, acct, counters, inst, wire.side[i], wire.price[i], wire.qty[i], tick_value, fee
            )
            r = heads[W_REPORT_TAIL] % capacity
            wire.report_at[r] = wire.arrive[i] + order_latency
            wire.report_inst[r] = inst
            wire.report_side[r] = wire.side[i]
            wire.report_qty[r] = wire.qty[i]
            wire.report_filled[r] = filled
            heads[W_REPORT_TAIL] += 1
            heads[W_ORDER_HEAD] += 1
        else:
            return e


@kernel
def _take_reports(engine, wire, now):
    """Reports due by ``now`` reach the engine's risk state, as live fills do."""
    heads = wire.heads
    while heads[W_REPORT_HEAD] < heads[W_REPORT_TAIL]:
        r = heads[W_REPORT_HEAD] % wire.arrive.shape[0]
        if wire.report_at[r] > now:
            return
        risk_on_execution(
            engine.risk,
            wire.report_inst[r],
            wire.report_side[r],
            wire.report_qty[r],
            wire.report_filled[r],
        )
        heads[W_REPORT_HEAD] += 1


@kernel
def backtest_kernel(  # noqa: PLR0913 -- the run's arrays: numba takes no objects
    engine, ob, events, md, wire, acct, counters, curve, params, order
):
    """Run the whole recording. ``params``: feed ns, order ns, curve step ns, tick value,
    fee per share (float64). ``curve`` rows: time, equity, total position, realized.
    ``order`` is scratch (one ORDER record) for the decision log. Returns -1 when done, or
    the index of the message at which the wire was full."""
    feed_latency = np.int64(params[0])
    order_latency = np.int64(params[1])
    step = np.int64(params[2])
    tick_value = params[3]
    fee = params[4]
    capacity = wire.arrive.shape[0]
    e = 0
    next_sample = md[0].send_ns if md.shape[0] > 0 else 0
    n_curve = 0
    for j in range(md.shape[0]):
        now = md[j].send_ns + feed_latency
        e = _exchange_until(
            ob, events, e, now, wire, acct, counters, tick_value, fee, order_latency
        )
        _take_reports(engine, wire, now)
        while next_sample <= md[j].send_ns and n_curve < curve.shape[0]:
            _sample(curve, n_curve, next_sample, acct, tick_value)
            n_curve += 1
            next_sample += step
        msg = md[j]
        inst = np.int64(msg.instrument)
        side, price, reason = engine_on_message(
            engine, inst, msg.kind, np.int64(msg.side), msg.price, np.int64(msg.qty), now, False
        )
        counters[C_MESSAGES] += 1
        if side < 0:
            continue
        if reason != ACCEPTED:
            counters[C_REJECTS] += 1
            continue
        heads = wire.heads
        if heads[W_ORDER_TAIL] - heads[W_ORDER_HEAD] >= capacity or (
            heads[W_REPORT_TAIL] - heads[W_REPORT_HEAD] >= capacity
        ):
            return j
        t = heads[W_ORDER_TAIL] % capacity
        qty = engine.ivars[E_ORDER_QTY]
        wire.arrive[t] = now + order_latency
        wire.inst[t] = inst
        wire.side[t] = side
        wire.price[t] = price
        wire.qty[t] = qty
        heads[W_ORDER_TAIL] += 1
        counters[C_ORDERS] += 1
        order[0].order_id = engine.ivars[E_NEXT_ORDER_ID]
        engine.ivars[E_NEXT_ORDER_ID] += 1
        order[0].tick_ns = msg.send_ns
        order[0].price = price
        order[0].qty = qty
        order[0].instrument = inst
        order[0].side = side
        order[0].flags = 0
        log_decision(engine, order[0])
    # the rest of the day: orders still in flight arrive, reports come back
    _exchange_until(
        ob, events, e, np.int64(1) << 61, wire, acct, counters, tick_value, fee, order_latency
    )
    last = md[md.shape[0] - 1].send_ns if md.shape[0] > 0 else 0
    if n_curve < curve.shape[0]:
        _sample(curve, n_curve, max(last, next_sample - step), acct, tick_value)
        n_curve += 1
    counters[C_CURVE] = n_curve
    return -1


# ------------------------------------------------------------------------------ driver


@dataclass(frozen=True)
class Latency:
    feed_ns: int = 0
    order_ns: int = 0


def parse_duration_ns(text: str, where: str) -> int:
    """'20us', '1.5ms', '0', '300ns' -> ns; ValueError naming ``where`` otherwise."""
    value = text.strip().lower()
    for unit in ("ns", "us", "ms", "s"):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return round(float(value[: -len(unit)]) * NS[unit])
    if value.replace(".", "", 1).isdigit() and float(value) == 0:
        return 0
    raise ValueError(f"{where}: {text!r} is not a duration; write e.g. 20us, 1.5ms, 300ns or 0")


@dataclass
class BacktestResult:
    stats: dict
    curve: np.ndarray  # rows: time ns after midnight, equity $, position, realized $
    decisions: np.ndarray  # ORDER records of the accepted orders, in order


def run_backtest(
    recording: Recording,
    config: Config,
    latency: Latency = Latency(),
    *,
    taker_fee: float = 0.0,
    curve_step_ns: int = 1_000_000_000,
    keep_decisions: int = 0,
) -> BacktestResult:
    """Backtest ``config``'s engine over ``recording`` (version 2) at ``latency``."""
    if recording.events is None:
        raise ValueError(
            f"{recording.path}: a backtest needs order events to fill against (a version-2 "
            "recording, `trading-service import`); this is a version-1 L2 recording"
        )
    events = np.ascontiguousarray(recording.events)
    md = np.ascontiguousarray(recording.records)
    n = recording.n_instruments
    engine = new_engine_state(config, n, decisions=keep_decisions)
    book = ob_mod.new_order_book(n, 1 << 20, 4096)
    tick_value = recording.tick_nano / 1e9 if recording.tick_nano else config.risk.tick_size
    span = int(md["send_ns"][-1] - md["send_ns"][0]) if len(md) else 0
    curve = np.zeros((span // curve_step_ns + 3, 4), np.float64)
    params = np.array(
        [latency.feed_ns, latency.order_ns, curve_step_ns, tick_value, taker_fee], np.float64
    )
    acct = np.zeros((N_ACCT, n), np.float64)
    counters = np.zeros(N_COUNTERS, np.int64)
    wire = new_wire(1 << 16)
    order = np.zeros(1, dtype=ORDER)
    _compile(config, events, md, n, params)
    started = time.perf_counter()
    stopped_at = backtest_kernel(
        engine, book, events, md, wire, acct, counters, curve, params, order
    )
    wall = time.perf_counter() - started
    if stopped_at >= 0:
        raise ValueError(
            f"{recording.path}: more than {len(wire.arrive)} orders in flight at message "
            f"{stopped_at}; the order latency is longer than the strategy's pace allows"
        )
    curve = curve[: counters[C_CURVE]]
    stats = _stats(curve, acct, counters, events, md, wall, latency, taker_fee, tick_value)
    return BacktestResult(stats, curve, engine.decisions[: engine.ivars[E_DECISIONS]].copy())


def _compile(config: Config, events, md, n: int, params) -> None:
    """Compile (or load) the kernel on a few messages, so that the timed run is the run."""
    k = min(len(md), 64)
    backtest_kernel(
        new_engine_state(config, n),
        ob_mod.new_order_book(n, 1024, 64),
        events[:k],
        md[:k],
        new_wire(16),
        np.zeros((N_ACCT, n), np.float64),
        np.zeros(N_COUNTERS, np.int64),
        np.zeros((2, 4), np.float64),
        params,
        np.zeros(1, dtype=ORDER),
    )


def _stats(curve, acct, counters, events, md, wall, latency, taker_fee, tick_value) -> dict:  # noqa: PLR0913
    equity = curve[:, 1] if len(curve) else np.zeros(1)
    drawdown = np.maximum.accumulate(equity) - equity
    per_minute = np.diff(equity[::60]) if len(equity) > 60 else np.diff(equity)
    sd = float(per_minute.std()) if len(per_minute) > 1 else 0.0
    sharpe = float(per_minute.mean() / sd) if sd > 0 else 0.0
    orders = int(counters[C_ORDERS])
    mid = acct[A_MID]
    unrealized = acct[A_POSITION] * (mid * tick_value - acct[A_AVG_COST])
    pnl = float(equity[-1])
    return {
        "pnl": round(pnl, 2),
        "realized_pnl": round(float(acct[A_REALIZED].sum()), 2),
        "unrealized_pnl": round(float(unrealized.sum()), 2),
        "fees": round(float(acct[A_FEES].sum()), 2),
        "max_drawdown": round(float(drawdown.max()), 2),
        "sharpe": round(sharpe, 4),
        "sharpe_period": "1 minute of recorded time (mean / std of the equity's changes)",
        "trades": int(counters[C_FILLS]),
        "orders": orders,
        "rejected_by_risk": int(counters[C_REJECTS]),
        "fill_ratio": round(int(counters[C_FILLED_ORDERS]) / orders, 4) if orders else 0.0,
        "filled_qty": int(counters[C_FILLED_QTY]),
        "turnover": round(float(acct[A_TURNOVER].sum()), 2),
        "final_position": {str(i): int(p) for i, p in enumerate(acct[A_POSITION])},
        "pnl_by_instrument": {
            str(i): round(
                float(
                    acct[A_CASH, i] + acct[A_POSITION, i] * mid[i] * tick_value - acct[A_FEES, i]
                ),
                2,
            )
            for i in range(acct.shape[1])
        },
        "events": len(events),
        "messages": int(counters[C_MESSAGES]),
        "events_per_s": round(len(events) / wall) if wall > 0 else None,
        "wall_s": round(wall, 4),
        "latency_ns": {"feed": latency.feed_ns, "order": latency.order_ns},
        "taker_fee_per_share": taker_fee,
    }
