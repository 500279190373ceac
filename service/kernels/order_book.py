"""Order-level book: resting orders by id, in price-time priority per level, top-N out.

The L2 book (``book.py``) keeps one size per price; this one keeps every order, so that the
research path can rebuild a real exchange's book from its messages (LOBSTER) and a backtest
can place its own orders behind the volume that was there first. Everything lives in fixed
pools allocated once from the sizes given to ``new_order_book``; nothing allocates while
events are applied, and a full pool is an error status, never a resize.

Pools and indices (all int64 arrays)::

    orders    slot -> id, qty, level slot, prev, next (the level's FIFO, -1 ends it), and
              priority (a stamp from the add counter: lower stamps rest ahead of higher)
    levels    slot -> instrument, side, price, qty (visible total), anon, head, tail
    order_ix  open-addressing hash: order id -> order slot
    level_ix  open-addressing hash: (instrument, side, price) -> level slot
    ranked    per instrument and side, level slots worst first and best last (bids low
              to high, asks high to low); ``n_ranked`` how many; ``ob_level_at`` reads the
              k-th best

``anon`` is volume the book knows only as a size at a price: orders that predate the data
(LOBSTER's files start with a full book) or a level taken from a source's book. It sits at
the front of its level's queue, since it rested there before any order the book has seen.
An execution or cancel of an order the book never saw is taken from ``anon`` and counted
(``C_UNKNOWN_ORDER``), never a crash.

The hashes use linear probing with backward-shift deletion (no tombstones, so a long day of
adds and deletes never degrades a probe). Ranked arrays are kept sorted by insertion with a
shift: a level is created or removed far less often than its size changes, and a real book
has a few hundred levels per side at most. The best level is last, because that is where
levels come and go most: a new best level is appended, not shifted in ahead of the rest.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.records import (
    ASK,
    BID,
    EVENT_RESYNC,
    HALT,
    HIDDEN_EXECUTE,
    LEVEL,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
    SNAPSHOT_BEGIN,
)
from service.kernels.jit import kernel, llvm_inline_kernel

# Status of applying one event (``ob_apply``): OK, or why it was refused.
OK = 0
E_DUPLICATE_ID = 1  # an add of an id that rests already
E_ORDER_POOL_FULL = 2
E_LEVEL_POOL_FULL = 3  # the level pool or an instrument side's ranked array is full
E_BAD_EVENT = 4  # non-positive price or size, an instrument outside the book

STATUS_TEXT = {
    OK: "ok",
    E_DUPLICATE_ID: "an order id that already rests was added again",
    E_ORDER_POOL_FULL: "the order pool is full",
    E_LEVEL_POOL_FULL: "the level pool is full",
    E_BAD_EVENT: "a non-positive price or size, or an instrument outside the book",
}


def refusal_text(status: int, max_orders: int, max_levels: int, orders: str, levels: str) -> str:
    """Why the order book refused an event, and what to raise when a pool was too small
    (``orders``/``levels``: how the caller's user sets the two pool sizes)."""
    why = STATUS_TEXT.get(status, f"status {status}")
    if status == E_ORDER_POOL_FULL:
        return f"{why} ({max_orders:,} resting orders): raise {orders}"
    if status == E_LEVEL_POOL_FULL:
        return f"{why} ({max_levels:,} price levels a side): raise {levels}"
    return why


# counters[...]
C_EVENTS = 0  # events applied
C_UNKNOWN_ORDER = 1  # cancel/delete/execute of an id never seen: taken from the level's anon
C_SHORTFALL = 2  # a reduction larger than the level held: the level emptied, the rest lost
C_HIDDEN = 3  # hidden executions (the visible book unchanged)
C_HALTS = 4  # trading halt indicators
C_RESYNCS = 5  # levels set from a source's book (LEVEL events)
C_STAMP = 6  # the priority stamp the next added order gets (ob_order_priority)
N_COUNTERS = 8

NONE = -1
_EMPTY_KEY = -1  # a free hash slot; order ids and level keys are >= 0
_SCAN = 16  # levels from the best that _rank_position scans before it bisects

OrderBook = namedtuple(
    "OrderBook",
    "o_id o_qty o_level o_prev o_next o_prio o_free "
    "l_inst l_side l_price l_qty l_anon l_head l_tail l_free "
    "order_keys order_vals level_keys level_vals ranked n_ranked counters",
)
OrderBook.__doc__ = "Order-level book of every instrument: fixed pools, hashes, ranked levels."


def _table_size(entries: int) -> int:
    """A power of two at least twice ``entries``: linear probing stays short at half load."""
    return 1 << max(4, int(2 * entries - 1).bit_length())


def new_order_book(n_instruments: int, max_orders: int, max_levels: int) -> OrderBook:
    """Allocate an empty book: ``max_orders`` resting orders in all, ``max_levels`` price
    levels per instrument and side."""
    for name, value, low in (
        ("n_instruments", n_instruments, 1),
        ("max_orders", max_orders, 1),
        ("max_levels", max_levels, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low} (got {value!r})")
    n, n_orders = int(n_instruments), int(max_orders)
    n_levels = n * 2 * int(max_levels)
    order_table, level_table = _table_size(n_orders), _table_size(n_levels)
    free_orders = np.arange(n_orders, dtype=np.int64)[::-1].copy()  # pop from the end
    free_levels = np.arange(n_levels, dtype=np.int64)[::-1].copy()
    return OrderBook(
        o_id=np.zeros(n_orders, np.int64),
        o_qty=np.zeros(n_orders, np.int64),
        o_level=np.full(n_orders, NONE, np.int64),
        o_prev=np.full(n_orders, NONE, np.int64),
        o_next=np.full(n_orders, NONE, np.int64),
        o_prio=np.zeros(n_orders, np.int64),
        o_free=np.concatenate(([n_orders], free_orders)).astype(np.int64),  # [0] = count
        l_inst=np.zeros(n_levels, np.int64),
        l_side=np.zeros(n_levels, np.int64),
        l_price=np.zeros(n_levels, np.int64),
        l_qty=np.zeros(n_levels, np.int64),
        l_anon=np.zeros(n_levels, np.int64),
        l_head=np.full(n_levels, NONE, np.int64),
        l_tail=np.full(n_levels, NONE, np.int64),
        l_free=np.concatenate(([n_levels], free_levels)).astype(np.int64),
        order_keys=np.full(order_table, _EMPTY_KEY, np.int64),
        order_vals=np.zeros(order_table, np.int64),
        level_keys=np.full(level_table, _EMPTY_KEY, np.int64),
        level_vals=np.zeros(level_table, np.int64),
        ranked=np.zeros((n, 2, int(max_levels)), np.int64),
        n_ranked=np.zeros((n, 2), np.int64),
        counters=np.zeros(N_COUNTERS, np.int64),
    )


# ------------------------------------------------------------------------------ hashes


@llvm_inline_kernel
def _hash_slot(key, mask):
    # Fibonacci hashing: consecutive ids (the common case) spread over the table.
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)) & mask


@llvm_inline_kernel
def _find(keys, vals, key):
    """The value stored under ``key``, or NONE."""
    mask = keys.shape[0] - 1
    i = _hash_slot(key, mask)
    while True:
        k = keys[i]
        if k == key:
            return vals[i]
        if k == _EMPTY_KEY:
            return NONE
        i = (i + 1) & mask


@llvm_inline_kernel
def _insert(keys, vals, key, value):
    """Store ``value`` under ``key`` (absent); the table is never more than half full."""
    mask = keys.shape[0] - 1
    i = _hash_slot(key, mask)
    while keys[i] != _EMPTY_KEY:
        i = (i + 1) & mask
    keys[i] = key
    vals[i] = value


@llvm_inline_kernel
def _remove(keys, vals, key):
    """Delete ``key`` (present) and shift the probe chain behind it back (Knuth's R)."""
    mask = keys.shape[0] - 1
    i = _hash_slot(key, mask)
    while keys[i] != key:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == _EMPTY_KEY:
            break
        home = _hash_slot(keys[j], mask)
        # keys[j] may move into the hole at i unless its home lies cyclically in (i, j]
        if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    keys[i] = _EMPTY_KEY


@llvm_inline_kernel
def _level_key(inst, side, price):
    return (inst << 41) | (side << 40) | price


# ------------------------------------------------------------------------------ levels


@llvm_inline_kernel
def _rank_key(side, price):
    """Sort key, worst first and best last: bids by ascending price, asks by descending."""
    return price if side == BID else -price


@llvm_inline_kernel
def ob_level_at(ob, inst, side, k):
    """The slot of the ``k``-th best level of ``inst``'s ``side`` (0 = best; k < n_ranked)."""
    return ob.ranked[inst, side, ob.n_ranked[inst, side] - 1 - k]


@llvm_inline_kernel
def _rank_position(ob, inst, side, price):
    """Index of the first ranked level whose key is >= ``price``'s. Levels come and go near
    the best (the end): a short scan back from there, then a binary search over the rest.
    The sample LOBSTER day keeps up to 427 levels a side (orders that left the visible depth
    are never cancelled in its file) and every level it creates or drops is within 16 of the
    best: with a binary search alone (two dependent loads and an unpredictable branch a step)
    its book took 50 ns an event, with this 46 (docs/performance.md)."""
    hi = ob.n_ranked[inst, side]
    key = _rank_key(side, price)
    stop = max(hi - _SCAN, 0)
    while hi > stop:
        if _rank_key(side, ob.l_price[ob.ranked[inst, side, hi - 1]]) < key:
            return hi
        hi -= 1
    lo = 0
    while lo < hi:
        mid = (lo + hi) >> 1
        if _rank_key(side, ob.l_price[ob.ranked[inst, side, mid]]) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@llvm_inline_kernel
def _get_level(ob, inst, side, price, create):
    """The level slot at ``price``; with ``create`` a new empty one when there is none.
    NONE when absent (and not created) or when a pool is full (``E_LEVEL_POOL_FULL``)."""
    key = _level_key(inst, side, price)
    slot = _find(ob.level_keys, ob.level_vals, key)
    if slot != NONE or not create:
        return slot
    n = ob.n_ranked[inst, side]
    if ob.l_free[0] == 0 or n == ob.ranked.shape[2]:
        return NONE
    slot = ob.l_free[ob.l_free[0]]
    ob.l_free[0] -= 1
    ob.l_inst[slot] = inst
    ob.l_side[slot] = side
    ob.l_price[slot] = price
    ob.l_qty[slot] = 0
    ob.l_anon[slot] = 0
    ob.l_head[slot] = NONE
    ob.l_tail[slot] = NONE
    _insert(ob.level_keys, ob.level_vals, key, slot)
    pos = _rank_position(ob, inst, side, price)
    for k in range(n, pos, -1):
        ob.ranked[inst, side, k] = ob.ranked[inst, side, k - 1]
    ob.ranked[inst, side, pos] = slot
    ob.n_ranked[inst, side] = n + 1
    return slot


@llvm_inline_kernel
def _drop_level(ob, slot):
    """Remove an empty level (no orders, no anon) from the hash and its ranking."""
    inst = ob.l_inst[slot]
    side = ob.l_side[slot]
    price = ob.l_price[slot]
    _remove(ob.level_keys, ob.level_vals, _level_key(inst, side, price))
    n = ob.n_ranked[inst, side]
    pos = n - 1 if ob.ranked[inst, side, n - 1] == slot else _rank_position(ob, inst, side, price)
    for k in range(pos, n - 1):
        ob.ranked[inst, side, k] = ob.ranked[inst, side, k + 1]
    ob.n_ranked[inst, side] = n - 1
    ob.l_free[0] += 1
    ob.l_free[ob.l_free[0]] = slot


# ------------------------------------------------------------------------------ orders


@llvm_inline_kernel
def _unlink(ob, o):
    """Take order slot ``o`` out of its level's queue and the id hash; free the slot."""
    lv = ob.o_level[o]
    prev = ob.o_prev[o]
    nxt = ob.o_next[o]
    if prev != NONE:
        ob.o_next[prev] = nxt
    else:
        ob.l_head[lv] = nxt
    if nxt != NONE:
        ob.o_prev[nxt] = prev
    else:
        ob.l_tail[lv] = prev
    _remove(ob.order_keys, ob.order_vals, ob.o_id[o])
    ob.o_level[o] = NONE
    ob.o_free[0] += 1
    ob.o_free[ob.o_free[0]] = o


@llvm_inline_kernel
def ob_add(ob, inst, side, order_id, price, qty):
    """A new order of ``qty`` at ``price`` joins the back of its level's queue."""
    if _find(ob.order_keys, ob.order_vals, order_id) != NONE:
        return E_DUPLICATE_ID
    if ob.o_free[0] == 0:
        return E_ORDER_POOL_FULL
    lv = _get_level(ob, inst, side, price, True)
    if lv == NONE:
        return E_LEVEL_POOL_FULL
    o = ob.o_free[ob.o_free[0]]
    ob.o_free[0] -= 1
    ob.o_id[o] = order_id
    ob.o_qty[o] = qty
    ob.o_level[o] = lv
    ob.o_prio[o] = ob.counters[C_STAMP]
    ob.counters[C_STAMP] += 1
    ob.o_next[o] = NONE
    tail = ob.l_tail[lv]
    ob.o_prev[o] = tail
    if tail != NONE:
        ob.o_next[tail] = o
    else:
        ob.l_head[lv] = o
    ob.l_tail[lv] = o
    ob.l_qty[lv] += qty
    _insert(ob.order_keys, ob.order_vals, order_id, o)
    return OK


@llvm_inline_kernel
def ob_reduce(ob, inst, side, order_id, price, qty, whole):  # noqa: PLR0913 -- an event's fields
    """Take ``qty`` off an order (cancel or execution), or all of it with ``whole``
    (delete). An id the book never saw is taken from the level's anonymous volume."""
    o = _find(ob.order_keys, ob.order_vals, order_id)
    if o != NONE:
        lv = ob.o_level[o]
        take = ob.o_qty[o] if whole else min(qty, ob.o_qty[o])
        if take < qty and not whole:
            ob.counters[C_SHORTFALL] += 1
        ob.o_qty[o] -= take
        ob.l_qty[lv] -= take
        if ob.o_qty[o] == 0:
            _unlink(ob, o)
    else:
        ob.counters[C_UNKNOWN_ORDER] += 1
        lv = _get_level(ob, inst, side, price, False)
        if lv == NONE:
            ob.counters[C_SHORTFALL] += 1
            return OK
        take = min(qty, ob.l_anon[lv])
        if take < qty:
            ob.counters[C_SHORTFALL] += 1
        ob.l_anon[lv] -= take
        ob.l_qty[lv] -= take
    if ob.l_qty[lv] == 0 and ob.l_head[lv] == NONE:
        _drop_level(ob, lv)
    return OK


@llvm_inline_kernel
def ob_set_level(ob, inst, side, price, qty):
    """Make the visible size at ``price`` exactly ``qty``, all of it anonymous: a level taken
    from a source's book (a snapshot, or a level that was out of sight) says only its total,
    so the orders the book knew there are forgotten; a later event on one of their ids is
    taken from the anonymous volume like any id the book never saw."""
    lv = _get_level(ob, inst, side, price, qty > 0)
    if lv == NONE:
        return OK if qty <= 0 else E_LEVEL_POOL_FULL
    while ob.l_head[lv] != NONE:
        o = ob.l_head[lv]
        ob.o_qty[o] = 0
        _unlink(ob, o)
    target = max(qty, 0)
    ob.l_anon[lv] = target
    ob.l_qty[lv] = target
    if target == 0:
        _drop_level(ob, lv)
    return OK


@llvm_inline_kernel
def ob_order_priority(ob, order_id):
    """The priority stamp of resting order ``order_id``: it rests ahead of every order added
    when ``ob.counters[C_STAMP]`` was greater. NONE for an id the book does not know (its
    volume is anonymous, which rests ahead of every known order)."""
    o = _find(ob.order_keys, ob.order_vals, order_id)
    return NONE if o == NONE else ob.o_prio[o]


@llvm_inline_kernel
def ob_level_qty(ob, inst, side, price):
    """The visible size resting at ``price`` on ``side``; 0 when there is no level."""
    lv = _get_level(ob, inst, side, price, False)
    return 0 if lv == NONE else ob.l_qty[lv]


@kernel
def ob_reset(ob, inst):
    """Clear every level and order of ``inst`` (a snapshot begins)."""
    for side in range(2):
        while ob.n_ranked[inst, side] > 0:
            lv = ob_level_at(ob, inst, side, 0)
            while ob.l_head[lv] != NONE:
                o = ob.l_head[lv]
                ob.l_qty[lv] -= ob.o_qty[o]
                ob.o_qty[o] = 0
                _unlink(ob, o)
            ob.l_anon[lv] = 0
            ob.l_qty[lv] = 0
            _drop_level(ob, lv)


@llvm_inline_kernel
def ob_apply(ob, events, i):
    """Apply MARKET_EVENT ``events[i]``; returns OK or an E_* status (the book unchanged)."""
    ev = events[i]
    kind = ev["kind"]
    inst = np.int64(ev["instrument"])
    if inst >= ob.n_ranked.shape[0]:
        return E_BAD_EVENT
    side = np.int64(ev["side"])
    price = np.int64(ev["price"])
    qty = np.int64(ev["qty"])
    ob.counters[C_EVENTS] += 1
    if kind in (ORDER_ADD, ORDER_CANCEL, ORDER_EXECUTE):
        if price <= 0 or qty <= 0 or side > ASK:
            return E_BAD_EVENT
        if kind == ORDER_ADD:
            return ob_add(ob, inst, side, np.int64(ev["order_id"]), price, qty)
        return ob_reduce(ob, inst, side, np.int64(ev["order_id"]), price, qty, False)
    if kind == ORDER_DELETE:
        if price <= 0 or side > ASK:
            return E_BAD_EVENT
        return ob_reduce(ob, inst, side, np.int64(ev["order_id"]), price, qty, True)
    if kind == LEVEL:
        if price <= 0 or side > ASK:
            return E_BAD_EVENT
        ob.counters[C_RESYNCS] += (ev["flags"] & EVENT_RESYNC) != 0
        return ob_set_level(ob, inst, side, price, qty)
    if kind == SNAPSHOT_BEGIN:
        ob_reset(ob, inst)
    elif kind == HIDDEN_EXECUTE:
        ob.counters[C_HIDDEN] += 1
    elif kind == HALT:
        ob.counters[C_HALTS] += 1
    # TRADE and SNAPSHOT_END leave the book as it is
    return OK


@kernel
def ob_top(ob, inst, levels, row):
    """Write the top ``levels`` of ``inst`` into ``row`` in LOBSTER's orderbook column order:
    ask price, ask size, bid price, bid size per level; a missing level as price NONE, size 0."""
    for k in range(levels):
        for side in range(2):
            col = 4 * k + (0 if side == ASK else 2)
            if k < ob.n_ranked[inst, side]:
                lv = ob_level_at(ob, inst, side, k)
                row[col] = ob.l_price[lv]
                row[col + 1] = ob.l_qty[lv]
            else:
                row[col] = NONE
                row[col + 1] = 0


@kernel
def ob_replay(ob, events, inst, levels, rows, row_of):
    """Apply ``events`` in order and write the top ``levels`` after each into
    ``rows[row_of[i]]`` (events that share a row, a message and its resync levels, overwrite
    it in turn). Stops at the first refused event; returns its index, or -1 when all applied.
    """
    for i in range(events.shape[0]):
        if ob_apply(ob, events, i) != OK:
            return i
        if row_of[i] >= 0:
            ob_top(ob, inst, levels, rows[row_of[i]])
    return -1


@kernel
def ob_throughput_kernel(ob, events, repeats):
    """Apply ``events`` ``repeats`` times, resetting between passes; returns a checksum of
    the best prices so that no work can be dropped. Events must apply cleanly."""
    checksum = np.int64(0)
    for _ in range(repeats):
        for i in range(events.shape[0]):
            ob_apply(ob, events, i)
            inst = np.int64(events[i]["instrument"])
            if ob.n_ranked[inst, 0] > 0:
                checksum += ob.l_price[ob_level_at(ob, inst, 0, 0)]
        for inst in range(ob.n_ranked.shape[0]):
            ob_reset(ob, inst)
    return checksum
