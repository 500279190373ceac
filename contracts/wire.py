"""The network formats: sequenced market data over UDP and order entry over TCP, byte by byte.

Both sides use these dtypes and constants: the exchange simulator that writes the bytes and
the numba feed handler and gateway that read them, so a field cannot mean one thing on one
side and another on the other. Multi-byte fields are big-endian (network order), as in the
NASDAQ protocols the formats follow.

**Market data** (MoldUDP64-like). One UDP datagram is a packet::

    PACKET_HEADER   session (10 ASCII bytes), sequence number of its first message (u64),
                    message count (u16): 0 is a heartbeat, END_OF_SESSION ends the session
    count times     u16 length, then that many bytes: one MD_MESSAGE

A message's sequence number is the packet's plus its index in the packet. A receiver that
sees a packet start beyond the next number it expects has a gap; it asks the recovery service
(TCP) for the missing range with a RECOVERY_REQUEST and gets them back as packets, each behind
a u16 length (a TCP stream has no datagram boundaries).

**Order entry** (OUCH-like, over TCP). Every message is a u16 length, then that many bytes,
the first of which is its type; sizes are fixed per type (``ENTRY_MESSAGES``).
"""

from __future__ import annotations

import numpy as np

SESSION_BYTES = 10
PACKET_HEADER = np.dtype([("session", f"S{SESSION_BYTES}"), ("seq", ">u8"), ("count", ">u2")])
LENGTH_PREFIX = 2  # bytes of the u16 length before each message (and each packet over TCP)
END_OF_SESSION = 0xFFFF  # PACKET_HEADER.count of the packet that ends a session

# One market-data message: a MARKET_DATA record (contracts.records) without its sequence
# number, which the packet carries. ``kind`` takes MARKET_DATA's kinds (LEVEL, TRADE, ...).
MD_MESSAGE = np.dtype(
    [
        ("kind", "u1"),
        ("side", "u1"),
        ("instrument", ">u2"),
        ("qty", ">i4"),
        ("price", ">i8"),
        ("send_ns", ">i8"),
    ]
)
MAX_DATAGRAM = 1472  # an Ethernet frame's UDP payload (MTU 1500): a packet never fragments
MAX_MESSAGES_PER_PACKET = (MAX_DATAGRAM - PACKET_HEADER.itemsize) // (
    LENGTH_PREFIX + MD_MESSAGE.itemsize
)

# Recovery (TCP): the request names the session and the range; the reply is the packets that
# carry it, each behind a u16 length, then a packet of count 0 (nothing more to come).
RECOVERY_REQUEST = PACKET_HEADER

# Order entry: message types and their bodies after the type byte.
ENTER, CANCEL, ACCEPTED, EXECUTED, CANCELED, REJECTED, HEARTBEAT, LOGIN = b"OXAECJHL"
ENTRY_MESSAGES = {
    # client -> exchange
    ENTER: np.dtype(
        [
            ("token", ">u8"),  # the client's order id, unique in the session
            ("instrument", ">u2"),
            ("side", "u1"),  # BUY or SELL (contracts.records)
            ("flags", "u1"),  # ORDER_POST to rest; 0 immediate or cancel
            ("qty", ">i4"),
            ("price", ">i8"),
        ]
    ),
    CANCEL: np.dtype([("token", ">u8")]),
    LOGIN: np.dtype([("session", f"S{SESSION_BYTES}"), ("next_seq", ">u8")]),
    # exchange -> client: each carries the exchange's sequence number for the session, so a
    # client that reconnects asks (LOGIN.next_seq) for what it missed
    ACCEPTED: np.dtype([("seq", ">u8"), ("token", ">u8"), ("exchange_ns", ">i8")]),
    EXECUTED: np.dtype(
        [("seq", ">u8"), ("token", ">u8"), ("qty", ">i4"), ("price", ">i8"), ("match", ">u8")]
    ),
    CANCELED: np.dtype([("seq", ">u8"), ("token", ">u8"), ("qty", ">i4")]),  # the qty left
    REJECTED: np.dtype([("seq", ">u8"), ("token", ">u8"), ("reason", "u1")]),
    HEARTBEAT: np.dtype([("seq", ">u8")]),  # both ways; seq: the sender's last sequence number
}

assert PACKET_HEADER.itemsize == 20, PACKET_HEADER
assert MD_MESSAGE.itemsize == 24, MD_MESSAGE


def field_offset(dtype: np.dtype, name: str) -> int:
    """Byte offset of ``name`` in ``dtype``: the kernels' constants come from here."""
    fields = dtype.fields
    if fields is None or name not in fields:
        raise KeyError(f"{dtype} has no field {name!r}")
    return int(fields[name][1])
