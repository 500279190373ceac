"""Deterministic market-data simulator: L2 level updates, trades and snapshots for N instruments.

The feed stage calls ``sim_next(sim, out, i)`` once per message; it writes one MARKET_DATA
record (instrument, kind, side, price, qty) and leaves ``seq`` and ``send_ns`` to the caller,
which stamps the channel sequence and the intended send time from ``sim_next_interval_ns``.

The stream is self-consistent, so a consumer can check itself against it:

- It starts with one snapshot per instrument (SNAPSHOT_BEGIN, a LEVEL per non-empty level,
  SNAPSHOT_END), so a consumer that starts from nothing holds exactly the simulator's books.
- Applying its LEVEL messages (absolute sizes, 0 removes) never yields a crossed book, not even
  between the messages of one event: every event sends its removals before its additions.
- A TRADE happens at the current best of the aggressed side (a BUY hits the best ask), with
  qty no larger than that level, and is immediately followed by the LEVEL that reduces or
  removes the level.
- Every ``snapshot_interval`` messages one instrument's book is sent whole, rotating over the
  instruments; it lists exactly the levels the consumer should already hold.
- All prices are > 0 ticks.

Model, per instrument: a reference best bid ``b`` and spread ``s`` (1..max_spread_ticks) fix
two windows of ``depth_levels`` prices, bids ``b, b-1, ...`` and asks ``b+s, b+s+1, ...``.
Each window slot holds a queue size, 0 meaning the level is empty (trades and cancels empty
levels; later updates refill them). A move shifts one or both windows by one tick; levels that
leave their window are removed, newly exposed prices get fresh queues. Because the windows
never overlap, the book cannot cross.

Randomness is splitmix64 implemented here (no ``np.random`` in kernels), one uint64 state per
instrument plus one that routes events to instruments and one for the send schedule, so the
message stream does not depend on how often the schedule is consulted. The same ``[feed]``
settings give the same stream on every machine.

Every multi-message event (trade then level, a move's removals and additions, a snapshot) is
written whole into a small pending queue and drained one message per ``sim_next`` call; a new
event is drawn only when the queue is empty, which is when the simulator's books equal what a
consumer holds.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.records import (
    ASK,
    BID,
    BUY,
    LEVEL,
    MARKET_DATA,
    SELL,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    TRADE,
)
from service.kernels.jit import kernel, llvm_inline_kernel


def normal_interval_stretch(params) -> float:
    """Factor on the base interval between normally spaced messages so bursts cost no rate.

    Each normally spaced send draws a burst with probability p. A burst is L messages at
    interval T/s (T the base interval, s the speedup). Per draw, the expected message count is
    (1-p) + p*L and the expected time (1-p)*T_n + p*L*T/s. Setting time/messages = T gives

        T_n = T * (1 + p*L*(1 - 1/s) / (1-p))

    so the long-run average interval is exactly T, i.e. the offered rate, whatever p, L, s.
    """
    p, length, speedup = params.burst_probability, params.burst_length, params.burst_speedup
    return 1.0 + p * length * (1.0 - 1.0 / speedup) / (1.0 - p)


Simulator = namedtuple(
    "Simulator",
    [
        # Per instrument state (arrays, mutated by the kernels).
        "best_bid",  # int64[n]: reference best bid b in ticks (the bid window's top price)
        "spread",  # int64[n]: ask window's top price minus b, 1..max_spread_ticks
        "bid_size",  # int64[n, depth]: queue at price b - j, 0 = empty level
        "ask_size",  # int64[n, depth]: queue at price b + spread + j, 0 = empty level
        "rng",  # uint64[n + 2]: splitmix64 states: instruments, event router, schedule
        "pending",  # MARKET_DATA[4 * depth + 2]: the messages of the current event
        "state",  # int64[_STATE_LEN]: queue cursor, counters, snapshot and burst progress
        "scratch",  # int64[depth]: one side's old queue sizes while a window shifts
        # Configuration (scalars, copied from the [feed] section).
        "n_instruments",
        "depth_levels",
        "max_spread_ticks",
        "mean_queue_lots",
        "snapshot_interval",
        "burst_length",
        "trade_probability",
        "move_probability",
        "burst_probability",
        "burst_speedup",
        "normal_stretch",  # normal_interval_stretch(params)
    ],
)

# Simulator.state slots.
_PENDING_HEAD = 0  # next pending message to emit
_PENDING_COUNT = 1  # messages in the pending queue
_MESSAGES = 2  # messages emitted so far
_NEXT_SNAPSHOT_AT = 3  # message count at which the next periodic snapshot is due
_SNAPSHOT_NEXT = 4  # instrument whose snapshot comes next (rotation)
_BOOT_SNAPSHOTS_LEFT = 5  # initial snapshots still to send
_BURST_LEFT = 6  # burst messages still to schedule after the current one
_STATE_LEN = 7

# A level that is updated is cancelled whole with this probability (otherwise resized).
_CANCEL_PROBABILITY = 0.15

# splitmix64 (Steele, Lea, Flood 2014; the seeder of java.util.SplittableRandom and xoshiro).
# Constants are uint64 so numba never mixes signed and unsigned (which would give float64).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U11 = np.uint64(11)
_U27 = np.uint64(27)
_U30 = np.uint64(30)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U15 = np.uint64(15)
_U16 = np.uint64(16)
_U31 = np.uint64(31)
_U32 = np.uint64(32)
_U48 = np.uint64(48)
_U63 = np.uint64(63)
_MASK15 = np.uint64(0x7FFF)
_MASK16 = np.uint64(0xFFFF)
_MASK32 = np.uint64(0xFFFFFFFF)
_INV_2_32 = 1.0 / 4294967296.0
_INV_2_53 = 1.0 / 9007199254740992.0


@llvm_inline_kernel
def _rand_u64(rng, slot):
    """Next splitmix64 output of ``rng[slot]`` (wrapping uint64 arithmetic is intended)."""
    z = rng[slot] + _GOLDEN
    rng[slot] = z
    z = (z ^ (z >> _U30)) * _MIX1
    z = (z ^ (z >> _U27)) * _MIX2
    return z ^ (z >> _U31)


@llvm_inline_kernel
def _uniform(rng, slot):
    """Uniform float64 in [0, 1) with 53 random bits."""
    return np.float64(_rand_u64(rng, slot) >> _U11) * _INV_2_53


@llvm_inline_kernel
def _below(rng, slot, n):
    """Integer in [0, n) for 0 < n < 2**32: the top 32 random bits scaled by n (Lemire's
    multiply-shift). A ``% n`` here was a 64-bit division per draw, tens of cycles, several
    times per event. The bias is below n / 2**32."""
    return np.int64(((_rand_u64(rng, slot) >> _U32) * np.uint64(n)) >> _U32)


@llvm_inline_kernel
def _fresh_queue(sim, k):
    """A new level's size: uniform in 1 .. 2*mean-1, so its mean is mean_queue_lots."""
    return 1 + _below(sim.rng, k, 2 * sim.mean_queue_lots - 1)


@llvm_inline_kernel
def _push(sim, instrument, kind, side, price, qty):
    n = sim.state[_PENDING_COUNT]
    rec = sim.pending[n]
    rec["instrument"] = instrument
    rec["kind"] = kind
    rec["side"] = side
    rec["price"] = price
    rec["qty"] = qty
    sim.state[_PENDING_COUNT] = n + 1


@kernel
def _event_snapshot(sim, k):
    """Instrument k's book whole: BEGIN, bids best first, asks best first, END."""
    _push(sim, k, SNAPSHOT_BEGIN, 0, 0, 0)
    bid = sim.best_bid[k]
    ask = bid + sim.spread[k]
    for j in range(sim.depth_levels):
        if sim.bid_size[k, j] > 0:
            _push(sim, k, LEVEL, BID, bid - j, sim.bid_size[k, j])
    for j in range(sim.depth_levels):
        if sim.ask_size[k, j] > 0:
            _push(sim, k, LEVEL, ASK, ask + j, sim.ask_size[k, j])
    _push(sim, k, SNAPSHOT_END, 0, 0, 0)


@kernel
def _event_trade(sim, k):
    """A trade at the best of a random side, then that level's reduction.

    Returns False (and queues nothing) when both sides of instrument k are empty.
    """
    aggressor = BUY if _below(sim.rng, k, 2) == 0 else SELL
    for _attempt in range(2):
        # A BUY takes liquidity from the asks, a SELL from the bids.
        sizes = sim.ask_size if aggressor == BUY else sim.bid_size
        for j in range(sim.depth_levels):
            size = sizes[k, j]
            if size > 0:
                if aggressor == BUY:
                    price = sim.best_bid[k] + sim.spread[k] + j
                    rested = ASK
                else:
                    price = sim.best_bid[k] - j
                    rested = BID
                qty = 1 + _below(sim.rng, k, size)
                sizes[k, j] = size - qty
                _push(sim, k, TRADE, aggressor, price, qty)
                _push(sim, k, LEVEL, rested, price, size - qty)
                return True
        aggressor = SELL if aggressor == BUY else BUY  # that side is empty: try the other
    return False


@kernel
def _event_level(sim, k):
    """One level changes size: refilled if empty, else cancelled whole or resized.

    One draw decides all but a size: the side (its top bit), the level (the smaller of two
    15-bit draws: levels near the top change more often), cancel or resize (16 bits), grow or
    shrink (the lowest bit). A second draw gives the size when one is needed. A draw each was
    six or seven per event, most of what a message cost.
    """
    rng = sim.rng
    r = _rand_u64(rng, k)
    depth = np.uint64(sim.depth_levels)
    bid_side = (r >> _U63) == _U0
    j = np.int64(min(((r >> _U48) & _MASK15) * depth, ((r >> _U32) & _MASK15) * depth) >> _U15)
    cancel = np.float64((r >> _U16) & _MASK16) < _CANCEL_PROBABILITY * 65536.0
    grow = (r & _U1) == _U0
    side = BID if bid_side else ASK
    sizes = sim.bid_size if bid_side else sim.ask_size
    old = sizes[k, j]
    mean = sim.mean_queue_lots
    if old == 0:
        new = _fresh_queue(sim, k)
    elif cancel:
        new = 0
    else:
        # Orders join or leave the queue; bounded so sizes stay within 1 .. 4*mean.
        delta = 1 + _below(rng, k, max(1, mean // 2))
        if old - delta < 1:
            grow = True
        elif old + delta > 4 * mean:
            grow = False
        new = old + delta if grow else old - delta
    sizes[k, j] = new
    price = sim.best_bid[k] - j if side == BID else sim.best_bid[k] + sim.spread[k] + j
    _push(sim, k, LEVEL, side, price, new)


@kernel
def _shift_window(sim, k, sizes, offset, side, new_top):
    """Re-index one side's window onto new prices; fresh queues fill newly exposed prices.

    New slot j sits at the price old slot j + offset had (offset is how far the window moved,
    in slots, toward the book's outside). Removals were already queued by the caller.
    """
    depth = sim.depth_levels
    scratch = sim.scratch
    for j in range(depth):
        scratch[j] = sizes[k, j]
    for j in range(depth):
        old = j + offset
        if 0 <= old < depth:
            sizes[k, j] = scratch[old]
        else:
            qty = _fresh_queue(sim, k)
            sizes[k, j] = qty
            price = new_top - j if side == BID else new_top + j
            _push(sim, k, LEVEL, side, price, qty)


@kernel
def _reposition(sim, k, new_bid, new_ask):
    """Move instrument k's windows to tops new_bid / new_ask (new_bid < new_ask)."""
    depth = sim.depth_levels
    bid = sim.best_bid[k]
    ask = bid + sim.spread[k]
    # Removals first, on both sides: what remains then lies inside the new windows, which do
    # not overlap, so no consumer ever sees a crossed book while the additions arrive.
    for j in range(depth):
        price = bid - j
        if sim.bid_size[k, j] > 0 and (price > new_bid or price <= new_bid - depth):
            _push(sim, k, LEVEL, BID, price, 0)
    for j in range(depth):
        price = ask + j
        if sim.ask_size[k, j] > 0 and (price < new_ask or price >= new_ask + depth):
            _push(sim, k, LEVEL, ASK, price, 0)
    _shift_window(sim, k, sim.bid_size, bid - new_bid, BID, new_bid)
    _shift_window(sim, k, sim.ask_size, new_ask - ask, ASK, new_ask)
    sim.best_bid[k] = new_bid
    sim.spread[k] = new_ask - new_bid


@kernel
def _event_move(sim, k):
    """The mid takes a random-walk step: one side's top moves a tick (half a tick of mid).

    When that would take the spread outside 1..max_spread_ticks both sides move (a full tick),
    and at the price floor the book moves up, so the deepest bid stays >= 1 tick.
    """
    rng = sim.rng
    bid = sim.best_bid[k]
    ask = bid + sim.spread[k]
    step = 1 if _below(rng, k, 2) == 0 else -1
    new_bid = bid
    new_ask = ask
    if _below(rng, k, 2) == 0:
        new_bid += step
    else:
        new_ask += step
    spread = new_ask - new_bid
    if spread < 1 or spread > sim.max_spread_ticks:
        new_bid = bid + step
        new_ask = ask + step
    if new_bid - (sim.depth_levels - 1) < 1:
        new_bid = bid + 1
        new_ask = ask + 1
    _reposition(sim, k, new_bid, new_ask)


@kernel
def _next_event(sim):
    """Queue the next event's messages (called only when the pending queue is empty)."""
    state = sim.state
    state[_PENDING_HEAD] = 0
    state[_PENDING_COUNT] = 0
    n = sim.n_instruments
    if state[_BOOT_SNAPSHOTS_LEFT] > 0 or (
        sim.snapshot_interval > 0 and state[_MESSAGES] >= state[_NEXT_SNAPSHOT_AT]
    ):
        k = state[_SNAPSHOT_NEXT]
        _event_snapshot(sim, k)
        state[_SNAPSHOT_NEXT] = (k + 1) % n
        if state[_BOOT_SNAPSHOTS_LEFT] > 0:
            state[_BOOT_SNAPSHOTS_LEFT] -= 1
        else:
            state[_NEXT_SNAPSHOT_AT] += sim.snapshot_interval
            # Snapshots longer than the interval must not pile up into a snapshot-only stream.
            if state[_NEXT_SNAPSHOT_AT] <= state[_MESSAGES]:
                state[_NEXT_SNAPSHOT_AT] = state[_MESSAGES] + sim.snapshot_interval
        return
    # one draw of slot n routes the event: its top 32 bits pick the instrument, its low 32 the
    # kind of event
    r = _rand_u64(sim.rng, n)
    k = np.int64(((r >> _U32) * np.uint64(n)) >> _U32)
    u = np.float64(r & _MASK32) * _INV_2_32
    if u < sim.trade_probability:
        if not _event_trade(sim, k):
            _event_level(sim, k)  # nothing to trade against: the book refills instead
    elif u < sim.trade_probability + sim.move_probability:
        _event_move(sim, k)
    else:
        _event_level(sim, k)


@kernel
def sim_next(sim, out, i):
    """Write the next message into ``out[i]``: instrument, kind, side, price, qty.

    ``seq`` and ``send_ns`` are left untouched: the feed stage stamps them.
    """
    state = sim.state
    if state[_PENDING_HEAD] == state[_PENDING_COUNT]:
        _next_event(sim)
    head = state[_PENDING_HEAD]
    src = sim.pending[head]
    dst = out[i]
    dst["instrument"] = src["instrument"]
    dst["kind"] = src["kind"]
    dst["side"] = src["side"]
    dst["price"] = src["price"]
    dst["qty"] = src["qty"]
    state[_PENDING_HEAD] = head + 1
    state[_MESSAGES] += 1


@kernel
def sim_fill(sim, out, n):
    """Write the next ``n`` messages into ``out[0:n]``."""
    for i in range(n):
        sim_next(sim, out, i)


@kernel
def sim_throughput_kernel(sim, out, repeats):
    """Generate ``len(out)`` messages ``repeats`` times; returns a checksum of the stream.

    The checksum keeps the compiler from discarding the work and lets a benchmark prove two
    runs produced the same stream.
    """
    checksum = np.int64(0)
    for _ in range(repeats):
        for i in range(len(out)):
            sim_next(sim, out, i)
            rec = out[i]
            checksum = checksum * 31 + rec["price"] + rec["qty"] + rec["kind"] + rec["side"]
    return checksum


@kernel
def sim_next_interval_ns(sim, base_interval_ns):
    """Gap in ns from this message's intended send time to the next one's.

    Normally ``base_interval_ns * normal_stretch``; with probability burst_probability a
    burst of burst_length messages at ``base_interval_ns / burst_speedup`` starts instead.
    The stretch (see ``normal_interval_stretch``) makes the long-run average exactly
    ``base_interval_ns``: bursts reshape the offered rate, never raise it.
    """
    state = sim.state
    if state[_BURST_LEFT] > 0:
        state[_BURST_LEFT] -= 1
        return base_interval_ns / sim.burst_speedup
    # no draw when bursts are off (the bench, replays at a fixed rate): the schedule has its own
    # RNG slot, so skipping it changes no message, and it saves a call per message
    if sim.burst_probability > 0.0 and _uniform(sim.rng, sim.n_instruments + 1) < (
        sim.burst_probability
    ):
        state[_BURST_LEFT] = sim.burst_length - 1
        return base_interval_ns / sim.burst_speedup
    return base_interval_ns * sim.normal_stretch


@kernel
def _initialize(sim, start_price_ticks):
    """Every instrument's first book: a random spread and a fresh queue at every level."""
    for k in range(sim.n_instruments):
        sim.best_bid[k] = start_price_ticks
        sim.spread[k] = 1 + _below(sim.rng, k, sim.max_spread_ticks)
        for j in range(sim.depth_levels):
            sim.bid_size[k, j] = _fresh_queue(sim, k)
            sim.ask_size[k, j] = _fresh_queue(sim, k)


def new_simulator(params) -> Simulator:
    """A simulator in its initial state; the first messages are one snapshot per instrument.

    ``params`` is a validated ``[feed]`` section (``service.config.FeedConfig``): the
    simulator relies on its bounds and does not check them again.
    """
    n, depth = params.instruments, params.depth_levels
    # Each RNG slot starts at a different output of a splitmix64 sequence seeded with `seed`.
    seeder = np.array([params.seed], dtype=np.uint64)
    rng = np.empty(n + 2, dtype=np.uint64)
    for slot in range(n + 2):
        rng[slot] = _rand_u64(seeder, 0)
    state = np.zeros(_STATE_LEN, dtype=np.int64)
    state[_NEXT_SNAPSHOT_AT] = params.snapshot_interval
    state[_BOOT_SNAPSHOTS_LEFT] = n
    sim = Simulator(
        best_bid=np.zeros(n, dtype=np.int64),
        spread=np.zeros(n, dtype=np.int64),
        bid_size=np.zeros((n, depth), dtype=np.int64),
        ask_size=np.zeros((n, depth), dtype=np.int64),
        rng=rng,
        pending=np.zeros(4 * depth + 2, dtype=MARKET_DATA),  # a move's worst case is 4*depth
        state=state,
        scratch=np.zeros(depth, dtype=np.int64),
        n_instruments=int(n),
        depth_levels=int(depth),
        max_spread_ticks=int(params.max_spread_ticks),
        mean_queue_lots=int(params.mean_queue_lots),
        snapshot_interval=int(params.snapshot_interval),
        burst_length=int(params.burst_length),
        trade_probability=float(params.trade_probability),
        move_probability=float(params.move_probability),
        burst_probability=float(params.burst_probability),
        burst_speedup=float(params.burst_speedup),
        normal_stretch=float(normal_interval_stretch(params)),
    )
    _initialize(sim, np.int64(params.start_price_ticks))
    return sim
