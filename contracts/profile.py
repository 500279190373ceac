"""The host tuning profile: the one source of truth for what makes a host a low-latency host.

Everything else in ``ami/`` is rendered from a ``TuningProfile``: the kernel command line,
sysctls, systemd drop-ins and units, the irqbalance ban, NIC settings, the CloudWatch agent
config, and the expectations ``trading-service check-host`` verifies. Defaults are derived
from the vCPU count: the first CPU(s) do housekeeping (the OS, interrupts, the telemetry API,
the agents), the rest are isolated for the busy-polling stages.

Facts behind the defaults: Graviton has no SMT
and no C-state or P-state control, so governor, C-state and SMT settings are not applicable
there; several widely copied sysctls are dead on current kernels and are left out
(``kernel.sched_*_ns``, ``net.ipv4.tcp_low_latency``, ``vm.mlockall``).

Standard library only: the CDK app, Fabric and check-host read it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from contracts.documents import toml_value
from contracts.errors import LowlatError
from contracts.network import RECEIVE_BUFFER_BYTES, Endpoint, parse_endpoint
from contracts.stages import stage_cores

PLATFORMS = ("graviton", "x86")
# The host operating systems the tuning renders for (ami/hostos.py has what differs).
HOST_OSES = ("al2023", "ubuntu2404", "debian12")
ROOT_LOGINS = ("no", "prohibit-password")  # sshd PermitRootLogin: never with a password
# Where a host keeps the profile it was tuned with (the Image Builder component writes it);
# check-host and the telemetry API's /host judge the host against it when it is there.
INSTALLED_PROFILE = "/etc/lowlat/profile.toml"
HUGEPAGE_KB = 2048

# The sysctls that help a busy-polling host and exist on AL2023's kernel: value (as written to
# /proc/sys) and why, which the rendered file carries as its comment.
SYSCTLS = {
    "kernel.numa_balancing": ("0", "no NUMA page migration (and its page faults) under the stages"),
    # With migration on, an unpinned timer armed on an isolated CPU is queued on a busy
    # housekeeping CPU (get_target_base -> get_nohz_timer_target in kernel/time/timer.c); with
    # it off, it stays on the CPU that armed it and fires there. 1 is also the kernel default.
    "kernel.timer_migration": ("1", "timers armed on an isolated CPU fire on a housekeeping one"),
    "vm.stat_interval": (
        "120",
        "the per-CPU vmstat worker wakes every N seconds, not every second",
    ),
    "vm.swappiness": ("0", "swap is off (lowlat-tune); never prefer it over the page cache"),
    "kernel.watchdog": ("0", "no soft/hard-lockup watchdog threads or timers on the isolated CPUs"),
    "net.core.rmem_max": (
        str(RECEIVE_BUFFER_BYTES),
        "room for the UDP feed's receive buffer",
    ),
}
DEFAULT_SYSCTLS = {key: value for key, (value, _) in SYSCTLS.items()}
# Set as well on a host whose market data is an IPv4 multicast group (TuningProfile.exchange):
# AWS Transit Gateway multicast speaks IGMPv2 only, and Linux joins with IGMPv3 by default.
IGMP_SYSCTLS = {
    "net.ipv4.conf.all.force_igmp_version": (
        "2",
        "join the exchange's multicast group with IGMPv2, all Transit Gateway multicast takes",
    ),
}


def one_line(text: str) -> str:
    """``text`` as one printable line: every character that is not printable (newlines, other
    line and paragraph separators, control and format characters) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a message: a megabyte of bad value is
    still one readable line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


class ProfileError(LowlatError, ValueError):
    """A profile value is wrong; the message names the key, the value and what is allowed.

    Always one line: whatever a message quotes (a key or a path with a newline in it) is
    escaped."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(str(message)))


class Grammar(NamedTuple):
    """What a profile value of one kind may be: a full-match pattern, and the words for it."""

    pattern: re.Pattern[str]
    allowed: str

    def check(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise ProfileError(f"{key} = {shown(value)}: use {self.allowed}")
        return value


# Every value that reaches a file, a unit or a script matches one of these when the profile is
# made, so it can only ever be data, never syntax, wherever it is rendered (the renderers
# shell-quote it as well). Narrower on purpose than what Linux would take.
INTERFACE = Grammar(  # IFNAMSIZ is 16 with the NUL
    re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"),
    "an interface name like eth0 or ens5: letters, digits, _ . - (at most 15, not starting "
    "with - or .)",
)
USER = Grammar(
    re.compile(r"[a-z_][a-z0-9_-]{0,31}"),
    "a user name like lowlat: lowercase letters, digits, _ and -, starting with a letter or _",
)
ABSOLUTE_PATH = Grammar(
    re.compile(r"(/[A-Za-z0-9_][A-Za-z0-9._-]*)+"),
    "an absolute path like /opt/lowlat: /-separated names of letters, digits, . _ - "
    "(no blanks, no name starting with . or -)",
)
SYSCTL_KEY = Grammar(
    re.compile(r"[a-z0-9_]+(\.[A-Za-z0-9_-]+)+"), "a sysctl name like vm.swappiness"
)
SYSCTL_VALUE = Grammar(
    re.compile(r"[A-Za-z0-9_.:,/-]{1,64}( [A-Za-z0-9_.:,/-]{1,64}){0,7}"),
    "a sysctl value like 0 or 4096 87380 6291456: words of letters, digits, _ . : , / - "
    "separated by single spaces",
)
AUTO_NIC = "auto"  # the profile's nic: the default route's interface, resolved on the host
MAX_VCPUS = 1024
MAX_HUGEPAGES = 1 << 20


def _int_in(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProfileError(f"{key} = {shown(value)}: use a whole number from {low} to {high}")
    return value


def _cidrs(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, tuple | list):
        raise ProfileError(f'{key} = {shown(value)}: use a list of CIDRs like ["203.0.113.0/24"]')
    try:
        return admitted_cidrs(value)
    except CidrError as exc:
        raise ProfileError(f"{key}: {exc}") from None


# ------------------------------------------------------------------------ who may come in
#
# The ranges admitted to SSH and the telemetry API (the CDK app's allowedCidrs, which become
# the security group's rules and this profile's ssh_cidrs and telemetry_cidrs, which become the
# host firewall's sets) pass ``admitted_cidrs``: written as ``ipaddress`` writes them, and
# together not a large part of the internet, however that is spelled.
#
# The bound is on the union of the ranges (ipaddress.collapse_addresses), per IP version, so
# 0.0.0.0/1 + 128.0.0.0/1, or 256 /8s, are refused just as 0.0.0.0/0 is: at most a /8's worth
# (2**24) of internet addresses for IPv4, a /32's worth (2**96) for IPv6. Why these: a /8 is the
# largest block any one organisation holds (the old class A networks) and a /32 is what a
# registry allocates to a whole ISP; an office, a VPN or a bastion is far smaller, so a wider
# union is the internet in pieces, not somebody's own range. Private ranges (RFC 1918, shared
# 100.64.0.0/10, loopback, link-local; IPv6 unique-local and link-local) do not count: nobody
# on the internet sends from them, and admitting a VPN's 10.0.0.0/8 and 172.16.0.0/12 together
# is ordinary.
#
# IPv6 ranges that stand for IPv4 hosts (IPv4-mapped ::ffff:0:0/96 and the others in
# EMBEDDED_IPV4) are refused: the security group and nftables match them against IPv6 packets
# only, so they never admit the IPv4 hosts they name; the IPv4 range is what would be right.

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_INTERNET_ADDRESSES = {4: 1 << 24, 6: 1 << 96}
WIDEST = {4: "/8", 6: "/32"}
NOT_INTERNET: dict[int, tuple[Network, ...]] = {
    4: tuple(
        ipaddress.ip_network(n)
        for n in (
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.168.0.0/16",
        )
    ),
    6: (ipaddress.ip_network("fc00::/7"), ipaddress.ip_network("fe80::/10")),
}
# block -> (what it is, how many bits of the address the IPv4 address is shifted up by)
EMBEDDED_IPV4: dict[ipaddress.IPv6Network, tuple[str, int | None]] = {
    ipaddress.IPv6Network("::ffff:0:0/96"): ("IPv4-mapped", 0),
    ipaddress.IPv6Network("::/96"): ("IPv4-compatible", 0),
    ipaddress.IPv6Network("64:ff9b::/96"): ("NAT64", 0),
    ipaddress.IPv6Network("64:ff9b:1::/48"): ("local NAT64", None),
    ipaddress.IPv6Network("2002::/16"): ("6to4", 80),
    ipaddress.IPv6Network("2001::/32"): ("Teredo", None),
}
EXAMPLE_CIDRS = "networks like 203.0.113.0/24 or 2001:db8::/32"


class CidrError(LowlatError, ValueError):
    """Ingress ranges are refused; the message (one line) says which ranges and why."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def _listed(items: list[str], limit: int = 6) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


def collapsed(networks: Iterable[Network]) -> list[Network]:
    """The union of ``networks`` as the fewest networks (ipaddress.collapse_addresses), IPv4
    first."""
    nets = list(networks)
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def internet_addresses(networks: Iterable[Network]) -> int:
    """How many internet (not private) addresses the union of ``networks`` covers."""
    total = 0
    # collapsed networks are disjoint, and so are the private blocks; two CIDR networks that
    # overlap are one inside the other, so each overlap is the smaller of the two
    for net in collapsed(networks):
        total += net.num_addresses
        for block in NOT_INTERNET[net.version]:
            if net.overlaps(block):
                total -= min(net.num_addresses, block.num_addresses)
    return total


def _as_ipv4(net: Network) -> ipaddress.IPv4Network | None:
    """The IPv4 addresses an IPv6 range inside an EMBEDDED_IPV4 block stands for (None when
    it is not inside one, or the block hides them, as Teredo does)."""
    if net.version == 4:
        return None
    for block, (_, shift) in EMBEDDED_IPV4.items():
        if shift is not None and net.subnet_of(block):
            bits = min(32, net.prefixlen - 96 + shift)
            address = (int(net.network_address) >> shift) & 0xFFFFFFFF
            return ipaddress.IPv4Network((address, bits), strict=False)
    return None


def _embedded_ipv4(net: ipaddress.IPv6Network) -> str:
    """Why ``net`` may not be admitted as an IPv6 range, or "" when it may."""
    for block, (kind, _) in EMBEDDED_IPV4.items():
        if not net.overlaps(block):
            continue
        if not net.subnet_of(block):
            return (
                f"{net} overlaps {block}, the {kind} block, whose addresses stand for IPv4 "
                "hosts: name IPv6 ranges outside it, and IPv4 ranges as IPv4"
            )
        v4 = _as_ipv4(net)
        return (
            f"{net} is an IPv6 spelling of IPv4 addresses ({kind}, {block}): the security group "
            "and the host firewall match it against IPv6 packets only; write "
            + (str(v4) if v4 else "the IPv4 ranges themselves")
        )
    return ""


def _too_wide(ranges: list[tuple[str, Network]], covered: int) -> str:
    """Why ``ranges`` (one IP version, as meant) together admit too much: which ranges, what
    they cover, and what would be right."""
    wide = [(item, net) for item, net in ranges if internet_addresses([net])]
    union = collapsed(net for _, net in wide)
    version = union[0].version
    if len(wide) == 1:
        item, net = wide[0]
        said = item if item == str(net) else f"{shown(item)} (that is {net})"
        subject = f"{said} covers"
    else:
        said = _listed([item if item == str(net) else shown(item) for item, net in wide])
        subject = f"{said} together cover {_listed([str(n) for n in union])}:"
    if union[0].prefixlen == 0:
        what = f"the whole IPv{version} internet"
    else:
        what = f"{_count(covered)} internet addresses"
    return (
        f"{subject} {what}; admit at most a {WIDEST[version]}'s worth of internet addresses "
        f"({_count(MAX_INTERNET_ADDRESSES[version])}, private ranges aside): name your own ranges"
    )


def _count(n: int) -> str:
    """16777216, or 2**96 for numbers only IPv6 has."""
    if n < 1 << 40:
        return str(n)
    return f"2**{n.bit_length() - 1}" if n & (n - 1) == 0 else f"over 2**{n.bit_length() - 1}"


def admitted_cidrs(items: Iterable[object]) -> tuple[str, ...]:
    """The ranges admitted to SSH and the telemetry port, checked (see above) and written as
    ``ipaddress`` writes them, in order, each once; ``CidrError`` says what is wrong."""
    parsed: list[tuple[str, Network]] = []
    for item in items:
        if not isinstance(item, str):
            raise CidrError(f"{shown(item)} is not a CIDR; use {EXAMPLE_CIDRS} (strings)")
        try:
            if "%" in item:  # an IPv6 scope (fe80::1%eth0) is no part of a network
                raise ValueError(item)
            network = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise CidrError(f"{shown(item)} is not a CIDR; use {EXAMPLE_CIDRS}") from None
        parsed.append((item, network))

    # what the ranges would admit, as meant (a host-bits-set 1.2.3.4/0 means 0.0.0.0/0)
    # IPv6 spellings of IPv4 ranges (::ffff:0:0/96) count as the IPv4 ranges they stand for
    as_meant = [(item, _as_ipv4(net) or net) for item, net in parsed]
    for version in (4, 6):
        mine = [(item, net) for item, net in as_meant if net.version == version]
        covered = internet_addresses(net for _, net in mine)
        if covered > MAX_INTERNET_ADDRESSES[version]:
            raise CidrError(_too_wide(mine, covered))

    for item, network in parsed:
        if isinstance(network, ipaddress.IPv6Network):
            hint = _embedded_ipv4(network)
            if hint:
                raise CidrError(hint)
        canonical = str(network)
        if item == canonical:
            continue
        try:
            ipaddress.ip_network(item.strip(), strict=True)
        except ValueError:
            host = ipaddress.ip_address(item.strip().partition("/")[0])
            raise CidrError(
                f"{shown(item)} has host bits set: write {canonical} for the network, or "
                f"{host}/{network.max_prefixlen} for the one host"
            ) from None
        raise CidrError(f"{shown(item)} is not written as ipaddress writes it: write {canonical}")
    return tuple(dict.fromkeys(str(network) for _, network in parsed))


# ------------------------------------------------------------------------ the exchange
#
# A host that trades with a real exchange names it: the UDP market data (a multicast group the
# feed joins, or this host's own address the exchange sends to), the TCP recovery and order
# entry, and the exchange's ranges (its senders and servers). The security group, the host
# firewall and the engine unit open exactly these; the service's /etc/lowlat/service.toml
# reads the same addresses. Every address is parsed by contracts.network, the one parser.

EXCHANGE_FIELDS = ("market_data", "recovery", "orders", "cidrs", "session")
EXCHANGE_SESSION = re.compile(r"[ -~]{1,10}")  # as [exchange] session in service/config.py
EXCHANGE_EXAMPLES = {
    "market_data": "239.192.0.1:31001 (the exchange's multicast group)",
    "recovery": "10.50.0.10:31002",
    "orders": "10.50.0.10:31003",
    "cidrs": '["10.50.0.0/24"]',
    "session": "LOWLAT0001",
}
# 224.0.0.0/24 is for link-local protocols (IGMP, OSPF, the all-hosts group): never a feed
LINK_LOCAL_GROUPS = ipaddress.ip_network("224.0.0.0/24")


class ExchangeError(LowlatError, ValueError):
    """An exchange address is wrong. ``field`` is one of EXCHANGE_FIELDS, for the caller to name
    as it calls it (a profile key, a CDK context key); the message (one line) says what is
    wrong and what would be right."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(one_line(message))


class Exchange(NamedTuple):
    """The exchange a host trades with, checked (``check_exchange``)."""

    market_data: Endpoint
    recovery: Endpoint
    orders: Endpoint
    cidrs: tuple[str, ...]  # as ipaddress writes them
    session: str  # "" leaves the service's default

    @property
    def endpoints(self) -> tuple[Endpoint, Endpoint, Endpoint]:
        return (self.market_data, self.recovery, self.orders)

    @property
    def ip_versions(self) -> tuple[int, ...]:
        """The IP versions the host's sockets use (4, 6 or both), in order."""
        return tuple(sorted({e.ip.version for e in self.endpoints}))

    @property
    def group(self) -> Endpoint | None:
        """The multicast group of the market data, or None for a unicast feed."""
        return self.market_data if self.market_data.multicast else None


def check_exchange(
    market_data: object = None,
    recovery: object = None,
    orders: object = None,
    cidrs: object = None,
    session: object = "",
) -> Exchange:
    """The exchange these name, or ExchangeError naming the field that is wrong."""
    given = {"market_data": market_data, "recovery": recovery, "orders": orders}
    for name, value in given.items():
        if value in ("", None):
            raise ExchangeError(
                name, f"missing: name it with the rest, e.g. {EXCHANGE_EXAMPLES[name]}"
            )
    ranges = _exchange_ranges(cidrs)
    parsed = {}
    for name, value in given.items():
        try:
            parsed[name] = parse_endpoint(value)
        except ValueError as exc:
            raise ExchangeError(name, str(exc)) from None
    networks = [ipaddress.ip_network(c) for c in ranges]
    for name in ("recovery", "orders"):
        _check_exchange_server(name, parsed[name], networks)
    _check_feed(parsed["market_data"], networks)
    if session not in ("", None) and (
        not isinstance(session, str) or not EXCHANGE_SESSION.fullmatch(session)
    ):
        raise ExchangeError(
            "session",
            f"{shown(session)}: use 1 to 10 printable ASCII characters, e.g. "
            f"{EXCHANGE_EXAMPLES['session']}",
        )
    return Exchange(
        parsed["market_data"], parsed["recovery"], parsed["orders"], ranges, str(session or "")
    )


def _exchange_ranges(cidrs: object) -> tuple[str, ...]:
    if not isinstance(cidrs, tuple | list) or not cidrs:
        raise ExchangeError(
            "cidrs",
            f"{shown(cidrs)}: name the exchange's ranges (its senders and servers), e.g. "
            f"{EXCHANGE_EXAMPLES['cidrs']}",
        )
    try:
        return admitted_cidrs(cidrs)
    except CidrError as exc:
        raise ExchangeError("cidrs", str(exc)) from None


def _check_exchange_server(name: str, ep: Endpoint, networks: list[Network]) -> None:
    """Recovery and order entry: TCP to an address of the exchange, inside its ranges."""
    if ep.multicast:
        raise ExchangeError(
            name,
            f"{ep} is a multicast group; TCP needs the exchange's own address, e.g. "
            f"{EXCHANGE_EXAMPLES[name]}",
        )
    if not any(ep.ip in net for net in networks):
        raise ExchangeError(
            name,
            f"{ep} is outside the exchange's ranges ({', '.join(map(str, networks))}): add its "
            "range to cidrs, or name the address inside them the exchange gave you",
        )


def _check_feed(feed: Endpoint, networks: list[Network]) -> None:
    """Market data: a group (or this host's address) the exchange's ranges send to."""
    if feed.ip in LINK_LOCAL_GROUPS:
        raise ExchangeError(
            "market_data",
            f"{feed} is in {LINK_LOCAL_GROUPS}, kept for link-local protocols (IGMP, OSPF): "
            f"name the exchange's group, e.g. {EXCHANGE_EXAMPLES['market_data']}",
        )
    if not any(net.version == feed.ip.version for net in networks):
        raise ExchangeError(
            "cidrs",
            f"market data {feed} is IPv{feed.ip.version} but no range in cidrs is: name the "
            f"exchange's IPv{feed.ip.version} ranges its market data comes from",
        )


def cpulist(cpus: Iterable[int]) -> str:
    """Kernel cpulist syntax: (1, 2, 3, 5) -> "1-3,5"."""
    cpus = sorted(set(cpus))
    parts, start = [], None
    for i, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if i + 1 == len(cpus) or cpus[i + 1] != cpu + 1:
            parts.append(str(start) if start == cpu else f"{start}-{cpu}")
            start = None
    return ",".join(parts)


CPU_NUMBER_LIMIT = 1 << 16  # far above any kernel's NR_CPUS (8192 at most)
_CPU_RANGE = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")


def parse_cpulist(text: str) -> tuple[int, ...]:
    """ "1-3,5" -> (1, 2, 3, 5); "" -> (). Raises ValueError on bad syntax, and on CPU numbers
    no kernel has (from CPU_NUMBER_LIMIT on), so "0-99999999999" is refused, not expanded."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        match = _CPU_RANGE.fullmatch(part)
        if not match:
            raise ValueError(f"bad cpu range {part!r}")
        first = int(match[1])
        last = int(match[2] or first)
        if last < first or last >= CPU_NUMBER_LIMIT:
            raise ValueError(f"bad cpu range {part!r}")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def cpumask(cpus: Iterable[int]) -> str:
    """Hex cpumask as /sys and irqbalance take it: (0,) -> "1", (0, 1) -> "3"."""
    return format(sum(1 << c for c in set(cpus)), "x")


@dataclass(frozen=True)
class TuningProfile:
    """A host's tuning, every value checked when it is made (``ProfileError`` otherwise)."""

    vcpus: int
    housekeeping: tuple[int, ...]
    isolated: tuple[int, ...]
    hugepages: int = 512  # 2 MiB pages: 1 GiB for the rings and stats (shm_dir below)
    platform: str = "graviton"
    os: str = "al2023"  # one of HOST_OSES: packages, boot loader and paths follow it
    sysctls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SYSCTLS))
    # The NIC lowlat-tune sets: "auto" is the interface of the IPv4 default route, found on the
    # host (ens5 on a c6g under AL2023, Debian or Ubuntu; enp0s1 in the lab), so one profile
    # fits every host OS's naming; or a name, for a host with a second NIC for market data.
    nic: str = AUTO_NIC
    rx_usecs: int = 0  # interrupt coalescing: deliver at once (ENA accepts 0-2 for low latency)
    service_user: str = "lowlat"
    install_prefix: str = "/opt/lowlat"
    shm_dir: str = "/dev/hugepages/lowlat"  # hugetlbfs: ring pages never fault or move
    telemetry_port: int = 8000
    # Loopback unless people reach the API directly: the CDK app sets "0.0.0.0" when its
    # allowedCidrs open the telemetry port (the security group is then the gate).
    telemetry_host: str = "127.0.0.1"
    # The host firewall admits SSH and the telemetry port from these ranges only (the CDK app
    # passes its allowedCidrs, the same ranges as the security group); none: only loopback.
    ssh_cidrs: tuple[str, ...] = ()
    telemetry_cidrs: tuple[str, ...] = ()
    ssh_root_login: str = "no"  # sshd PermitRootLogin: "no" or "prohibit-password" (keys)
    # The exchange this host trades with (check_exchange); all empty: the simulated exchange,
    # and no network for the engine at all. Addresses as contracts.network reads them.
    exchange_market_data: str = ""
    exchange_recovery: str = ""
    exchange_orders: str = ""
    exchange_cidrs: tuple[str, ...] = ()
    exchange_session: str = ""  # empty: the service's default session name

    def __post_init__(self) -> None:
        self._check_cpus()
        _int_in("hugepages", self.hugepages, 0, MAX_HUGEPAGES)
        _int_in("rx_usecs", self.rx_usecs, 0, 1000)
        _int_in("telemetry_port", self.telemetry_port, 1, 65535)
        for key, choices in (
            ("platform", PLATFORMS),
            ("os", HOST_OSES),
            ("ssh_root_login", ROOT_LOGINS),
        ):
            if getattr(self, key) not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                raise ProfileError(f"{key} = {getattr(self, key)!r}: use one of {allowed}")
        INTERFACE.check("nic", self.nic)
        USER.check("service_user", self.service_user)
        ABSOLUTE_PATH.check("install_prefix", self.install_prefix)
        ABSOLUTE_PATH.check("shm_dir", self.shm_dir)
        self._check_telemetry_host()
        object.__setattr__(self, "ssh_cidrs", _cidrs("ssh_cidrs", self.ssh_cidrs))
        object.__setattr__(self, "telemetry_cidrs", _cidrs("telemetry_cidrs", self.telemetry_cidrs))
        if not isinstance(self.sysctls, dict):
            raise ProfileError("sysctls must be a table of name = value")
        self._check_exchange()
        for key, value in self.sysctls.items():
            SYSCTL_KEY.check("sysctls key", key)
            SYSCTL_VALUE.check(f"sysctls.{key}", value)

    def _check_cpus(self) -> None:
        if type(self.vcpus) is int and self.vcpus < 2:
            raise ProfileError(f"vcpus = {self.vcpus}: a tuned host needs at least 2 vCPUs")
        _int_in("vcpus", self.vcpus, 2, MAX_VCPUS)
        for key in ("housekeeping", "isolated"):
            for cpu in getattr(self, key):
                _int_in(f"{key} CPU", cpu, 0, MAX_VCPUS - 1)
        every = set(range(self.vcpus))
        hk, iso = set(self.housekeeping), set(self.isolated)
        if not hk:
            raise ProfileError("housekeeping = []: at least one CPU must do housekeeping")
        if not iso:
            raise ProfileError("isolated = []: at least one CPU must be isolated for the stages")
        if hk & iso:
            raise ProfileError(f"CPUs {cpulist(hk & iso)} are both housekeeping and isolated")
        if (hk | iso) - every:
            raise ProfileError(
                f"CPUs {cpulist((hk | iso) - every)} do not exist on a {self.vcpus}-vCPU host"
            )

    def _check_exchange(self) -> None:
        values = {name: getattr(self, f"exchange_{name}") for name in EXCHANGE_FIELDS}
        if not any(values.values()):
            return
        try:
            exchange = check_exchange(**values)
        except ExchangeError as exc:
            raise ProfileError(f"exchange_{exc.field}: {exc}") from None
        object.__setattr__(self, "exchange_cidrs", exchange.cidrs)
        if exchange.group is not None and exchange.group.ip.version == 4:
            igmp = {key: value for key, (value, _) in IGMP_SYSCTLS.items()}
            object.__setattr__(self, "sysctls", {**igmp, **self.sysctls})

    @property
    def exchange(self) -> Exchange | None:
        """The exchange this host trades with, or None (the simulated exchange)."""
        if not self.exchange_market_data:
            return None
        return check_exchange(*(getattr(self, f"exchange_{name}") for name in EXCHANGE_FIELDS))

    def _check_telemetry_host(self) -> None:
        if self.telemetry_host == "localhost":
            return
        try:
            ipaddress.ip_address(self.telemetry_host)
        except ValueError:
            raise ProfileError(
                f"telemetry_host = {self.telemetry_host!r}: use an IP address such as "
                "127.0.0.1 or 0.0.0.0, or localhost"
            ) from None

    @classmethod
    def for_vcpus(cls, vcpus: int, **overrides: Any) -> TuningProfile:
        """Defaults for a host of ``vcpus``: one housekeeping CPU per 8 (at least one)."""
        if type(vcpus) is int and vcpus < 2:
            raise ProfileError(f"vcpus = {vcpus}: a tuned host needs at least 2 vCPUs")
        _int_in("vcpus", vcpus, 2, MAX_VCPUS)  # before the CPU lists are built from it
        n_hk = max(1, vcpus // 8)
        return cls(
            vcpus=vcpus,
            housekeeping=tuple(range(n_hk)),
            isolated=tuple(range(n_hk, vcpus)),
            **overrides,
        )

    # ---------------------------------------------------------------------- derived facts

    @property
    def has_cpu_power_control(self) -> bool:
        """Governor, C-states and SMT exist on x86 hosts, not on Graviton (Nitro, no SMT)."""
        return self.platform == "x86"

    @property
    def nic_queues(self) -> int:
        return len(self.housekeeping)

    def kernel_args(self) -> list[str]:
        iso, hk = cpulist(self.isolated), cpulist(self.housekeeping)
        return [
            f"isolcpus=managed_irq,domain,{iso}",
            f"nohz_full={iso}",
            f"rcu_nocbs={iso}",
            f"irqaffinity={hk}",
            "skew_tick=1",
            "nosoftlockup",
            "transparent_hugepage=never",
            "hugepagesz=2M",
            f"hugepages={self.hugepages}",
        ]

    def stage_cores(self) -> dict[str, int]:
        """The service's [cores]: the isolated CPUs, shared out as ``stage_cores`` does."""
        return stage_cores(self.isolated)


def _profile_value(key: str, value: Any, default: Any) -> Any:
    """One key of a profile file as TuningProfile takes it, or a ProfileError saying why not
    (the values themselves are checked when the profile is made)."""
    if key in ("housekeeping", "isolated"):
        if isinstance(value, str):
            try:
                return parse_cpulist(value)
            except ValueError:
                pass
        elif isinstance(value, list) and all(type(v) is int for v in value):
            return tuple(value)
        raise ProfileError(
            f'{key} = {shown(value)}: use a cpulist like "1-3" or a list like [1, 2]'
        )
    if key in ("ssh_cidrs", "telemetry_cidrs", "exchange_cidrs"):
        return _cidrs(key, value)
    if key == "sysctls":
        if not isinstance(value, dict):
            raise ProfileError(f"sysctls = {shown(value)}: use a table of name = value")
        for name, item in value.items():
            SYSCTL_KEY.check("sysctls key", name)
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ProfileError(
                    f"sysctls.{name} = {shown(item)}: use a string or a whole number"
                )
        return {**DEFAULT_SYSCTLS, **{k: str(v) for k, v in value.items()}}
    expected = type(default)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise ProfileError(
            f"{key} = {shown(value)}: use a {expected.__name__} (default {default!r})"
        )
    return value


MAX_PROFILE_BYTES = 1 << 20  # a profile is a few hundred bytes; a megabyte is not one


def _unreadable(path: Path, exc: OSError | ValueError) -> ProfileError:
    if isinstance(exc, FileNotFoundError):
        return ProfileError(f"{path}: no such profile file")
    if isinstance(exc, IsADirectoryError):
        return ProfileError(f"{path}: is a directory; give the profile's TOML file")
    if isinstance(exc, OSError):
        return ProfileError(f"{path}: cannot read the profile ({exc.strerror or exc})")
    return ProfileError(f"{path}: not a file name ({exc})")  # a NUL in it


def read_profile_text(path: Path) -> str:
    """The text of the profile file at ``path`` (UTF-8, as TOML is), or a one-line
    ProfileError: missing, a directory or a device, unreadable, too big, or not UTF-8 text.
    A pipe is read (``--profile <(...)``); a device such as /dev/zero is refused unread."""
    try:
        kind = path.stat().st_mode
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if stat.S_ISDIR(kind):
        raise _unreadable(path, IsADirectoryError())
    if not (stat.S_ISREG(kind) or stat.S_ISFIFO(kind)):  # reading a device may never end
        raise ProfileError(f"{path}: not a file (a device or a socket); give a TOML file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(
            f"{path}: more than {MAX_PROFILE_BYTES} bytes; a profile is a short TOML file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{path}: not valid TOML: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); a profile is a TOML file, saved as UTF-8"
        ) from None


def parse_profile(text: str, vcpus: int, where: str = "profile") -> TuningProfile:
    """The profile in TOML ``text`` (any key of TuningProfile), over the defaults for
    ``vcpus``; a one-line ProfileError starting with ``where`` otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where}: not valid TOML: {exc}") from None
    except ValueError as exc:  # an integer of more digits than int() takes
        raise ProfileError(f"{where}: not valid TOML here: {exc}") from None
    except RecursionError:
        raise ProfileError(f"{where}: not valid TOML: arrays or tables nested too deep") from None
    fields = [f.name for f in dataclasses.fields(TuningProfile)]
    try:
        if "vcpus" in data:  # the CPU split follows the file's vCPU count, not this machine's
            base = TuningProfile.for_vcpus(_int_in("vcpus", data["vcpus"], 2, MAX_VCPUS))
        else:
            base = TuningProfile.for_vcpus(vcpus)
        values = {}
        for key, value in data.items():
            if key not in fields:
                name = key if len(key) <= 64 else shown(key)  # ProfileError escapes it
                raise ProfileError(f"unknown key {name}; known keys: {', '.join(fields)}")
            values[key] = _profile_value(key, value, getattr(base, key))
        return dataclasses.replace(base, **values)
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None


def load_profile(path: str | Path | None, vcpus: int) -> TuningProfile:
    """The profile in a TOML file (any key of TuningProfile), over the defaults for ``vcpus``.

    Raises ProfileError with one line naming the file, the key, the value and what is allowed;
    never another exception, whatever the file holds (tests/contracts fuzz it).
    """
    base = TuningProfile.for_vcpus(vcpus)
    if path is None:
        return base
    path = Path(path)
    return parse_profile(read_profile_text(path), vcpus, where=str(path))


CPULIST_KEYS = ("housekeeping", "isolated")


def profile_file(profile: TuningProfile, what: str) -> str:
    """``profile`` as TOML that ``load_profile`` reads back to an equal profile; the first line
    says ``what`` it is."""
    lines = [f"# {what[0].upper()}{what[1:]}."]
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        if f.name.startswith("exchange_") and value == f.default:
            continue  # no exchange: the file is as it was before hosts could name one
        if f.name in CPULIST_KEYS:
            lines.append(f"{f.name} = {toml_value(cpulist(value))}")
        elif isinstance(value, tuple):
            lines.append(f"{f.name} = [{', '.join(toml_value(v) for v in value)}]")
        elif not isinstance(value, dict):
            lines.append(f"{f.name} = {toml_value(value)}")
    lines.append("\n[sysctls]")
    lines += [f"{toml_value(key)} = {toml_value(value)}" for key, value in profile.sysctls.items()]
    return "\n".join(lines) + "\n"
