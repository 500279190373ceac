"""The feed handler's recovery client: asks the exchange's TCP recovery service for a gap.

The handler knows what is missing (``feed_handler.handler_missing``); this client sends one
RECOVERY_REQUEST (``contracts.wire``) at a time for it over a connected, non-blocking TCP
socket, reads the reply (packets, each behind a u16 length, then a packet of count 0) as the
stream delivers it, and hands each packet to the handler as RECOVERY. A reply that leaves part
of the range missing (the service no longer holds it) makes the next poll ask again, at most
once per ``retry_ns``; a gap beyond what was asked is asked for as soon as the reply is in.
The handler gives a gap up when its own time runs out.

A frame longer than a datagram, or shorter than a packet header, is a broken stream: the
client counts it and reports the connection unusable (``R_BROKEN``); the stage reconnects.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.wire import LENGTH_PREFIX, MAX_DATAGRAM, RECOVERY_REQUEST, SESSION_BYTES
from service.kernels.feed_handler import RECOVERY, handler_missing, handler_on_datagram
from service.kernels.jit import kernel
from service.kernels.market_packets import HEADER_BYTES, read_be, write_be
from service.kernels.sockets import EAGAIN, EINTR, MSG_DONTWAIT, MSG_NOSIGNAL, errno, recv, send

# ivars[...]
R_FD = 0  # the connected socket, -1 when none
R_OUTSTANDING = 1  # a request is in flight
R_SENT_NS = 2  # when it was sent
R_FILL = 3  # bytes of the reply waiting in ``inbuf``
R_REQUESTS = 4  # requests sent (counter)
R_BROKEN = 5  # frames that broke the stream (counter)
R_RETRY_NS = 6
R_ASKED_END = 7  # the end (exclusive) of the range last asked for
N_IVARS = 8

# recovery_poll's result
POLL_OK = 0
POLL_BROKEN = -1  # the connection is unusable: close it, reconnect, poll again

RecoveryClient = namedtuple("RecoveryClient", "ivars request inbuf packet")
RecoveryClient.__doc__ = "A request's bytes, the reply's unread bytes and one packet's scratch."


def new_recovery_client(fd: int, retry_ns: int) -> RecoveryClient:
    """A client on connected, non-blocking TCP socket ``fd`` (-1: none yet)."""
    ivars = np.zeros(N_IVARS, np.int64)
    ivars[R_FD] = fd
    ivars[R_RETRY_NS] = retry_ns
    return RecoveryClient(
        ivars=ivars,
        request=np.zeros(RECOVERY_REQUEST.itemsize, np.uint8),
        inbuf=np.zeros(16 * (LENGTH_PREFIX + MAX_DATAGRAM), np.uint8),
        packet=np.zeros(MAX_DATAGRAM, np.uint8),
    )


@kernel
def _ask(client, session, first, count, now):
    """Send a request for ``count`` messages from ``first``; False when the socket failed.
    20 bytes on an idle connection: the kernel takes them whole or not at all."""
    req = client.request
    for k in range(SESSION_BYTES):
        req[k] = session[k]
    write_be(req, SESSION_BYTES, 8, first)
    write_be(req, SESSION_BYTES + 8, 2, min(count, 0xFFFE))
    sent = send(client.ivars[R_FD], req.ctypes.data, req.shape[0], MSG_DONTWAIT | MSG_NOSIGNAL)
    if sent != req.shape[0]:
        # not sent (EAGAIN): the next poll asks again; anything else: the socket is gone
        return sent < 0 and errno() in (EAGAIN, EINTR)
    client.ivars[R_OUTSTANDING] = 1
    client.ivars[R_SENT_NS] = now
    client.ivars[R_ASKED_END] = first + min(count, 0xFFFE)
    client.ivars[R_REQUESTS] += 1
    return True


@kernel
def recovery_poll(client, handler, md, now):
    """Ask for what the handler misses, read what has come back, hand it over. Returns
    POLL_OK, or POLL_BROKEN when the connection must be replaced."""
    iv = client.ivars
    if iv[R_FD] < 0:
        return POLL_OK
    first, count = handler_missing(handler)
    # a gap not asked for yet is asked at once; one whose reply left it missing, again after
    # retry_ns (the service may not hold it yet, or any more)
    asked_before = first < iv[R_ASKED_END] and now - iv[R_SENT_NS] < iv[R_RETRY_NS]
    ask = count > 0 and iv[R_OUTSTANDING] == 0 and not asked_before
    if ask and not _ask(client, handler.session, first, count, now):
        return POLL_BROKEN
    buf = client.inbuf
    room = buf.shape[0] - iv[R_FILL]
    got = recv(iv[R_FD], buf.ctypes.data + iv[R_FILL], room, MSG_DONTWAIT)
    if got == 0:
        return POLL_BROKEN  # the service closed the connection
    if got < 0:
        err = errno()
        return POLL_OK if err in (EAGAIN, EINTR) else POLL_BROKEN
    iv[R_FILL] += got
    at = 0
    while iv[R_FILL] - at >= LENGTH_PREFIX:
        length = np.int64(read_be(buf, at, LENGTH_PREFIX))
        if length < HEADER_BYTES or length > MAX_DATAGRAM:
            iv[R_BROKEN] += 1
            return POLL_BROKEN
        if iv[R_FILL] - at < LENGTH_PREFIX + length:
            break  # the rest of this frame is still on its way
        for k in range(length):
            client.packet[k] = buf[at + LENGTH_PREFIX + k]
        if read_be(client.packet, SESSION_BYTES + 8, 2) == 0:
            iv[R_OUTSTANDING] = 0  # the reply is complete
        else:
            handler_on_datagram(handler, client.packet, length, md, RECOVERY, now)
        at += LENGTH_PREFIX + length
    for k in range(iv[R_FILL] - at):  # keep the unread tail at the front
        buf[k] = buf[at + k]
    iv[R_FILL] -= at
    return POLL_OK
