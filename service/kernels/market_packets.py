"""Sequenced market-data packets (``contracts.wire``): build one, check one, read its messages.

The exchange side builds packets from MARKET_DATA records (``packet_build``); the feed handler
checks each datagram whole before it trusts any of it (``packet_check``) and then copies its
messages into MARKET_DATA records (``packet_message``). A packet that fails a check is dropped
whole and counted by the caller: a short header, a length that disagrees with the count, a
message of the wrong size, an unknown kind, a side, instrument, price or size no record may
carry. Nothing a packet holds can make a kernel read or write outside its arrays.
"""

from __future__ import annotations

import numpy as np

from contracts.records import LEVEL, SNAPSHOT_END, TRADE
from contracts.wire import (
    END_OF_SESSION,
    LENGTH_PREFIX,
    MD_MESSAGE,
    PACKET_HEADER,
    SESSION_BYTES,
    field_offset,
)
from service.kernels.jit import inline_kernel, kernel

# packet_check's verdicts
P_DATA = 0  # messages to deliver
P_HEARTBEAT = 1  # no messages; its sequence number is the next one the sender will use
P_END = 2  # the session has ended
P_MALFORMED = 3
P_WRONG_SESSION = 4

HEADER_BYTES = PACKET_HEADER.itemsize
_SEQ = field_offset(PACKET_HEADER, "seq")
_COUNT = field_offset(PACKET_HEADER, "count")
MESSAGE_BYTES = MD_MESSAGE.itemsize
_SLOT = LENGTH_PREFIX + MESSAGE_BYTES  # one message on the wire, with its length
_KIND = LENGTH_PREFIX + field_offset(MD_MESSAGE, "kind")
_SIDE = LENGTH_PREFIX + field_offset(MD_MESSAGE, "side")
_INSTRUMENT = LENGTH_PREFIX + field_offset(MD_MESSAGE, "instrument")
_QTY = LENGTH_PREFIX + field_offset(MD_MESSAGE, "qty")
_PRICE = LENGTH_PREFIX + field_offset(MD_MESSAGE, "price")
_SEND_NS = LENGTH_PREFIX + field_offset(MD_MESSAGE, "send_ns")


@inline_kernel
def read_be(buf, at, width):
    """Unsigned big-endian integer of ``width`` bytes at ``buf[at]``."""
    value = np.uint64(0)
    for k in range(width):
        value = (value << np.uint64(8)) | np.uint64(buf[at + k])
    return value


@inline_kernel
def write_be(buf, at, width, value):
    """Store the low ``width`` bytes of ``value`` big-endian at ``buf[at]``."""
    v = np.uint64(value)
    for k in range(width - 1, -1, -1):
        buf[at + k] = np.uint8(v & np.uint64(0xFF))
        v >>= np.uint64(8)


@inline_kernel
def _signed32(value):
    v = np.int64(value)
    return v - (np.int64(1) << 32) if v >= (np.int64(1) << 31) else v


@kernel
def packet_check(buf, n, session, n_instruments):
    """Verdict on the datagram ``buf[:n]`` for ``session`` (SESSION_BYTES uint8) and a book of
    ``n_instruments``: (P_*, sequence number of its first message, message count)."""
    zero = np.int64(0)
    if n < HEADER_BYTES or n > buf.shape[0]:
        return P_MALFORMED, zero, zero
    for k in range(SESSION_BYTES):
        if buf[k] != session[k]:
            return P_WRONG_SESSION, zero, zero
    seq = np.int64(read_be(buf, _SEQ, 8))
    count = np.int64(read_be(buf, _COUNT, 2))
    if seq <= 0:  # numbers start at 1; beyond 2^63 is not a sequence number either
        return P_MALFORMED, zero, zero
    if count == END_OF_SESSION:
        return (P_END if n == HEADER_BYTES else P_MALFORMED), seq, zero
    if n != HEADER_BYTES + count * _SLOT:
        return P_MALFORMED, zero, zero
    for m in range(count):
        at = HEADER_BYTES + m * _SLOT
        if read_be(buf, at, LENGTH_PREFIX) != MESSAGE_BYTES:
            return P_MALFORMED, zero, zero
        kind = buf[at + _KIND]
        if kind < LEVEL or kind > SNAPSHOT_END or buf[at + _SIDE] > 1:
            return P_MALFORMED, zero, zero
        if np.int64(read_be(buf, at + _INSTRUMENT, 2)) >= n_instruments:
            return P_MALFORMED, zero, zero
        qty = _signed32(read_be(buf, at + _QTY, 4))
        price = np.int64(read_be(buf, at + _PRICE, 8))
        if (kind in (LEVEL, TRADE)) and (price <= 0 or qty < 0):
            return P_MALFORMED, zero, zero
    return (P_HEARTBEAT if count == 0 else P_DATA), seq, count


@kernel
def packet_message(buf, m, seq, out, i):
    """Message ``m`` of a packet that ``packet_check`` passed into MARKET_DATA ``out[i]``, with
    sequence number ``seq``."""
    at = HEADER_BYTES + m * _SLOT
    rec = out[i]
    rec.seq = seq
    rec.send_ns = np.int64(read_be(buf, at + _SEND_NS, 8))
    rec.price = np.int64(read_be(buf, at + _PRICE, 8))
    rec.qty = _signed32(read_be(buf, at + _QTY, 4))
    rec.instrument = read_be(buf, at + _INSTRUMENT, 2)
    rec.kind = buf[at + _KIND]
    rec.side = buf[at + _SIDE]


@kernel
def packet_build(buf, session, seq, records, start, count):
    """Write a packet of ``records[start:start + count]`` (MARKET_DATA) numbered from ``seq``
    into ``buf``; returns its length. ``count`` 0 is a heartbeat, END_OF_SESSION the end."""
    for k in range(SESSION_BYTES):
        buf[k] = session[k]
    write_be(buf, _SEQ, 8, seq)
    write_be(buf, _COUNT, 2, count)
    if count == END_OF_SESSION:
        return HEADER_BYTES
    for m in range(count):
        at = HEADER_BYTES + m * _SLOT
        rec = records[start + m]
        write_be(buf, at, LENGTH_PREFIX, MESSAGE_BYTES)
        buf[at + _KIND] = rec.kind
        buf[at + _SIDE] = rec.side
        write_be(buf, at + _INSTRUMENT, 2, rec.instrument)
        write_be(buf, at + _QTY, 4, rec.qty)
        write_be(buf, at + _PRICE, 8, rec.price)
        write_be(buf, at + _SEND_NS, 8, rec.send_ns)
    return HEADER_BYTES + count * _SLOT


def session_bytes(name: str) -> np.ndarray:
    """A session name as the SESSION_BYTES the packets carry: ASCII, space-padded, as MoldUDP64
    writes it. ValueError for a name that is not printable ASCII or is too long."""
    if not name or len(name) > SESSION_BYTES or not (name.isascii() and name.isprintable()):
        raise ValueError(
            f"session {name!r}: 1 to {SESSION_BYTES} printable ASCII characters, e.g. LOWLAT0001"
        )
    return np.frombuffer(name.ljust(SESSION_BYTES).encode(), np.uint8).copy()
