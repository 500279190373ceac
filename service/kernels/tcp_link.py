"""A TCP connection that a stage opens, and opens again after a drop, from compiled code.

A link is DOWN (no socket; the next attempt is due at ``L_RETRY_AT_NS``), CONNECTING (a
non-blocking connect in progress) or UP. ``link_poll`` moves it on and never blocks: when an
attempt is due it opens a socket and starts a connect; while one is in progress it asks
``connect`` again, which Linux answers with 0 or EISCONN once the handshake is done, EALREADY
while it is not, and the error when it failed. An attempt that fails, or takes longer than
``connect_timeout_ns`` (a SYN into a dead route would otherwise wait minutes), and a drop
(``link_drop``, when the user of the link finds the stream broken) close the socket and wait
before the next attempt: ``backoff_min_ns`` at first, twice as long after each failure up to
``backoff_max_ns``, back to the minimum once a connection comes up.

The address is a ``struct sockaddr`` built once in Python (``new_tcp_link``), IPv4 or IPv6.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import namedtuple

import numpy as np

from service.kernels.jit import kernel
from service.kernels.sockets import (
    EALREADY,
    EINPROGRESS,
    EINTR,
    EISCONN,
    IPPROTO_TCP,
    SOCK_CLOEXEC,
    SOCK_NONBLOCK,
    SOCK_STREAM,
    TCP_NODELAY,
    close,
    connect,
    errno,
    setsockopt,
    socket_open,
)

# states
DOWN, CONNECTING, UP = 0, 1, 2

# ivars[...]
L_FD = 0  # the socket, -1 when DOWN
L_STATE = 1
L_RETRY_AT_NS = 2  # DOWN: when the next attempt is due
L_BACKOFF_NS = 3  # the wait after the next failure
L_STARTED_NS = 4  # CONNECTING: when the attempt started
L_FAMILY = 5
L_BACKOFF_MIN_NS = 6
L_BACKOFF_MAX_NS = 7
L_CONNECT_TIMEOUT_NS = 8
L_CONNECTS = 9  # connections that came up (counter)
L_FAILURES = 10  # attempts that failed or timed out (counter)
L_DROPS = 11  # connections given up by their user (counter)
N_IVARS = 12

TcpLink = namedtuple("TcpLink", "ivars address option")
TcpLink.__doc__ = "State words, the peer's struct sockaddr, and an int32 1 for setsockopt."


def sockaddr(host: str, port: int) -> tuple[int, np.ndarray]:
    """(address family, struct sockaddr bytes) of an IPv4 or IPv6 literal and a port."""
    ip = ipaddress.ip_address(host)
    if ip.version == 4:
        raw = (
            socket.AF_INET.to_bytes(2, "little")
            + port.to_bytes(2, "big")
            + ip.packed
            + bytes(8)  # sin_zero
        )
        return int(socket.AF_INET), np.frombuffer(raw, np.uint8).copy()
    raw = (
        socket.AF_INET6.to_bytes(2, "little")
        + port.to_bytes(2, "big")
        + bytes(4)  # flow info
        + ip.packed
        + bytes(4)  # scope id
    )
    return int(socket.AF_INET6), np.frombuffer(raw, np.uint8).copy()


def new_tcp_link(
    host: str,
    port: int,
    backoff_min_ns: int = 10_000_000,
    backoff_max_ns: int = 2_000_000_000,
    connect_timeout_ns: int = 1_000_000_000,
) -> TcpLink:
    """A DOWN link to ``host:port`` whose first attempt is due at once."""
    family, address = sockaddr(host, port)
    ivars = np.zeros(N_IVARS, np.int64)
    ivars[L_FD] = -1
    ivars[L_FAMILY] = family
    ivars[L_BACKOFF_NS] = ivars[L_BACKOFF_MIN_NS] = backoff_min_ns
    ivars[L_BACKOFF_MAX_NS] = backoff_max_ns
    ivars[L_CONNECT_TIMEOUT_NS] = connect_timeout_ns
    return TcpLink(ivars, address, np.ones(1, np.int32))


@kernel
def _fail(link, now):
    """Close the socket and wait the backoff before the next attempt."""
    iv = link.ivars
    if iv[L_FD] >= 0:
        close(iv[L_FD])
    iv[L_FD] = -1
    iv[L_STATE] = DOWN
    iv[L_RETRY_AT_NS] = now + iv[L_BACKOFF_NS]
    iv[L_BACKOFF_NS] = min(iv[L_BACKOFF_NS] * 2, iv[L_BACKOFF_MAX_NS])


@kernel
def _connect(link, now):
    """Start or continue the connect; the link's state after it."""
    iv = link.ivars
    result = connect(iv[L_FD], link.address.ctypes.data, link.address.shape[0])
    err = 0 if result == 0 else errno()
    if err in (0, EISCONN):
        # orders and requests are small and must leave at once: no Nagle delay
        setsockopt(iv[L_FD], IPPROTO_TCP, TCP_NODELAY, link.option.ctypes.data, 4)
        iv[L_STATE] = UP
        iv[L_BACKOFF_NS] = iv[L_BACKOFF_MIN_NS]
        iv[L_CONNECTS] += 1
    elif err in (EINPROGRESS, EALREADY, EINTR):
        if now - iv[L_STARTED_NS] > iv[L_CONNECT_TIMEOUT_NS]:
            iv[L_FAILURES] += 1
            _fail(link, now)
    else:  # refused, unreachable, ...
        iv[L_FAILURES] += 1
        _fail(link, now)
    return iv[L_STATE]


@kernel
def link_poll(link, now):
    """Move the link on (never blocking); returns its state: DOWN, CONNECTING or UP."""
    iv = link.ivars
    state = iv[L_STATE]
    if state == UP:
        return state
    if state == DOWN:
        if now < iv[L_RETRY_AT_NS]:
            return state
        fd = socket_open(iv[L_FAMILY], SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:  # out of descriptors, say: try again later
            iv[L_FAILURES] += 1
            _fail(link, now)
            return iv[L_STATE]
        iv[L_FD] = fd
        iv[L_STATE] = CONNECTING
        iv[L_STARTED_NS] = now
    return _connect(link, now)


@kernel
def link_drop(link, now):
    """The connection is broken (its user found it so): close it, reconnect after the backoff."""
    link.ivars[L_DROPS] += 1
    _fail(link, now)


@kernel
def link_close(link):
    """Close the connection for good (the stage is stopping)."""
    iv = link.ivars
    if iv[L_FD] >= 0:
        close(iv[L_FD])
    iv[L_FD] = -1
    iv[L_STATE] = DOWN
