"""What each step of the fused pipeline costs per message, on one core: the bench's
``stage_cost_ns`` (nothing here runs in production).

Each probe drives the production kernels themselves, timed around a whole batch (no clock read
per message):

- ``feed_cost``: ``feed_step`` publishing into the market-data ring, which a consumer that does
  nothing else empties after every step: the simulator or the replay, on the fixed-rate path;
- ``engine_steps_cost``: the engine's chain (book, features, model, strategy, risk) cut after
  step ``upto``, over a stream of messages. Each step's cost is the difference between two cuts,
  so it is what that step adds with everything before it in place, as in ``engine_on_message``,
  whose order the chain keeps (a test checks they decide the same);
- ``gateway_cost``: ``gateway_step`` batching orders and flushing them to the simulated
  exchange, per order.
"""

from __future__ import annotations

import numpy as np

from contracts import stats_layout as L
from contracts.records import LEVEL, SNAPSHOT_BEGIN, SNAPSHOT_END, TRADE
from service.kernels.atomics import monotonic_ns
from service.kernels.book import book_reset, book_set_level
from service.kernels.jit import kernel
from service.kernels.ring import (
    ring_claim,
    ring_publish,
    ring_readable,
    ring_release,
    ring_write_slot,
)
from service.kernels.risk import ACCEPTED, risk_check, risk_on_execution
from service.kernels.signals import (
    model_linear,
    strategy_decide_between,
    strategy_order_price,
    update_book_features,
    update_trade_flow,
)
from service.kernels.stages import (
    E_ALPHA,
    E_ENTER,
    E_ORDER_FLAGS,
    E_ORDER_QTY,
    E_REARM,
    feed_step,
    gateway_step,
)

# the engine's steps, in the order engine_on_message runs them; a cut after step s runs 0..s
READ, BOOK, FEATURES, MODEL, STRATEGY, RISK = range(6)
ENGINE_STEPS = ("book", "features", "model", "strategy", "risk")  # their names, BOOK onwards
ORDERS_PER_STEP = 8  # orders the gateway probe finds waiting at each step


@kernel
def feed_cost(feed, md, ctrl, shared_stats, local, messages):
    """ns to publish ``messages`` messages with ``feed_step`` (or fewer, if a replay ends first);
    returns (ns, messages published)."""
    sent = local[L.MD_SENT]
    start = monotonic_ns()
    while local[L.MD_SENT] - sent < messages:
        if feed_step(feed, md, ctrl, shared_stats, local, monotonic_ns()):
            break
        ring_release(md, ring_readable(md, md.mask + 1))
    return monotonic_ns() - start, local[L.MD_SENT] - sent


@kernel
def engine_steps_cost(engine, stream, upto, now):  # noqa: C901 -- the chain, cut at ``upto``
    """ns to run the engine's chain over ``stream``, cut after step ``upto``; returns (ns,
    orders accepted). An accepted order is released at once (an IOC that missed), as its
    report would release it live, so the risk state stays that of a running engine."""
    alpha = engine.fvars[E_ALPHA]
    qty = engine.ivars[E_ORDER_QTY]
    accepted = 0
    # every argument typed as the live engine's are (a bool, not a literal; int64 quantities):
    # a kernel called with other types compiles a second signature, which the kernels' tests
    # forbid
    kill_on = upto < 0
    none = np.int64(0)
    start = monotonic_ns()
    for k in range(stream.shape[0]):
        msg = stream[k]
        inst = np.int64(msg.instrument)
        kind = msg.kind
        if upto < BOOK:
            accepted += kind  # the read alone, kept live
        elif kind == LEVEL:
            book_set_level(engine.book, inst, np.int64(msg.side), msg.price, np.int64(msg.qty))
            if upto >= FEATURES:
                valid = update_book_features(engine.features, engine.book, inst, alpha)
                if upto >= MODEL and valid and engine.stale[inst] == 0:
                    score = model_linear(
                        engine.model.weights, engine.model.bias, engine.features.values, inst
                    )
                    if upto >= STRATEGY:
                        side = strategy_decide_between(
                            score, engine.fvars[E_ENTER], engine.fvars[E_REARM],
                            engine.last_signal, inst,
                        )  # fmt: skip
                        if side >= 0:
                            price = strategy_order_price(
                                engine.book, inst, side, engine.ivars[E_ORDER_FLAGS] & 1
                            )
                            if upto >= RISK:
                                reason = risk_check(
                                    engine.limits,
                                    engine.risk,
                                    inst,
                                    side,
                                    price,
                                    qty,
                                    engine.features.mid[inst],
                                    now,
                                    kill_on,
                                )
                                if reason == ACCEPTED:
                                    accepted += 1
                                    risk_on_execution(engine.risk, inst, side, qty, none)
                    else:
                        accepted += score > 0.0
        elif kind == TRADE:
            if upto >= FEATURES:
                update_trade_flow(
                    engine.features, inst, np.int64(msg.side), np.int64(msg.qty), alpha
                )
        elif kind == SNAPSHOT_BEGIN:
            book_reset(engine.book, inst)
            engine.snap_clean[inst] = 1
        elif kind == SNAPSHOT_END and engine.snap_clean[inst] != 0 and engine.stale[inst] != 0:
            engine.stale[inst] = 0
    return monotonic_ns() - start, accepted


@kernel
def gateway_cost(gateway, rings, ctrl, shared_stats, local, orders):
    """ns for ``gateway_step`` to take ``orders`` orders, ``ORDERS_PER_STEP`` at a time, batch
    them and flush them to the simulated exchange; the fills are taken at once. Returns (ns,
    orders)."""
    order_id = 0
    start = monotonic_ns()
    while order_id < orders:
        now = monotonic_ns()
        n = ring_claim(rings.orders, min(ORDERS_PER_STEP, orders - order_id))
        for k in range(n):
            order = rings.orders.data[ring_write_slot(rings.orders, k)]
            order.order_id = order_id + k
            order.tick_ns = now
            order.instrument = 0
            order.qty = 1
        if n > 0:
            ring_publish(rings.orders, n)
            order_id += n
        gateway_step(gateway, rings, ctrl, shared_stats, local, now)
        ring_release(rings.fills, ring_readable(rings.fills, rings.fills.mask + 1))
    return monotonic_ns() - start, order_id
