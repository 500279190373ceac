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

# Order from the engine to the gateway (always immediate-or-cancel).
ORDER = np.dtype(
    [
        ("order_id", np.int64),  # unique per run, increasing
        ("tick_ns", np.int64),  # send_ns of the market-data message that caused it
        ("price", np.int64),  # limit price in ticks
        ("qty", np.int32),  # lots, > 0
        ("instrument", np.uint16),
        ("side", np.uint8),  # BUY or SELL
        ("flags", np.uint8),  # reserved, 0
    ]
)

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
