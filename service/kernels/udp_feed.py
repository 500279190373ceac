"""The UDP feed's poll: datagrams from the socket through the handler into the ring, with the
gap recovery and expiry around them. One call does a bounded amount of work and never blocks.
"""

from __future__ import annotations

from contracts.wire import MAX_MESSAGES_PER_PACKET
from service.kernels.feed_handler import (
    LIVE,
    handler_expire,
    handler_on_datagram,
    handler_release,
)
from service.kernels.jit import kernel
from service.kernels.recovery import POLL_BROKEN, recovery_poll
from service.kernels.ring import ring_claim
from service.kernels.sockets import receive_batch

POLL_SOCKET_FAILED = -2  # udp_feed_poll: the market-data socket returned an error


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
