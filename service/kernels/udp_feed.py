"""The UDP feed: datagrams from the socket through the handler into the ring, with the gap
recovery and expiry around them, as the feed stage of ``source = "udp"``.

``udp_feed_poll`` is one poll (bounded, never blocking); ``udp_feed_step`` is the stage's step
around it: it keeps the recovery connection up (``tcp_link``: reconnected with backoff when the
service drops it or the stream breaks), records each message's lag from the exchange's
intended send time, and copies the handler's counters into the feed's stats section. The stage
ends when the exchange ends the session and nothing is missing or held.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts import segments as C
from contracts import stats_layout as L
from contracts.wire import MAX_DATAGRAM, MAX_MESSAGES_PER_PACKET
from service.kernels import feed_handler as fh
from service.kernels.atomics import load_acquire, monotonic_ns
from service.kernels.feed_handler import (
    LIVE,
    handler_expire,
    handler_missing,
    handler_on_datagram,
    handler_release,
)
from service.kernels.histogram import hist_record
from service.kernels.jit import kernel
from service.kernels.recovery import (
    POLL_BROKEN,
    R_FD,
    R_FILL,
    R_OUTSTANDING,
    R_REQUESTS,
    recovery_poll,
)
from service.kernels.ring import L_HEAD, ring_claim
from service.kernels.sockets import new_receive_batch, receive_batch
from service.kernels.tcp_link import L_CONNECTS, L_DROPS, L_FD, L_STATE, UP, link_drop, link_poll

POLL_SOCKET_FAILED = -2  # udp_feed_poll: the market-data socket returned an error

# UdpFeed.ivars[...]
U_FD = 0  # the market-data socket; -1: this feed is not a UDP one
U_GAP_TIMEOUT_NS = 1
N_IVARS = 2
RECEIVE_SLOTS = 32  # datagrams one recvmmsg may return

UdpFeed = namedtuple("UdpFeed", "ivars batch handler client link")
UdpFeed.__doc__ = "The UDP feed stage's socket, receive vectors, handler and recovery client."


def new_udp_feed(fd: int, handler, client, link, gap_timeout_ns: int) -> UdpFeed:
    """A UDP feed on bound, non-blocking socket ``fd`` (-1: none, the feed is another source)."""
    ivars = np.zeros(N_IVARS, np.int64)
    ivars[U_FD] = fd
    ivars[U_GAP_TIMEOUT_NS] = gap_timeout_ns
    slots = RECEIVE_SLOTS if fd >= 0 else 1
    return UdpFeed(ivars, new_receive_batch(slots, MAX_DATAGRAM), handler, client, link)


@kernel
def udp_feed_poll(fd, batch, handler, client, md, now, gap_timeout_ns):  # noqa: PLR0913
    """Deliver what is held and what has arrived on ``fd``, ask for and take recovery, give up
    a gap older than ``gap_timeout_ns``. Returns (messages delivered, status): status 0, or
    POLL_BROKEN (the recovery connection must be replaced) or POLL_SOCKET_FAILED."""
    delivered = handler_release(handler, md)
    status = 0
    # read while the ring has room for a packet: the rest waits in the socket's buffer (and a
    # packet that does not fit whole is held, in order)
    if ring_claim(md, MAX_MESSAGES_PER_PACKET) == MAX_MESSAGES_PER_PACKET:
        got = receive_batch(fd, batch)
        if got < 0:
            status = POLL_SOCKET_FAILED
        for k in range(max(got, 0)):
            n = batch.headers[k].len
            delivered += handler_on_datagram(handler, batch.data[k], n, md, LIVE, now)
    if recovery_poll(client, handler, md, now) == POLL_BROKEN:
        status = POLL_BROKEN
    delivered += handler_expire(handler, md, now, gap_timeout_ns)
    return delivered, status


@kernel
def _reset_client(client):
    """Forget what was in flight on a connection that is gone: the next one asks again."""
    client.ivars[R_FD] = -1
    client.ivars[R_OUTSTANDING] = 0
    client.ivars[R_FILL] = 0


@kernel
def _publish_counters(net, local):
    c = net.handler.counters
    local[L.UDP_PACKETS] = c[fh.C_PACKETS]
    local[L.UDP_BYTES] = c[fh.C_BYTES]
    local[L.FEED_GAPS] = c[fh.C_GAPS]
    local[L.MD_RECOVERED] = c[fh.C_RECOVERED]
    local[L.MD_GIVEN_UP] = c[fh.C_LOST]
    local[L.MD_DUPLICATES] = c[fh.C_DUPLICATES]
    local[L.UDP_MALFORMED] = c[fh.C_MALFORMED]
    local[L.UDP_WRONG_SESSION] = c[fh.C_WRONG_SESSION]
    local[L.UDP_HEARTBEATS] = c[fh.C_HEARTBEATS]
    local[L.RECOVERY_CONNECTED] = net.link.ivars[L_STATE] == UP
    local[L.RECOVERY_CONNECTS] = net.link.ivars[L_CONNECTS]
    local[L.RECOVERY_REQUESTS] = net.client.ivars[R_REQUESTS]
    local[L.RECOVERY_DROPS] = net.link.ivars[L_DROPS]


@kernel
def udp_feed_step(net, md, ctrl, shared_stats, local, now):
    """The feed stage's step for ``source = "udp"``; True once stopped or the session has
    ended with nothing missing or held."""
    if load_acquire(ctrl, C.STOP) != 0:
        return True
    h = net.handler
    if link_poll(net.link, now) == UP:
        net.client.ivars[R_FD] = net.link.ivars[L_FD]
    head = md.local[L_HEAD]
    _, status = udp_feed_poll(
        net.ivars[U_FD], net.batch, h, net.client, md, now, net.ivars[U_GAP_TIMEOUT_NS]
    )
    if status == POLL_BROKEN:
        link_drop(net.link, now)
        _reset_client(net.client)
    elif status == POLL_SOCKET_FAILED:
        local[L.UDP_SOCKET_ERRORS] += 1
    delivered = md.local[L_HEAD] - head  # live, released and recovered alike
    if delivered > 0:
        # the slots just written are the producer's own until the consumer has read them:
        # reading them back for the lag races with nothing
        written = monotonic_ns()
        for k in range(delivered):
            msg = md.data[(head + k) & md.mask]
            hist_record(shared_stats, L.H_FEED_LAG, written - msg.send_ns)
        local[L.MD_SENT] += delivered
    _publish_counters(net, local)
    _, missing = handler_missing(h)
    return h.ivars[fh.I_ENDED] != 0 and missing == 0 and h.ivars[fh.I_HELD] == 0
