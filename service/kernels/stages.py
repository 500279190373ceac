"""The hot path: the three stages and the loop that runs them, all numba, in one module.

::

    feed ──ring md──► engine (book ► features ► model ► strategy ► risk) ──ring orders──►
    gateway (batcher ► simulated exchange) ──ring fills──► engine (positions)

The feed is the simulator, a recording, or the exchange's UDP feed (``udp_feed``). Each
``*_step`` does a bounded amount of work and returns; ``run_loop`` calls the steps of the
stages that share its core (one stage per core on a host, all three fused on a small machine)
until they have all drained, publishing counters every ``stats_interval_ns``. Nothing here
allocates or touches a Python object: all state is numpy arrays created by ``new_*_state``.

Latency is measured from each message's *intended* send time (``send_ns``), not from when it
was actually published, so a stage that falls behind shows up in the figures instead of
slowing the clock that measures it (no coordinated omission).

Stopping drains the pipeline front to back: the supervisor sets ``STOP``; the feed stops and
sets ``FEED_DONE``; the engine, once the market-data ring is empty after ``FEED_DONE``, sends no
more orders and sets ``ENGINE_DONE``; the gateway flushes what it holds and sets
``GATEWAY_DONE``; the engine then takes the last fills and finishes. Deadlock-free because the
engine always drains fills before anything else and the gateway never waits on the engine.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts import segments as C
from contracts import stats_layout as L
from contracts.records import (
    CANCELLED,
    FILLED,
    LEVEL,
    ORDER_POST,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    TRADE,
)
from contracts.stages import ENGINE, ENGINE_BIT, FEED_BIT, GATEWAY, GATEWAY_BIT, N_STAGES
from service.kernels.atomics import (
    load_acquire,
    load_relaxed,
    monotonic_ns,
    store_relaxed,
    store_release,
)
from service.kernels.book import book_reset, book_set_level
from service.kernels.feed import sim_next, sim_next_interval_ns
from service.kernels.histogram import hist_record
from service.kernels.jit import inline_kernel, kernel
from service.kernels.market import publish_market
from service.kernels.order_entry import (
    O_BROKEN,
    O_CANCELED,
    O_CONNECTS,
    O_ENTERED,
    O_FILLED,
    O_ON,
    O_OPEN,
    O_REJECTED,
    O_RESENT,
    O_SESSION,
    SESSION_READY,
    order_entry_enter,
    order_entry_gone,
    order_entry_poll,
    order_entry_send,
)
from service.kernels.ring import (
    ring_claim,
    ring_occupancy,
    ring_publish,
    ring_read_slot,
    ring_readable,
    ring_release,
    ring_write_slot,
)
from service.kernels.risk import ACCEPTED, risk_check, risk_on_execution
from service.kernels.seqlock import publish_section
from service.kernels.signals import (
    model_linear,
    strategy_decide_between,
    strategy_order_price,
    update_book_features,
    update_trade_flow,
)
from service.kernels.udp_feed import U_FD, udp_feed_step

BATCH = 64  # most records a step moves at once: bounds the time between two heartbeats

Rings = namedtuple("Rings", "md orders fills")
FeedState = namedtuple("FeedState", "sim replay scratch ivars fvars net")
EngineState = namedtuple(
    "EngineState",
    "book features model limits risk last_signal stale snap_clean ivars fvars decisions",
)
GatewayState = namedtuple("GatewayState", "batch pop_ns ivars fvars slo_ns net")

# FeedState.ivars / fvars
F_NEXT_SEQ, F_REPLAY_POS = 0, 1
F_NEXT_NS, F_INTERVAL_NS = 0, 1  # intended time of the next message; 0 interval = flat out
F_SPEED = 2  # > 0: replay at the recording's own times (send_ns) divided by this
F_START_NS = 3  # when the paced replay's first message was due
# EngineState.ivars / fvars
E_EXPECTED_SEQ, E_NEXT_ORDER_ID, E_INSTRUMENTS, E_ORDER_QTY, E_STALE, E_CLOSED = range(6)
E_DECISIONS = 6  # orders copied into EngineState.decisions (a log for tests; empty live)
E_ORDER_FLAGS = 7  # ORDER.flags of every order: ORDER_POST when the strategy joins the queue
E_ALPHA, E_THRESHOLD = 0, 1
E_ENTER, E_REARM = 2, 3  # the strategy's bounds on the model's linear value (decision_bounds)
# GatewayState.ivars / fvars
G_PENDING, G_BATCH_SIZE, G_TIMEOUT_NS, G_RNG = range(4)
G_FILL_RATIO = 0


# ------------------------------------------------------------------------------------ feed


@kernel
def feed_step(feed, md, ctrl, shared_stats, local, now):  # noqa: C901 -- one bounded step
    """Publish the messages due by ``now``; True once stopped (or the replay has ended).

    Simulator and replay share the schedule, the ring claim and the drop accounting, so one
    loop serves both: a step is bounded by BATCH messages. The UDP feed has its own step
    (``udp_feed.udp_feed_step``): the exchange sets its pace.
    """
    if feed.net.ivars[U_FD] >= 0:
        return udp_feed_step(feed.net, md, ctrl, shared_stats, local, now)
    if load_acquire(ctrl, C.STOP) != 0:
        return True
    replaying = feed.replay.shape[0] > 0
    if replaying and feed.ivars[F_REPLAY_POS] >= feed.replay.shape[0]:
        return True
    interval = feed.fvars[F_INTERVAL_NS]
    speed = feed.fvars[F_SPEED] if replaying else 0.0
    timed = interval > 0.0 or speed > 0.0
    if timed and now < feed.fvars[F_NEXT_NS]:
        return False  # nothing due yet
    room = ring_claim(md, BATCH)
    published = 0
    dropped = 0
    for _ in range(BATCH):
        if speed > 0.0:  # the recording's own clock: the next record's offset from the first
            intended = feed.fvars[F_NEXT_NS]
            if intended > now:
                break
            pos = min(feed.ivars[F_REPLAY_POS] + 1, feed.replay.shape[0] - 1)
            offset = feed.replay[pos].send_ns - feed.replay[0].send_ns
            feed.fvars[F_NEXT_NS] = feed.fvars[F_START_NS] + offset / speed
        elif interval > 0.0:
            intended = feed.fvars[F_NEXT_NS]
            if intended > now:
                break
            feed.fvars[F_NEXT_NS] = intended + sim_next_interval_ns(feed.sim, interval)
        else:
            if published == room:
                break  # flat out: back-pressure, never drop
            intended = now
        if published < room:
            out, i = md.data, ring_write_slot(md, published)
        else:  # fixed rate and the ring is full: the message is lost, as on a real wire
            out, i = feed.scratch, 0
            dropped += 1
        if replaying:
            pos = feed.ivars[F_REPLAY_POS]
            out[i] = feed.replay[pos]
            feed.ivars[F_REPLAY_POS] = pos + 1
        else:
            sim_next(feed.sim, out, i)
            out[i].seq = feed.ivars[F_NEXT_SEQ]
        feed.ivars[F_NEXT_SEQ] = out[i].seq + 1
        out[i].send_ns = np.int64(intended)
        if published < room:
            published += 1
            hist_record(shared_stats, L.H_FEED_LAG, now - np.int64(intended))
        if replaying and feed.ivars[F_REPLAY_POS] >= feed.replay.shape[0]:
            break
    if published > 0:
        ring_publish(md, published)
        local[L.MD_SENT] += published
    if dropped > 0 or room == 0:
        local[L.MD_RING_FULL] += 1
        local[L.MD_DROPPED] += dropped
    return False


# ------------------------------------------------------------------------------------ engine


@kernel
def _engine_take_fills(engine, fills, local):
    n = ring_readable(fills, BATCH)
    for k in range(n):
        fill = fills.data[ring_read_slot(fills, k)]
        inst = np.int64(fill.instrument)
        # IOC orders end with their one report: release the whole order quantity
        risk_on_execution(
            engine.risk, inst, np.int64(fill.side), engine.ivars[E_ORDER_QTY], np.int64(fill.qty)
        )
        if fill.status == FILLED:
            local[L.FILLS] += 1
        else:
            local[L.CANCELS] += 1
        local[L.POSITIONS + inst] = engine.risk.position[inst]
    if n > 0:
        ring_release(fills, n)
    return n


@kernel
def _engine_on_gap(engine, seq, local):
    local[L.SEQUENCE_GAPS] += 1
    local[L.MD_LOST] += seq - engine.ivars[E_EXPECTED_SEQ]
    for inst in range(engine.ivars[E_INSTRUMENTS]):
        engine.stale[inst] = 1  # one channel: a lost message may have been any instrument's
        engine.snap_clean[inst] = 0
    engine.ivars[E_STALE] = engine.ivars[E_INSTRUMENTS]


@inline_kernel
def engine_on_message(engine, inst, kind, side, price, qty, now, kill_on):  # noqa: PLR0913
    """One market-data message through book, features, model, strategy and risk: the
    engine's decision, shared by ``engine_step`` (live) and the backtest (``service/research``)
    so that both make the same decisions from the same messages. Returns (order side, price,
    risk verdict); side -1 when the strategy does not trade."""
    alpha = engine.fvars[E_ALPHA]
    if kind == LEVEL:
        book_set_level(engine.book, inst, side, price, qty)
        valid = update_book_features(engine.features, engine.book, inst, alpha)
        if valid and engine.stale[inst] == 0:
            # the linear value, judged against bounds made for it: no sigmoid per message
            z = model_linear(engine.model.weights, engine.model.bias, engine.features.values, inst)
            order_side = strategy_decide_between(
                z, engine.fvars[E_ENTER], engine.fvars[E_REARM], engine.last_signal, inst
            )
            if order_side >= 0:
                order_price = strategy_order_price(
                    engine.book, inst, order_side, engine.ivars[E_ORDER_FLAGS] & ORDER_POST
                )
                reason = risk_check(
                    engine.limits,
                    engine.risk,
                    inst,
                    order_side,
                    order_price,
                    engine.ivars[E_ORDER_QTY],
                    engine.features.mid[inst],
                    now,
                    kill_on,
                )
                return order_side, order_price, reason
    elif kind == TRADE:
        update_trade_flow(engine.features, inst, side, qty, alpha)
    elif kind == SNAPSHOT_BEGIN:
        book_reset(engine.book, inst)
        engine.snap_clean[inst] = 1
    elif kind == SNAPSHOT_END and engine.snap_clean[inst] != 0 and engine.stale[inst] != 0:
        engine.stale[inst] = 0  # a whole snapshot since the gap: the book is true again
        engine.ivars[E_STALE] -= 1
    return np.int64(-1), np.int64(0), np.int64(0)


@inline_kernel
def log_decision(engine, order):
    """Copy an accepted order into the decision log while it has room (0 live: one compare)."""
    n = engine.ivars[E_DECISIONS]
    if n < engine.decisions.shape[0]:
        engine.decisions[n] = order
        engine.ivars[E_DECISIONS] = n + 1


@kernel
def engine_step(engine, rings, ctrl, shared_stats, local, now):
    """Apply up to BATCH messages and send the orders they cause; True once drained.

    Book, features, model, strategy and risk (``engine_on_message``, inlined at IR level) run
    for each message in one loop: that is the hot path, and LLVM optimises it whole. A call
    per message would cost more than some of the steps.
    """
    work = _engine_take_fills(engine, rings.fills, local)
    if engine.ivars[E_CLOSED] != 0:  # no more orders: only fills until the gateway is done
        gateway_done = load_acquire(ctrl, C.GATEWAY_DONE) != 0
        return gateway_done and ring_readable(rings.fills, 1) == 0 and work == 0
    feed_done = load_acquire(ctrl, C.FEED_DONE) != 0  # before looking at the ring: see docstring
    order_room = ring_claim(rings.orders, BATCH)
    if order_room == 0:
        local[L.ORDER_RING_FULL] += 1
        return False
    n = ring_readable(rings.md, order_room)  # each message causes at most one order
    if n == 0:
        if feed_done:
            engine.ivars[E_CLOSED] = 1
            store_release(ctrl, C.ENGINE_DONE, 1)
        return False
    kill_on = load_relaxed(ctrl, C.KILL_SWITCH) != 0
    qty = engine.ivars[E_ORDER_QTY]
    orders = 0
    for k in range(n):
        msg = rings.md.data[ring_read_slot(rings.md, k)]
        seq = msg.seq
        expected = engine.ivars[E_EXPECTED_SEQ]
        if expected != 0 and seq > expected:  # a jump forward is a gap; first message sets it
            _engine_on_gap(engine, seq, local)
        engine.ivars[E_EXPECTED_SEQ] = seq + 1
        inst = np.int64(msg.instrument)
        side, price, reason = engine_on_message(
            engine, inst, msg.kind, np.int64(msg.side), msg.price, np.int64(msg.qty), now, kill_on
        )
        if side >= 0:
            if reason == ACCEPTED:
                order = rings.orders.data[ring_write_slot(rings.orders, orders)]
                order.order_id = engine.ivars[E_NEXT_ORDER_ID]
                engine.ivars[E_NEXT_ORDER_ID] += 1
                order.tick_ns = msg.send_ns
                order.price = price
                order.qty = qty
                order.instrument = inst
                order.side = side
                order.flags = engine.ivars[E_ORDER_FLAGS]
                orders += 1
                log_decision(engine, order)
            else:
                local[L.REJECTS + reason - 1] += 1
    if orders > 0:
        ring_publish(rings.orders, orders)
        local[L.ORDERS_SENT] += orders
    done_ns = monotonic_ns()
    for k in range(n):
        hist_record(
            shared_stats,
            L.H_MD_TO_ENGINE,
            done_ns - rings.md.data[ring_read_slot(rings.md, k)].send_ns,
        )
    ring_release(rings.md, n)
    local[L.MD_PROCESSED] += n
    local[L.STALE_BOOKS] = engine.ivars[E_STALE]
    return False


# ------------------------------------------------------------------------------------ gateway


@kernel
def _xorshift(state):
    x = state[G_RNG]
    x ^= x << 13
    x ^= (x >> 7) & 0x01FFFFFFFFFFFFFF
    x ^= x << 17
    state[G_RNG] = x
    return x


@kernel
def _record_sent(gateway, k, shared_stats, sent_ns):
    """Tick-to-order and the batcher's wait of order ``k`` of the batch, sent at ``sent_ns``."""
    order = gateway.batch[k]
    tick_to_order = sent_ns - order.tick_ns
    hist_record(shared_stats, L.H_TICK_TO_ORDER, tick_to_order)
    for j in range(L.MAX_SLO_THRESHOLDS):
        if tick_to_order <= gateway.slo_ns[j]:  # unused thresholds are 0: never counted
            w = L.SLO_TICK_TO_ORDER_WITHIN + j
            store_relaxed(shared_stats, w, load_relaxed(shared_stats, w) + 1)
    hist_record(shared_stats, L.H_ORDER_WAIT, sent_ns - gateway.pop_ns[k])


@kernel
def _gateway_send(gateway, shared_stats, local, now):
    """Send the batch to the exchange over TCP (``order_entry``): its reports come back
    through ``order_entry_poll``. An order whose table slot is still taken waits, with those
    behind it, for the next flush."""
    oe = gateway.net
    pending = gateway.ivars[G_PENDING]
    entered = 0
    while entered < pending and order_entry_enter(oe, gateway.batch[entered], now):
        entered += 1
    order_entry_send(oe, now)
    sent_ns = monotonic_ns()
    for k in range(entered):
        _record_sent(gateway, k, shared_stats, sent_ns)
    for k in range(pending - entered):  # what waits moves to the front
        gateway.batch[k] = gateway.batch[entered + k]
        gateway.pop_ns[k] = gateway.pop_ns[entered + k]
    gateway.ivars[G_PENDING] = pending - entered
    if entered > 0:
        local[L.BATCHES] += 1
    return entered > 0


@kernel
def _gateway_flush(gateway, fills, shared_stats, local, now):
    """Send the batch to the exchange: over TCP, or to the simulated one, whose reports go
    back through the fill ring at once."""
    if gateway.net.ivars[O_ON] != 0:
        return _gateway_send(gateway, shared_stats, local, now)
    pending = gateway.ivars[G_PENDING]
    if ring_claim(fills, pending) < pending:
        local[L.FILL_RING_FULL] += 1
        return False  # the engine always drains fills: the room comes back
    sent_ns = monotonic_ns()
    for k in range(pending):
        order = gateway.batch[k]
        _record_sent(gateway, k, shared_stats, sent_ns)
        report = fills.data[ring_write_slot(fills, k)]
        report.order_id = order.order_id
        report.instrument = order.instrument
        report.side = order.side
        report.exchange_ns = sent_ns
        # uniform in [0, 1) from the top 53 bits
        if (
            np.float64((_xorshift(gateway.ivars) >> 11) & 0x1FFFFFFFFFFFFF)
            * (1.0 / 9007199254740992.0)
            < gateway.fvars[G_FILL_RATIO]
        ):
            report.status = FILLED
            report.qty = order.qty
            report.price = order.price
            local[L.EXCHANGE_FILLS] += 1
        else:
            report.status = CANCELLED
            report.qty = 0
            report.price = 0
            local[L.EXCHANGE_CANCELS] += 1
    ring_publish(fills, pending)
    local[L.BATCHES] += 1
    gateway.ivars[G_PENDING] = 0
    return True


@kernel
def _order_entry_counters(oe, local):
    iv = oe.ivars
    local[L.EXCHANGE_CONNECTED] = iv[O_SESSION] == SESSION_READY
    local[L.ORDERS_ENTERED] = iv[O_ENTERED]
    local[L.ORDERS_RESENT] = iv[O_RESENT]
    local[L.ORDERS_OPEN] = iv[O_OPEN]
    local[L.EXCHANGE_REJECTS] = iv[O_REJECTED]
    local[L.EXCHANGE_SESSIONS] = iv[O_CONNECTS]
    local[L.EXCHANGE_DROPS] = iv[O_BROKEN]
    local[L.EXCHANGE_FILLS] = iv[O_FILLED]
    local[L.EXCHANGE_CANCELS] = iv[O_CANCELED]


@kernel
def gateway_step(gateway, rings, ctrl, shared_stats, local, now):
    """Batch orders and flush on size, on timeout, or as soon as the order ring runs empty."""
    tcp = gateway.net.ivars[O_ON] != 0
    if tcp:
        order_entry_poll(gateway.net, rings.fills, now)
        _order_entry_counters(gateway.net, local)
    engine_done = load_acquire(ctrl, C.ENGINE_DONE) != 0
    pending = gateway.ivars[G_PENDING]
    size = gateway.ivars[G_BATCH_SIZE]
    n = ring_readable(rings.orders, size - pending)
    for k in range(n):
        gateway.batch[pending + k] = rings.orders.data[ring_read_slot(rings.orders, k)]
        gateway.pop_ns[pending + k] = now
    if n > 0:
        ring_release(rings.orders, n)
        local[L.ORDERS_RECEIVED] += n
        pending += n
        gateway.ivars[G_PENDING] = pending
    if pending == 0:
        # over TCP, the orders out at the exchange end first (across a reconnect), unless the
        # exchange is gone
        waiting = tcp and gateway.net.ivars[O_OPEN] > 0 and not order_entry_gone(gateway.net, now)
        if engine_done and ring_readable(rings.orders, 1) == 0 and not waiting:
            store_release(ctrl, C.GATEWAY_DONE, 1)
            return True
        return False
    ran_empty = ring_readable(rings.orders, 1) == 0
    timed_out = now - gateway.pop_ns[0] >= gateway.ivars[G_TIMEOUT_NS]
    if pending >= size or ran_empty or timed_out:
        _gateway_flush(gateway, rings.fills, shared_stats, local, now)
    return False


# ------------------------------------------------------------------------------------ loop


@kernel
def _publish(stages, rings, engine, shared_stats, local, now):
    """Publish the section of each stage in ``stages``; the engine's market section with its own."""
    for stage in range(N_STAGES):
        if stages & (1 << stage):
            if stage == ENGINE:
                occupancy = ring_occupancy(rings.md)
                local[L.MD_RING_OCCUPANCY] = occupancy
                local[L.MD_RING_OCCUPANCY_MAX] = max(local[L.MD_RING_OCCUPANCY_MAX], occupancy)
                fills = ring_occupancy(rings.fills)
                local[L.FILL_RING_OCCUPANCY] = fills
                local[L.FILL_RING_OCCUPANCY_MAX] = max(local[L.FILL_RING_OCCUPANCY_MAX], fills)
            elif stage == GATEWAY:
                occupancy = ring_occupancy(rings.orders)
                local[L.ORDER_RING_OCCUPANCY] = occupancy
                local[L.ORDER_RING_OCCUPANCY_MAX] = max(
                    local[L.ORDER_RING_OCCUPANCY_MAX], occupancy
                )
            start = L.SECTION_START[stage]
            publish_section(shared_stats, local, start, L.SECTION_END[stage], now)
            if stage == ENGINE:
                publish_market(engine, engine.ivars[E_INSTRUMENTS], shared_stats, local, now)


@kernel
def run_loop(  # noqa: PLR0913 -- the stages' arrays are its arguments: numba takes no objects
    stages,
    rings,
    feed,
    engine,
    gateway,
    ctrl,
    shared_stats,
    local,
    stats_interval_ns,
    max_iterations,
):
    """Poll the given stages (a mask of *_BIT) until all have drained; returns iterations.

    ``max_iterations`` >= 0 bounds the loop (warm-up); -1 runs until drained.
    """
    finished = 0
    iterations = 0
    last_publish = 0
    while True:
        now = monotonic_ns()
        pending = stages & ~finished
        if pending & FEED_BIT and feed_step(feed, rings.md, ctrl, shared_stats, local, now):
            finished |= FEED_BIT
            store_release(ctrl, C.FEED_DONE, 1)
        if pending & ENGINE_BIT and engine_step(engine, rings, ctrl, shared_stats, local, now):
            finished |= ENGINE_BIT
        if pending & GATEWAY_BIT and gateway_step(gateway, rings, ctrl, shared_stats, local, now):
            finished |= GATEWAY_BIT
        if now - last_publish >= stats_interval_ns or finished == stages:
            local[L.KILL_SWITCH_ON] = load_relaxed(ctrl, C.KILL_SWITCH)
            _publish(stages, rings, engine, shared_stats, local, now)
            last_publish = now
        iterations += 1
        if finished == stages or (max_iterations >= 0 and iterations >= max_iterations):
            return iterations
