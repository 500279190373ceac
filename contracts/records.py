"""Fixed-size records that travel through the rings and recordings, field by field.

Prices are integer ticks (``price * tick_size`` is the currency price), times are
CLOCK_MONOTONIC nanoseconds (``service.kernels.atomics.monotonic_ns``), quantities are whole lots.
Every record is 32 bytes so that two fit a 64-byte cache line and four a 128-byte one.
"""

from __future__ import annotations

import numpy as np

# Market data message: one L2 level change, one trade, or a snapshot marker.
MARKET_DATA = np.dtype(
    [
        ("seq", np.int64),  # channel sequence number, 1, 2, 3 ...; a jump is a gap
        ("send_ns", np.int64),  # intended send time: latency is measured from here
        ("price", np.int64),  # level or trade price in ticks, > 0
        ("qty", np.int32),  # LEVEL: new absolute size (0 removes the level); TRADE: size
        ("instrument", np.uint16),  # 0 .. n_instruments-1
        ("kind", np.uint8),  # LEVEL, TRADE, SNAPSHOT_BEGIN, SNAPSHOT_END
        ("side", np.uint8),  # LEVEL: BID or ASK; TRADE: aggressor BUY or SELL
    ]
)

# Recorded market event (recording format v2): what MARKET_DATA carries, plus the order-level
# fields of a real exchange feed (LOBSTER's messages), so the research path can rebuild an
# order book by order id and replays keep the historical clock. 48 bytes: never on a ring.
MARKET_EVENT = np.dtype(
    [
        ("seq", np.int64),  # 1, 2, 3 ... within the recording
        ("time_ns", np.int64),  # historical time, ns after midnight of session_date; 0 unknown
        ("order_id", np.int64),  # ORDER_* kinds: the exchange's order reference; else 0
        ("price", np.int64),  # ticks, > 0 (HALT: 0)
        ("qty", np.int32),  # LEVEL: new absolute size; TRADE and ORDER_*: the event's size
        ("level_qty", np.int32),  # visible size at price on side after the event (-1 unknown)
        ("instrument", np.uint16),
        ("kind", np.uint8),  # LEVEL ... SNAPSHOT_END, ORDER_ADD ... HALT
        ("side", np.uint8),  # BID/ASK of the level or resting order; TRADE: aggressor BUY/SELL
        ("flags", np.uint8),  # EVENT_RESYNC ...
        ("reserved", np.uint8, (3,)),  # zero
    ]
)

# Order from the engine to the gateway (always immediate-or-cancel).
ORDER = np.dtype(
    [
        ("order_id", np.int64),  # unique per run, increasing
        ("tick_ns", np.int64),  # send_ns of the market-data message that caused it
        ("price", np.int64),  # limit price in ticks
        ("qty", np.int32),  # lots, > 0
        ("instrument", np.uint16),
        ("side", np.uint8),  # BUY or SELL
        ("flags", np.uint8),  # ORDER_POST, or 0: immediate or cancel
    ]
)
ORDER_POST = 1  # ORDER.flags: rest on the book behind the queue at its price until filled or
# the strategy's order_ttl_us ends (a passive order); without it the order is immediate or cancel

# Execution report from the (simulated) exchange back to the engine.
FILL = np.dtype(
    [
        ("order_id", np.int64),
        ("price", np.int64),  # execution price in ticks (0 when nothing filled)
        ("exchange_ns", np.int64),  # when the exchange handled the order
        ("qty", np.int32),  # filled lots, 0 when cancelled unfilled
        ("instrument", np.uint16),
        ("side", np.uint8),  # side of the order
        ("status", np.uint8),  # FILLED or CANCELLED
    ]
)

# MARKET_DATA.kind
LEVEL = 1
TRADE = 2
SNAPSHOT_BEGIN = 3  # the instrument's book is about to be sent whole: clear it
SNAPSHOT_END = 4  # the instrument's book is complete again

# MARKET_EVENT.kind, beyond the MARKET_DATA kinds: LOBSTER's event types 1-5 and 7
ORDER_ADD = 5  # a new limit order rests at price (LOBSTER 1)
ORDER_CANCEL = 6  # qty of a resting order cancelled, the rest stays (LOBSTER 2)
ORDER_DELETE = 7  # a resting order removed whole (LOBSTER 3)
ORDER_EXECUTE = 8  # qty of a visible resting order traded (LOBSTER 4)
HIDDEN_EXECUTE = 9  # a hidden order traded: a trade, the visible book unchanged (LOBSTER 5)
HALT = 10  # trading halt indicator (LOBSTER 7): the visible book unchanged
ORDER_KINDS = (ORDER_ADD, ORDER_CANCEL, ORDER_DELETE, ORDER_EXECUTE)

# MARKET_EVENT.flags
EVENT_RESYNC = 1  # a LEVEL taken from the source's book, not from a message: a level that
# entered the visible depth from beyond it; it belongs to the message before it

# MARKET_DATA.side for LEVEL, and ORDER.side / FILL.side
BID = 0
ASK = 1
BUY = 0
SELL = 1

# FILL.status
FILLED = 1
CANCELLED = 2

for _dtype in (MARKET_DATA, ORDER, FILL):
    assert _dtype.itemsize == 32, _dtype
assert MARKET_EVENT.itemsize == 48, MARKET_EVENT
