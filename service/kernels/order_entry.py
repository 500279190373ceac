"""The gateway's order entry over TCP (OUCH-like, ``contracts.wire``), compiled.

Orders leave as ENTER messages on a connection the gateway opens and reopens itself
(``tcp_link``); the exchange's ACCEPTED, EXECUTED, CANCELED and REJECTED come back numbered
with the session's sequence numbers, and each order's end becomes one FILL report for the
engine (the lots filled, at the last execution's price, or CANCELLED with none).

Every order the gateway has sent and not seen end stays in a fixed table, by token (the
engine's order id), with what is known of it: not sent on this connection, sent, or accepted.
After a reconnect nothing is lost and nothing is entered twice:

1. the gateway logs in with the next sequence number it expects; the exchange replays every
   message from there, then sends a HEARTBEAT: caught up (``SESSION_READY``);
2. an order the replay showed accepted (or ended) is the exchange's already; only the orders
   it never saw are sent again, and new ones wait for the login to finish.

The exchange also ignores an ENTER whose token it knows, but the gateway does not lean on it.
A message numbered beyond the next expected one, or a frame that cannot be a message, breaks
the stream: the connection is dropped and the login's replay fills the hole. Heartbeats go out
when the gateway has sent nothing for ``heartbeat_ns``; an exchange silent for three of its own
heartbeat intervals (a second, SoupBinTCP's convention) or three of ours, whichever is longer,
is taken as gone.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.records import CANCELLED, FILLED, ORDER
from contracts.wire import (
    ACCEPTED,
    CANCELED,
    ENTER,
    ENTRY_MESSAGES,
    EXECUTED,
    HEARTBEAT,
    LENGTH_PREFIX,
    LOGIN,
    REJECTED,
    SESSION_BYTES,
    field_offset,
)
from service.kernels.jit import kernel
from service.kernels.market_packets import read_be, write_be
from service.kernels.ring import ring_claim, ring_publish, ring_write_slot
from service.kernels.sockets import EAGAIN, EINTR, MSG_DONTWAIT, MSG_NOSIGNAL, errno, recv, send
from service.kernels.tcp_link import L_FD, UP, link_drop, link_poll, new_tcp_link

EXCHANGE_HEARTBEAT_NS = 1_000_000_000  # how often an idle exchange says it is there

# order states in the table
FREE, UNSENT, SENT, LIVE = 0, 1, 2, 3  # LIVE: accepted by the exchange

# session states
SESSION_DOWN, SESSION_LOGGING_IN, SESSION_READY = 0, 1, 2

# ivars[...]
O_ON = 0  # 1: orders go to an exchange over TCP; 0: the in-process simulated exchange
O_SESSION = 1
O_NEXT_SEQ = 2  # the next exchange sequence number expected
O_OUT = 3  # bytes waiting in ``outbuf``
O_IN = 4  # bytes waiting in ``inbuf``
O_LAST_SENT_NS = 5
O_LAST_HEARD_NS = 6
O_HEARTBEAT_NS = 7
O_OPEN = 8  # orders in the table
O_ENTERED = 9  # ENTER messages sent (counter), resends included
O_RESENT = 10  # orders sent again after a reconnect (counter)
O_REJECTED = 11  # orders the exchange rejected (counter)
O_BROKEN = 12  # streams dropped as broken or silent (counter)
O_TABLE_FULL = 13  # times an order waited for a free slot (counter)
O_UNSENT = 14  # orders in the table waiting to be sent
O_FILLED = 15  # orders that ended with lots filled (counter)
O_CANCELED = 16  # orders that ended with none (counter)
O_CONNECTS = 17  # sessions logged in (counter)
O_DOWN_SINCE_NS = 18  # when the session last stopped being ready
N_IVARS = 19

OrderEntry = namedtuple(
    "OrderEntry", "ivars link session outbuf inbuf orders state filled last_price"
)
OrderEntry.__doc__ = "The connection, its buffers, and the table of orders not yet ended."

_ENTER = ENTRY_MESSAGES[ENTER]
_LOGIN = ENTRY_MESSAGES[LOGIN]
_ACCEPTED = ENTRY_MESSAGES[ACCEPTED]
_EXECUTED = ENTRY_MESSAGES[EXECUTED]
_CANCELED = ENTRY_MESSAGES[CANCELED]
_REJECTED = ENTRY_MESSAGES[REJECTED]
_HEARTBEAT = ENTRY_MESSAGES[HEARTBEAT]
ENTER_BYTES = 1 + _ENTER.itemsize  # type byte and body
LOGIN_BYTES = 1 + _LOGIN.itemsize
HEARTBEAT_BYTES = 1 + _HEARTBEAT.itemsize
# body offsets, after the type byte
_E_TOKEN = 1 + field_offset(_ENTER, "token")
_E_INSTRUMENT = 1 + field_offset(_ENTER, "instrument")
_E_SIDE = 1 + field_offset(_ENTER, "side")
_E_FLAGS = 1 + field_offset(_ENTER, "flags")
_E_QTY = 1 + field_offset(_ENTER, "qty")
_E_PRICE = 1 + field_offset(_ENTER, "price")
_L_NEXT = 1 + field_offset(_LOGIN, "next_seq")
_X_QTY = 1 + field_offset(_EXECUTED, "qty")
_X_PRICE = 1 + field_offset(_EXECUTED, "price")
_R_SEQ = 1  # every exchange message starts with its sequence number
_R_TOKEN = 9  # ... then the token (all but HEARTBEAT)
MAX_MESSAGE = 1 + max(d.itemsize for d in ENTRY_MESSAGES.values())
# what each type from the exchange must measure, type byte included
_SIZES = np.zeros(256, np.int64)
for _type, _dtype in ENTRY_MESSAGES.items():
    _SIZES[_type] = 1 + _dtype.itemsize
_FROM_EXCHANGE = (ACCEPTED, EXECUTED, CANCELED, REJECTED, HEARTBEAT)


def new_order_entry(link, session: np.ndarray, table: int, heartbeat_ns: int) -> OrderEntry:
    """Order entry over ``link`` for ``session`` with room for ``table`` open orders (a power
    of two); ``link`` None makes the placeholder of the simulated exchange (same types)."""
    if table & (table - 1):
        raise ValueError(f"table must be a power of two (got {table})")
    ivars = np.zeros(N_IVARS, np.int64)
    ivars[O_ON] = link is not None
    ivars[O_NEXT_SEQ] = 1
    ivars[O_HEARTBEAT_NS] = heartbeat_ns
    if link is None:
        link = new_tcp_link("127.0.0.1", 1)  # never polled
    buffer = 64 * (LENGTH_PREFIX + MAX_MESSAGE)
    return OrderEntry(
        ivars,
        link,
        np.asarray(session, np.uint8).copy(),
        np.zeros(max(buffer, table * (LENGTH_PREFIX + ENTER_BYTES)), np.uint8),
        np.zeros(buffer, np.uint8),
        np.zeros(table, ORDER),
        np.zeros(table, np.int64),
        np.zeros(table, np.int64),
        np.zeros(table, np.int64),
    )


# ------------------------------------------------------------------------------------ sending


@kernel
def _flush(oe, now):
    """Send what waits in ``outbuf`` (as much as the socket takes); False when it failed."""
    iv = oe.ivars
    if iv[O_OUT] == 0:
        return True
    sent = send(oe.link.ivars[L_FD], oe.outbuf.ctypes.data, iv[O_OUT], MSG_DONTWAIT | MSG_NOSIGNAL)
    if sent < 0:
        return errno() in (EAGAIN, EINTR)
    for k in range(iv[O_OUT] - sent):  # keep the unsent tail at the front
        oe.outbuf[k] = oe.outbuf[sent + k]
    iv[O_OUT] -= sent
    iv[O_LAST_SENT_NS] = now
    return True


@kernel
def _room(oe, size):
    return oe.outbuf.shape[0] - oe.ivars[O_OUT] >= LENGTH_PREFIX + size


@kernel
def _put_enter(oe, slot):
    """Append the ENTER of the order in ``slot`` to ``outbuf`` (room checked by the caller)."""
    at = oe.ivars[O_OUT]
    buf = oe.outbuf
    write_be(buf, at, LENGTH_PREFIX, ENTER_BYTES)
    at += LENGTH_PREFIX
    o = oe.orders[slot]
    buf[at] = ENTER
    write_be(buf, at + _E_TOKEN, 8, o.order_id)
    write_be(buf, at + _E_INSTRUMENT, 2, o.instrument)
    buf[at + _E_SIDE] = o.side
    buf[at + _E_FLAGS] = o.flags
    write_be(buf, at + _E_QTY, 4, o.qty)
    write_be(buf, at + _E_PRICE, 8, o.price)
    oe.ivars[O_OUT] = at + ENTER_BYTES
    if oe.state[slot] == UNSENT:
        oe.ivars[O_UNSENT] -= 1
    oe.state[slot] = SENT
    oe.ivars[O_ENTERED] += 1


@kernel
def _put_login(oe):
    at = oe.ivars[O_OUT]
    buf = oe.outbuf
    write_be(buf, at, LENGTH_PREFIX, LOGIN_BYTES)
    at += LENGTH_PREFIX
    buf[at] = LOGIN
    for k in range(SESSION_BYTES):
        buf[at + 1 + k] = oe.session[k]
    write_be(buf, at + _L_NEXT, 8, oe.ivars[O_NEXT_SEQ])
    oe.ivars[O_OUT] = at + LOGIN_BYTES


@kernel
def _put_heartbeat(oe):
    at = oe.ivars[O_OUT]
    write_be(oe.outbuf, at, LENGTH_PREFIX, HEARTBEAT_BYTES)
    oe.outbuf[at + LENGTH_PREFIX] = HEARTBEAT
    write_be(oe.outbuf, at + LENGTH_PREFIX + 1, 8, 0)
    oe.ivars[O_OUT] = at + LENGTH_PREFIX + HEARTBEAT_BYTES


@kernel
def order_entry_enter(oe, order, now):
    """Take ``order`` into the table and send it if the session is ready (else it goes with
    the login's reconciliation). False when its slot is still taken: the caller keeps it."""
    mask = oe.orders.shape[0] - 1
    slot = order.order_id & mask
    if oe.state[slot] != FREE:
        oe.ivars[O_TABLE_FULL] += 1
        return False
    oe.orders[slot] = order
    oe.state[slot] = UNSENT
    oe.filled[slot] = 0
    oe.last_price[slot] = 0
    oe.ivars[O_OPEN] += 1
    oe.ivars[O_UNSENT] += 1
    if oe.ivars[O_SESSION] == SESSION_READY and _room(oe, ENTER_BYTES):
        _put_enter(oe, slot)
    return True


@kernel
def order_entry_send(oe, now):
    """Send what the last ``order_entry_enter`` calls queued (a dropped connection is found,
    and handled, by the next poll)."""
    if oe.ivars[O_SESSION] == SESSION_READY:
        _flush(oe, now)


# ------------------------------------------------------------------------------------ receiving


@kernel
def _end(oe, slot, fills, now):
    """The order in ``slot`` has ended: its one report to the engine. False: no room yet."""
    if ring_claim(fills, 1) < 1:
        return False
    o = oe.orders[slot]
    report = fills.data[ring_write_slot(fills, 0)]
    report.order_id = o.order_id
    report.instrument = o.instrument
    report.side = o.side
    report.exchange_ns = now
    report.qty = oe.filled[slot]
    report.price = oe.last_price[slot] if oe.filled[slot] > 0 else 0
    report.status = FILLED if oe.filled[slot] > 0 else CANCELLED
    ring_publish(fills, 1)
    if oe.filled[slot] > 0:
        oe.ivars[O_FILLED] += 1
    else:
        oe.ivars[O_CANCELED] += 1
    if oe.state[slot] == UNSENT:  # ended before it was sent again: the replay showed its end
        oe.ivars[O_UNSENT] -= 1
    oe.state[slot] = FREE
    oe.ivars[O_OPEN] -= 1
    return True


@kernel
def _slot_of(oe, token):
    """The table slot of ``token``, -1 when no open order has it."""
    slot = token & (oe.orders.shape[0] - 1)
    if oe.state[slot] == FREE or oe.orders[slot].order_id != token:
        return np.int64(-1)
    return slot


@kernel
def _apply(oe, msg, at, kind, fills, now):
    """Apply one checked message at ``msg[at]``; -1 when it breaks the stream, 0 when the fill
    ring has no room (try again later), 1 when applied."""
    iv = oe.ivars
    seq = np.int64(read_be(msg, at + _R_SEQ, 8))
    if kind == HEARTBEAT:
        if iv[O_SESSION] == SESSION_LOGGING_IN and seq == iv[O_NEXT_SEQ] - 1:
            iv[O_SESSION] = SESSION_READY  # caught up: the replay is over
        return 1
    if seq < iv[O_NEXT_SEQ]:
        return 1  # seen before
    if seq > iv[O_NEXT_SEQ]:
        return -1  # a hole: the login's replay fills it
    slot = _slot_of(oe, np.int64(read_be(msg, at + _R_TOKEN, 8)))
    if slot >= 0:
        if kind == ACCEPTED:
            oe.state[slot] = LIVE
        elif kind == EXECUTED:
            oe.state[slot] = LIVE
            oe.filled[slot] += np.int64(read_be(msg, at + _X_QTY, 4))
            oe.last_price[slot] = np.int64(read_be(msg, at + _X_PRICE, 8))
            if oe.filled[slot] >= oe.orders[slot].qty and not _end(oe, slot, fills, now):
                return 0
        else:  # CANCELED, REJECTED: the order is over
            if kind == REJECTED:
                iv[O_REJECTED] += 1
            if not _end(oe, slot, fills, now):
                return 0
    iv[O_NEXT_SEQ] = seq + 1
    return 1


@kernel
def _read(oe, fills, now):
    """Read and apply what the exchange sent; False when the stream broke or closed."""
    iv = oe.ivars
    buf = oe.inbuf
    room = buf.shape[0] - iv[O_IN]
    got = np.int64(0)  # a full buffer waits for the engine to take its fills
    if room > 0:
        got = recv(oe.link.ivars[L_FD], buf.ctypes.data + iv[O_IN], room, MSG_DONTWAIT)
    if got == 0 and room > 0:
        return False  # the exchange closed the connection
    if got < 0:
        if errno() not in (EAGAIN, EINTR):
            return False
        got = 0
    if got > 0:
        iv[O_IN] += got
        iv[O_LAST_HEARD_NS] = now
    at = 0
    ok = True
    while iv[O_IN] - at >= LENGTH_PREFIX + 1:
        length = np.int64(read_be(buf, at, LENGTH_PREFIX))
        kind = buf[at + LENGTH_PREFIX]
        if kind not in _FROM_EXCHANGE or length != _SIZES[kind]:
            ok = False
            break
        if iv[O_IN] - at < LENGTH_PREFIX + length:
            break  # the rest is on its way
        applied = _apply(oe, buf, at + LENGTH_PREFIX, kind, fills, now)
        if applied < 0:
            ok = False
            break
        if applied == 0:
            break  # the engine has not taken its fills yet: the rest waits here
        at += LENGTH_PREFIX + length
    for k in range(iv[O_IN] - at):
        buf[k] = buf[at + k]
    iv[O_IN] -= at
    return ok


# ------------------------------------------------------------------------------------ the poll


@kernel
def _send_waiting(oe, resend):
    """Send the orders waiting in the table (with ``resend``, also those sent on a connection
    that is gone and that the login's replay did not show accepted)."""
    for slot in range(oe.orders.shape[0]):
        if not _room(oe, ENTER_BYTES):
            return
        if oe.state[slot] == UNSENT or (resend and oe.state[slot] == SENT):
            if oe.state[slot] == SENT:
                oe.ivars[O_RESENT] += 1
            _put_enter(oe, slot)


@kernel
def _session_down(oe, now):
    if oe.ivars[O_SESSION] == SESSION_READY or oe.ivars[O_DOWN_SINCE_NS] == 0:
        oe.ivars[O_DOWN_SINCE_NS] = now
    oe.ivars[O_SESSION] = SESSION_DOWN


@kernel
def order_entry_gone(oe, now):
    """True when the exchange has been unreachable for longer than it may be silent: orders
    still open there will not be heard of on this run (a drain stops waiting for them)."""
    iv = oe.ivars
    silence = 3 * max(iv[O_HEARTBEAT_NS], EXCHANGE_HEARTBEAT_NS)
    return iv[O_SESSION] != SESSION_READY and now - iv[O_DOWN_SINCE_NS] > silence


@kernel
def _lost(oe, now):
    """The connection is gone: every order not accepted is sent again once logged in."""
    link_drop(oe.link, now)
    _session_down(oe, now)
    oe.ivars[O_OUT] = 0
    oe.ivars[O_IN] = 0
    oe.ivars[O_BROKEN] += 1


@kernel
def order_entry_poll(oe, fills, now):
    """Keep the session up, read the exchange's messages, send what waits. Returns the
    session's state (SESSION_READY when orders can go)."""
    iv = oe.ivars
    if link_poll(oe.link, now) != UP:
        _session_down(oe, now)
        return iv[O_SESSION]
    if iv[O_SESSION] == SESSION_DOWN:  # a new connection: log in, ask for what was missed
        iv[O_OUT] = 0
        iv[O_IN] = 0
        _put_login(oe)
        iv[O_SESSION] = SESSION_LOGGING_IN
        iv[O_LAST_HEARD_NS] = now
    was_ready = iv[O_SESSION] == SESSION_READY
    silence = 3 * max(iv[O_HEARTBEAT_NS], EXCHANGE_HEARTBEAT_NS)
    if not _read(oe, fills, now) or now - iv[O_LAST_HEARD_NS] > silence:
        _lost(oe, now)
        return iv[O_SESSION]
    if iv[O_SESSION] == SESSION_READY and not was_ready:
        iv[O_CONNECTS] += 1
        _send_waiting(oe, True)  # caught up: what the exchange never saw goes now
    elif iv[O_SESSION] == SESSION_READY and iv[O_UNSENT] > 0:
        _send_waiting(oe, False)
    if (
        iv[O_OUT] == 0
        and iv[O_SESSION] == SESSION_READY
        and now - iv[O_LAST_SENT_NS] >= iv[O_HEARTBEAT_NS]
    ):
        _put_heartbeat(oe)
    if not _flush(oe, now):
        _lost(oe, now)
    return iv[O_SESSION]
