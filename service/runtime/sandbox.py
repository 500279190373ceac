"""No network for a stage process whose stages need none: a seccomp filter on ``socket()``.

Why: systemd sandboxes a unit as a whole. When the host trades with a real exchange, the
engine unit (``ami/units.py``) must allow AF_INET/AF_INET6 and the exchange's addresses,
because the feed receives market data over UDP and asks recovery over TCP, and the gateway
enters orders over TCP. Every process of the unit would then have the network, the engine
stage's (the book, the model, the strategy, risk) included, which never needs it: the process
that decides what to trade should not be able to open a connection of its own, whatever a model
file or a bug makes it do. So the supervisor's stage process (``service/runtime/pipeline.py``)
calls ``deny_network`` when none of its stages needs the network (``needs_network``), before
they run: from then on ``socket()`` for AF_INET, AF_INET6 and AF_PACKET fails with
EAFNOSUPPORT, the error ``RestrictAddressFamilies=`` gives, and ``io_uring_setup`` with ENOSYS,
as on a kernel without io_uring (io_uring opens sockets without the socket() system call).
AF_UNIX, pipes and shared memory, which the stages and the supervisor use, work as before. A
seccomp filter cannot be lifted, and the process's children inherit it.

The filter is built by libseccomp (on every systemd host: systemd links it) through pyseccomp,
a small ctypes binding; no BPF is written here. Where libseccomp is missing (a laptop), one
warning line says so and the stages run unfiltered.
"""

from __future__ import annotations

import errno
import logging
import socket

from service.config import Config

logger = logging.getLogger(__name__)

# socket() families a stage without network must not open (AF_PACKET: raw frames, with
# CAP_NET_RAW, which the units never grant; denied all the same)
NETWORK_FAMILIES = {
    "AF_INET": socket.AF_INET,
    "AF_INET6": socket.AF_INET6,
    "AF_PACKET": getattr(socket, "AF_PACKET", 17),
}
# system calls refused whole: io_uring opens sockets through its own operations
REFUSED_CALLS = ("io_uring_setup",)


def needs_network(config: Config, stage_names: tuple[str, ...]) -> bool:
    """Whether the stages fused in one process talk to the exchange: the feed with
    ``[feed] source = "udp"``, the gateway with ``[gateway] exchange = "tcp"``."""
    feed = config.feed.source == "udp" and "feed" in stage_names
    gateway = config.gateway.exchange == "tcp" and "gateway" in stage_names
    return feed or gateway


def deny_network() -> bool:
    """Refuse this process (and its future children) network sockets from now on; True when
    the filter is in place, False (with one warning line) when libseccomp is not there."""
    try:
        import pyseccomp as seccomp  # raises RuntimeError itself without libseccomp
    except (ImportError, RuntimeError, OSError) as exc:
        logger.warning(
            "no seccomp filter for this stage process (libseccomp unavailable: %s): its "
            "stages may open network sockets",
            exc,
        )
        return False
    refused = seccomp.ERRNO(errno.EAFNOSUPPORT)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for family in NETWORK_FAMILIES.values():
        rules.add_rule(refused, "socket", seccomp.Arg(0, seccomp.EQ, family))
    for call in REFUSED_CALLS:
        try:
            rules.add_rule(seccomp.ERRNO(errno.ENOSYS), call)
        except (OSError, ValueError):  # a libseccomp too old to know the call's name
            continue
    try:
        rules.load()
    except OSError as exc:  # a kernel without seccomp filters
        logger.warning(
            "no seccomp filter for this stage process (%s): its stages may open network sockets",
            exc,
        )
        return False
    return True
