"""The feed's market-data socket, opened in Python once, before the stage's loop polls it.

``open_market_data_socket`` binds the UDP port of ``[exchange] market_data`` and, for a
multicast group, joins it on ``[exchange] interface``; the kernel's receive buffer is raised
so a burst waits in the socket rather than being dropped there. Anything this host cannot do
(an address that is not its own, a port in use, a group it cannot join) is a one-line
NetworkError naming the key, the value and what would be right.
"""

from __future__ import annotations

import logging
import socket
import struct

from contracts.errors import LowlatError
from contracts.network import RECEIVE_BUFFER_BYTES
from service.config import Config

logger = logging.getLogger(__name__)


def _warn_if_capped(sock: socket.socket) -> None:
    """One warning line when net.core.rmem_max gave the socket less than it asked for: a
    burst longer than the buffer is dropped in the kernel and has to be recovered."""
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # the kernel doubles it
    if got < RECEIVE_BUFFER_BYTES:
        logger.warning(
            "the market-data socket's receive buffer is %d KiB, not %d KiB: net.core.rmem_max "
            "caps it, so a burst beyond it is dropped and recovered (the tuning profile sets "
            "net.core.rmem_max = %d)",
            got >> 10,
            RECEIVE_BUFFER_BYTES >> 10,
            RECEIVE_BUFFER_BYTES,
        )


class NetworkError(LowlatError, OSError):
    """The host cannot open what the config names; the message is one line for a person."""


def open_market_data_socket(config: Config) -> socket.socket:
    """A bound, non-blocking UDP socket receiving ``[exchange] market_data``."""
    x = config.exchange
    ep = x.endpoint("market_data")
    where = f"{config.source}: [exchange] market_data = {x.market_data!r}"
    family = socket.AF_INET6 if ep.ip.version == 6 else socket.AF_INET
    if x.interface and (":" in x.interface) != (family == socket.AF_INET6):
        raise NetworkError(
            f"{config.source}: [exchange] interface = {x.interface!r} is not of the same address "
            f"family as market_data = {x.market_data!r}: use this host's IPv{ep.ip.version} "
            "address"
        )
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:  # a sandbox that allows no network (RestrictAddressFamilies=)
        raise NetworkError(
            f"{where}: this process may not open a UDP socket ({exc.strerror}); the unit that "
            "runs it must allow AF_INET/AF_INET6 and the exchange's addresses"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        try:
            sock.bind((ep.host, ep.port))
        except OSError as exc:
            hint = (
                "is not an address of this host: a unicast feed is sent to this host, so use "
                "one of its addresses, or a multicast group"
                if exc.errno == 99  # EADDRNOTAVAIL
                else f"cannot be bound ({exc.strerror})"
            )
            raise NetworkError(f"{where} {hint}") from None
        if ep.multicast:
            _join(sock, family, ep.host, x.interface, where)
        sock.setblocking(False)
        _warn_if_capped(sock)  # only for a socket that will be used: a refusal stays one line
    except BaseException:
        sock.close()
        raise
    return sock


def _join(sock: socket.socket, family: int, group: str, interface: str, where: str) -> None:
    try:
        if family == socket.AF_INET:
            local = socket.inet_aton(interface or "0.0.0.0")
            mreq = socket.inet_aton(group) + local
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            index = _interface_index(interface) if interface else 0
            mreq6 = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
    except OSError as exc:
        raise NetworkError(
            f"{where}: cannot join the group on interface {interface or '(any)'!r} "
            f"({exc.strerror}); check [exchange] interface and the host's routes"
        ) from None


def _interface_index(address: str) -> int:
    """The index of the interface holding IPv6 ``address`` (IPv6 groups are joined by index)."""
    wanted = socket.inet_pton(socket.AF_INET6, address).hex()
    with open("/proc/net/if_inet6") as table:  # address, index, prefix, scope, flags, name
        for line in table:
            fields = line.split()
            if fields[0] == wanted:
                return int(fields[1], 16)
    raise OSError(19, "no interface of this host holds that address")  # ENODEV
