"""Backtests on the live kernels: would this strategy, at this latency, have made money?

One numba loop replays a version-2 recording twice over, as the two sides of a wire:

- the **exchange** applies the recorded order events to the order-level book
  (``service.kernels.order_book``) at their historical times;
- the **engine** sees the market data those events imply (``recording.market_data_of``)
  ``feed`` ns late and runs the live engine's own decision kernel on each message
  (``service.kernels.stages.engine_on_message``: book, features, model, strategy, risk);
- each accepted order reaches the exchange ``order`` ns after the decision and, like any
  limit order, first takes what it crosses: it walks the exchange's book up to its limit price
  (the book as recorded: no market impact), paying the taker fee. An immediate-or-cancel order
  (``[engine] order_style = "take"``) then ends; a joined one (``"join"``, ``ORDER_POST``)
  rests for ``order_ttl_us`` at the back of its level's queue: the volume that was there when it
  arrived is ahead of it. It fills (at its price, paying the maker fee) only once that volume
  has traded or cancelled: an execution at its level of an order behind it (the recorded
  aggressor would have met it first), an execution on its side beyond its price, or an order
  added on the other side at or through its price. Its report, with everything it filled,
  returns when it is filled or its time is up. Each report reaches the engine ``order`` ns
  later and moves the risk state as a live fill would.

Accounting (per instrument and in total): cash, position, average-cost realized P&L, P&L
marked to the exchange's mid, fees per share (a negative maker fee is a rebate), turnover, an
equity curve sampled every ``curve_step_ns`` of recorded time. ``stats`` derives drawdown,
Sharpe and the rest from it.
"""

from __future__ import annotations

import time
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from contracts.errors import LowlatError
from contracts.records import (
    ASK,
    BID,
    BUY,
    LEVEL,
    ORDER,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
    ORDER_POST,
)
from service.config import Config
from service.kernels import order_book as ob_mod
from service.kernels.jit import inline_kernel, kernel
from service.kernels.risk import ACCEPTED, risk_on_execution
from service.kernels.stages import (
    E_DECISIONS,
    E_NEXT_ORDER_ID,
    E_ORDER_FLAGS,
    E_ORDER_QTY,
    engine_on_message,
    log_decision,
)
from service.runtime.recording import Recording
from service.runtime.state import new_engine_state, pre_touch

NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

# Account arrays, per instrument: acct[A_*, inst]
A_POSITION, A_CASH, A_AVG_COST, A_REALIZED, A_FEES, A_TURNOVER, A_MID = range(7)
N_ACCT = 7
# counters[C_*]
C_ORDERS, C_FILLED_ORDERS, C_FILLS, C_FILLED_QTY, C_REJECTS, C_MESSAGES, C_CURVE = range(7)
C_RESTED = 7  # joined orders that rested on the book
C_MAKER_QTY = 8  # quantity filled while resting (maker)
C_EXPIRED = 9  # resting orders whose time ran out before they were wholly filled
C_STOP = 10  # why the run stopped early: STOP_* (0: it did not)
C_STOP_AT = 11  # the event (STOP_BOOK) at which it stopped
C_STOP_STATUS = 12  # the order book's E_* status (STOP_BOOK)
N_COUNTERS = 13
STOP_WIRE_FULL, STOP_RESTING_FULL, STOP_BOOK = 1, 2, 3

Wire = namedtuple(
    "Wire",
    "arrive inst side price qty post report_at report_inst report_side report_qty "
    "report_filled heads",
)
Wire.__doc__ = "Orders in flight to the exchange and reports in flight back: FIFO rings."
W_ORDER_HEAD, W_ORDER_TAIL, W_REPORT_HEAD, W_REPORT_TAIL = range(4)

Resting = namedtuple("Resting", "inst side price qty left ahead prio expire count")
Resting.__doc__ = """Joined orders resting on the exchange's book, ``count[0]`` of them: the
quantity ordered and left, the volume ahead in the queue, the book's priority stamp at
arrival (orders stamped below it rest ahead), and when its time to live ends."""


def new_wire(capacity: int) -> Wire:
    def i64():
        return np.zeros(capacity, np.int64)

    return Wire._make([*(i64() for _ in range(11)), np.zeros(4, np.int64)])


def new_resting(capacity: int) -> Resting:
    return Resting._make([*(np.zeros(capacity, np.int64) for _ in range(8)), np.zeros(1, np.int64)])


@inline_kernel
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


@inline_kernel
def _execute(ob, acct, counters, inst, side, limit, qty, tick_value, fee):  # noqa: PLR0913
    """An order arrives: walk the opposite side up to ``limit``; returns the filled qty."""
    opposite = ASK if side == BUY else BID
    remaining = qty
    for k in range(ob.n_ranked[inst, opposite]):
        lv = ob_mod.ob_level_at(ob, inst, opposite, k)
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
    return filled


@inline_kernel
def _mark(ob, acct, inst):
    """The exchange's mid for ``inst`` (ticks), kept when a side is empty."""
    if ob.n_ranked[inst, BID] > 0 and ob.n_ranked[inst, ASK] > 0:
        bid = ob.l_price[ob_mod.ob_level_at(ob, inst, BID, 0)]
        ask = ob.l_price[ob_mod.ob_level_at(ob, inst, ASK, 0)]
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


@inline_kernel
def _report(wire, at, inst, side, qty, filled):
    """An order's one report starts back to the engine, arriving at ``at``."""
    heads = wire.heads
    r = heads[W_REPORT_TAIL] % wire.arrive.shape[0]
    wire.report_at[r] = at
    wire.report_inst[r] = inst
    wire.report_side[r] = side
    wire.report_qty[r] = qty
    wire.report_filled[r] = filled
    heads[W_REPORT_TAIL] += 1


@inline_kernel
def _end_resting(rest, k, wire, counters, at):
    """Resting order ``k`` is done (filled, or its time is up): report it, drop it."""
    filled = rest.qty[k] - rest.left[k]
    _report(wire, at, rest.inst[k], rest.side[k], rest.qty[k], filled)
    counters[C_FILLED_ORDERS] += filled > 0
    n = rest.count[0] - 1
    for a in (rest.inst, rest.side, rest.price, rest.qty, rest.left, rest.ahead, rest.prio):
        a[k] = a[n]
    rest.expire[k] = rest.expire[n]
    rest.count[0] = n


@inline_kernel
def _maker_fill(rest, k, acct, counters, qty, tick_value, fee):  # noqa: PLR0913
    take = min(qty, rest.left[k])
    if take > 0:
        _account_fill(acct, rest.inst[k], rest.side[k], rest.price[k], take, tick_value, fee)
        rest.left[k] -= take
        counters[C_FILLS] += 1
        counters[C_FILLED_QTY] += take
        counters[C_MAKER_QTY] += take


@kernel
def _queue_after_event(rest, events, e, prio, before, after, wire, acct, counters, params):  # noqa: PLR0913
    """What recorded event ``events[e]`` (applied: level ``before`` -> ``after`` at its price;
    the book's stamp ``prio`` of the order it touched, NONE if anonymous) does to the orders
    resting at its instrument; the orders it fills wholly report. Out of line: only runs
    while orders rest, and the loop that calls it is inlined whole."""
    tick_value = params[3]
    fee = params[5]
    ev = events[e]
    kind = ev.kind
    inst = np.int64(ev.instrument)
    side = np.int64(ev.side)
    price = ev.price
    for k in range(rest.count[0]):
        if rest.inst[k] != inst or rest.left[k] == 0:
            continue
        own = rest.side[k]  # BUY rests on BID, SELL on ASK: the same numbers
        mine = rest.price[k]
        # how far beyond our price, for our side: > 0 is past us (worse for the book)
        beyond = (mine - price) if own == BID else (price - mine)
        if side == own and price == mine:
            removed = before - after
            if kind == LEVEL:  # a level taken from the source's book: only its total is known
                rest.ahead[k] = min(rest.ahead[k], after)
            elif kind == ORDER_EXECUTE and prio != ob_mod.NONE and prio >= rest.prio[k]:
                rest.ahead[k] = 0  # an order behind ours traded: the aggressor met ours first
                _maker_fill(rest, k, acct, counters, removed, tick_value, fee)
            elif kind in (ORDER_CANCEL, ORDER_DELETE, ORDER_EXECUTE) and (
                prio == ob_mod.NONE or prio < rest.prio[k]  # it was ahead of ours
            ):
                rest.ahead[k] = max(rest.ahead[k] - removed, 0)
        elif side == own and kind == ORDER_EXECUTE and beyond > 0:
            _maker_fill(rest, k, acct, counters, rest.left[k], tick_value, fee)  # swept past
        elif side != own and kind == ORDER_ADD and beyond <= 0:
            _maker_fill(rest, k, acct, counters, np.int64(ev.qty), tick_value, fee)  # crossed
    k = 0
    while k < rest.count[0]:  # report the orders that are now wholly filled
        if rest.left[k] == 0:
            _end_resting(rest, k, wire, counters, ev.time_ns + np.int64(params[1]))
        else:
            k += 1


@inline_kernel
def _arrive(ob, rest, wire, i, acct, counters, params):  # noqa: PLR0913
    """Order ``i`` of the wire reaches the exchange: it takes what it crosses; a joined
    order's rest joins the back of its level's queue, an IOC order's rest is cancelled.
    False when the resting pool is full."""
    order_latency = np.int64(params[1])
    tick_value = params[3]
    taker_fee = params[4]
    ttl = np.int64(params[6])
    inst = wire.inst[i]
    side = wire.side[i]
    price = wire.price[i]
    qty = wire.qty[i]
    filled = _execute(ob, acct, counters, inst, side, price, qty, tick_value, taker_fee)
    if wire.post[i] == 0 or filled == qty:
        _report(wire, wire.arrive[i] + order_latency, inst, side, qty, filled)
        counters[C_FILLED_ORDERS] += filled > 0
        return True
    n = rest.count[0]
    if n == rest.inst.shape[0]:
        return False
    rest.inst[n] = inst
    rest.side[n] = side
    rest.price[n] = price
    rest.qty[n] = qty
    rest.left[n] = qty - filled
    rest.ahead[n] = ob_mod.ob_level_qty(ob, inst, side, price)
    rest.prio[n] = ob.counters[ob_mod.C_STAMP]  # every order the book holds now is ahead
    rest.expire[n] = wire.arrive[i] + ttl
    rest.count[0] = n + 1
    counters[C_RESTED] += 1
    return True


@inline_kernel
def _expire(rest, wire, counters, at, order_latency):
    """The first resting order whose time is up at ``at`` is cancelled and reports."""
    for k in range(rest.count[0]):
        if rest.expire[k] == at:
            counters[C_EXPIRED] += 1
            _end_resting(rest, k, wire, counters, at + order_latency)
            return


@inline_kernel
def _next_expiry(rest):
    first = np.int64(1) << 62
    for k in range(rest.count[0]):
        first = min(first, rest.expire[k])
    return first


@inline_kernel
def _exchange_until(ob, events, e, until, wire, rest, acct, counters, params):  # noqa: PLR0913
    """Apply recorded events, arriving orders and resting orders' expiries in time order up to
    ``until`` (on a tie: events, then arrivals, then expiries: an order decided on an event
    arrives after it); returns the next event, or -1 when the run must stop (C_STOP says why).
    """
    heads = wire.heads
    order_latency = np.int64(params[1])
    capacity = wire.arrive.shape[0]
    never = np.int64(1) << 62
    while True:
        next_event = events[e].time_ns if e < events.shape[0] else never
        h = heads[W_ORDER_HEAD]
        next_order = wire.arrive[h % capacity] if h < heads[W_ORDER_TAIL] else never
        next_expiry = _next_expiry(rest) if rest.count[0] > 0 else never
        if next_event <= next_order and next_event <= next_expiry and next_event <= until:
            ev = events[e]
            inst = np.int64(ev.instrument)
            resting = rest.count[0] > 0
            prio = ob_mod.NONE
            before = np.int64(0)
            if resting:
                prio = ob_mod.ob_order_priority(ob, np.int64(ev.order_id))
                before = ob_mod.ob_level_qty(ob, inst, np.int64(ev.side), ev.price)
            status = ob_mod.ob_apply(ob, events, e)
            if status != ob_mod.OK:
                counters[C_STOP] = STOP_BOOK
                counters[C_STOP_AT] = e
                counters[C_STOP_STATUS] = status
                return -1
            if resting:
                after = ob_mod.ob_level_qty(ob, inst, np.int64(ev.side), ev.price)
                _queue_after_event(
                    rest, events, e, prio, before, after, wire, acct, counters, params
                )
            if inst < acct.shape[1]:
                _mark(ob, acct, inst)
            e += 1
        elif next_order <= next_expiry and next_order <= until:
            if not _arrive(ob, rest, wire, h % capacity, acct, counters, params):
                counters[C_STOP] = STOP_RESTING_FULL
                return -1
            heads[W_ORDER_HEAD] += 1
        elif next_expiry <= until:
            _expire(rest, wire, counters, next_expiry, order_latency)
        else:
            return e


@inline_kernel
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
    engine, ob, events, md, wire, rest, acct, counters, curve, params, order
):
    """Run the whole recording. ``params`` (float64): feed ns, order ns, curve step ns, tick
    value, taker and maker fee per share, a joined order's time to live ns. ``curve`` rows:
    time, equity, total position, realized. ``order`` is scratch (one ORDER record) for the
    decision log. Returns -1 when done, else the message at which it stopped (C_STOP: why)."""
    feed_latency = np.int64(params[0])
    order_latency = np.int64(params[1])
    step = np.int64(params[2])
    tick_value = params[3]
    capacity = wire.arrive.shape[0]
    e = 0
    next_sample = md[0].send_ns if md.shape[0] > 0 else 0
    n_curve = 0
    n_md = md.shape[0]
    # a backtest has no kill switch; a run-time bool as live passes, where a literal False
    # would type (and compile) the decision kernel a second time
    no_kill = n_md < 0
    for j in range(n_md + 1):  # one more pass: the rest of the day, orders still in flight
        # one call site: _exchange_until is inlined whole, and compiling it twice costs minutes
        now = md[j].send_ns + feed_latency if j < n_md else np.int64(1) << 61
        e = _exchange_until(ob, events, e, now, wire, rest, acct, counters, params)
        if e < 0:
            return j
        if j == n_md:
            break
        _take_reports(engine, wire, now)
        while next_sample <= md[j].send_ns and n_curve < curve.shape[0]:
            _sample(curve, n_curve, next_sample, acct, tick_value)
            n_curve += 1
            next_sample += step
        msg = md[j]
        inst = np.int64(msg.instrument)
        side, price, reason = engine_on_message(
            engine, inst, msg.kind, np.int64(msg.side), msg.price, np.int64(msg.qty), now, no_kill
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
            counters[C_STOP] = STOP_WIRE_FULL
            return j
        t = heads[W_ORDER_TAIL] % capacity
        qty = engine.ivars[E_ORDER_QTY]
        wire.arrive[t] = now + order_latency
        wire.inst[t] = inst
        wire.side[t] = side
        wire.price[t] = price
        wire.qty[t] = qty
        wire.post[t] = engine.ivars[E_ORDER_FLAGS] & ORDER_POST
        heads[W_ORDER_TAIL] += 1
        counters[C_ORDERS] += 1
        order[0].order_id = engine.ivars[E_NEXT_ORDER_ID]
        engine.ivars[E_NEXT_ORDER_ID] += 1
        order[0].tick_ns = msg.send_ns
        order[0].price = price
        order[0].qty = qty
        order[0].instrument = inst
        order[0].side = side
        order[0].flags = engine.ivars[E_ORDER_FLAGS]
        log_decision(engine, order[0])
    last = md[md.shape[0] - 1].send_ns if md.shape[0] > 0 else 0
    if n_curve < curve.shape[0]:
        _sample(curve, n_curve, max(last, next_sample - step), acct, tick_value)
        n_curve += 1
    counters[C_CURVE] = n_curve
    return -1


# ------------------------------------------------------------------------------ driver


class BacktestError(LowlatError, ValueError):
    """A recording or setting the backtest cannot run with (one line, exit 2)."""


@dataclass(frozen=True)
class Latency:
    feed_ns: int = 0
    order_ns: int = 0


@dataclass(frozen=True)
class Fees:
    """Dollars per share: ``taker`` for what an order takes on arrival, ``maker`` for what
    fills while it rests (negative: a rebate)."""

    taker: float = 0.0
    maker: float = 0.0


RESTING_CAPACITY = 4096  # joined orders resting at once, all instruments
WIRE_CAPACITY = 1 << 16  # orders (and reports) in flight at once


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
    fees: Fees = Fees(),
    curve_step_ns: int = 1_000_000_000,
    keep_decisions: int = 0,
) -> BacktestResult:
    """Backtest ``config``'s engine over ``recording`` (version 2) at ``latency``."""
    if recording.events is None:
        raise BacktestError(
            f"{recording.path}: a backtest needs order events to fill against (a version-2 "
            "recording, `trading-service import`); this is a version-1 L2 recording"
        )
    events = np.ascontiguousarray(recording.events)
    md = np.ascontiguousarray(recording.records)
    n = recording.n_instruments
    engine = new_engine_state(config, n, decisions=keep_decisions)
    pools = config.order_book
    book = ob_mod.new_order_book(n, pools.max_orders, pools.max_levels)
    tick_value = recording.tick_nano / 1e9 if recording.tick_nano else config.risk.tick_size
    span = int(md["send_ns"][-1] - md["send_ns"][0]) if len(md) else 0
    curve = np.zeros((span // curve_step_ns + 3, 4), np.float64)
    ttl_ns = config.engine.order_ttl_us * 1000
    params = np.array(
        [
            latency.feed_ns,
            latency.order_ns,
            curve_step_ns,
            tick_value,
            fees.taker,
            fees.maker,
            ttl_ns,
        ],
        np.float64,
    )
    acct = np.zeros((N_ACCT, n), np.float64)
    counters = np.zeros(N_COUNTERS, np.int64)
    wire = new_wire(WIRE_CAPACITY)
    rest = new_resting(RESTING_CAPACITY)
    order = np.zeros(1, dtype=ORDER)
    _compile(config, events, md, n, params)
    # as the live stages do: no first-touch page fault inside the run (the book's pools and
    # the wire are megabytes of np.zeros, mapped on first write)
    pre_touch((engine, book, wire, rest, acct, counters, curve))
    started = time.perf_counter()
    stopped_at = backtest_kernel(
        engine, book, events, md, wire, rest, acct, counters, curve, params, order
    )
    wall = time.perf_counter() - started
    if stopped_at >= 0:
        raise BacktestError(_stop_reason(recording, config, counters, events, stopped_at))
    curve = curve[: counters[C_CURVE]]
    stats = _stats(curve, acct, counters, events, md, wall, latency, fees, tick_value)
    return BacktestResult(stats, curve, engine.decisions[: engine.ivars[E_DECISIONS]].copy())


def _stop_reason(recording: Recording, config: Config, counters, events, message: int) -> str:
    where = f"{recording.path}: message {message + 1}"
    why = counters[C_STOP]
    if why == STOP_WIRE_FULL:
        return (
            f"{where}: more than {WIRE_CAPACITY} orders in flight; the order latency is "
            "longer than the strategy's pace allows"
        )
    if why == STOP_RESTING_FULL:
        return (
            f"{where}: more than {RESTING_CAPACITY} joined orders resting at once; shorten "
            "[engine] order_ttl_us or slow the strategy"
        )
    event = int(counters[C_STOP_AT])
    pools = config.order_book
    return (
        f"{recording.path}: event {event + 1} cannot be applied to the book: "
        + ob_mod.refusal_text(
            int(counters[C_STOP_STATUS]),
            pools.max_orders,
            pools.max_levels,
            "[order_book] max_orders",
            "[order_book] max_levels",
        )
    )


def _compile(config: Config, events, md, n: int, params) -> None:
    """Compile (or load) the kernel on a few messages, so that the timed run is the run."""
    k = min(len(md), 64)
    backtest_kernel(
        new_engine_state(config, n),
        ob_mod.new_order_book(n, 1024, 64),
        events[:k],
        md[:k],
        new_wire(16),
        new_resting(16),
        np.zeros((N_ACCT, n), np.float64),
        np.zeros(N_COUNTERS, np.int64),
        np.zeros((2, 4), np.float64),
        params,
        np.zeros(1, dtype=ORDER),
    )


def _stats(curve, acct, counters, events, md, wall, latency, fees, tick_value) -> dict:  # noqa: PLR0913
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
        "taker_fee_per_share": fees.taker,
        "maker_fee_per_share": fees.maker,
        "rested_orders": int(counters[C_RESTED]),
        "expired_orders": int(counters[C_EXPIRED]),
        "maker_qty": int(counters[C_MAKER_QTY]),
    }
