"""Network endpoints as the config writes them: ``IP:port``, ``[IPv6]:port``.

One parser for every side that reads an address: the service's config, the exchange simulator,
and the CDK app and host firewall that open exactly these addresses. Addresses are IP literals,
never host names: a security group and a firewall rule take addresses, and a trading host must
not depend on DNS to reach its exchange.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

# The feed socket's receive buffer: a burst of ~5,000 full datagrams waits in it rather than
# being dropped. The kernel caps what a socket asks for at net.core.rmem_max, so the tuning
# profile raises that sysctl to this (contracts.profile.SYSCTLS).
RECEIVE_BUFFER_BYTES = 8 << 20


class Endpoint(NamedTuple):
    host: str  # the IP literal, without brackets
    port: int

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.host)

    @property
    def multicast(self) -> bool:
        return self.ip.is_multicast

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


EXAMPLE = "10.0.1.20:31001, 239.192.0.1:31001 or [fd00::20]:31001"


def parse_endpoint(text: object) -> Endpoint:
    """``text`` as an Endpoint; ValueError saying what is wrong and what would be right."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not an address: use IP:port, e.g. {EXAMPLE}")
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [fd00::20]:31001")
    if not sep or not host:
        raise ValueError(f"{text!r} has no port: use IP:port, e.g. {EXAMPLE}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{text!r}: {host!r} is not an IP address (host names are not allowed: the "
            f"security group and the firewall open addresses), e.g. {EXAMPLE}"
        ) from None
    if ip.is_unspecified:
        raise ValueError(f"{text!r}: the unspecified address is not a peer; name the exchange's")
    return Endpoint(str(ip), int(port_text))
