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
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from contracts.documents import toml_value
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
}
DEFAULT_SYSCTLS = {key: value for key, (value, _) in SYSCTLS.items()}


class ProfileError(ValueError):
    """A profile value is wrong; the message names the key, the value and what is allowed."""


class Grammar(NamedTuple):
    """What a profile value of one kind may be: a full-match pattern, and the words for it."""

    pattern: re.Pattern[str]
    allowed: str

    def check(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise ProfileError(f"{key} = {value!r}: use {self.allowed}")
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
        raise ProfileError(f"{key} = {value!r}: use a whole number from {low} to {high}")
    return value


def _cidrs(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, tuple | list):
        raise ProfileError(f'{key} = {value!r}: use a list of CIDRs like ["203.0.113.0/24"]')
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except (TypeError, ValueError):
            raise ProfileError(
                f"{key}: {cidr!r} is not a CIDR; use networks like 203.0.113.0/24 or "
                "2001:db8::/32 (no host bits set)"
            ) from None
    return tuple(value)


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


def parse_cpulist(text: str) -> tuple[int, ...]:
    """ "1-3,5" -> (1, 2, 3, 5); "" -> (). Raises ValueError on bad syntax."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
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
        raise ProfileError(f'{key} = {value!r}: use a cpulist like "1-3" or a list like [1, 2]')
    if key in ("ssh_cidrs", "telemetry_cidrs"):
        return _cidrs(key, value)
    if key == "sysctls":
        if not isinstance(value, dict):
            raise ProfileError(f"sysctls = {value!r}: use a table of name = value")
        for name, item in value.items():
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ProfileError(f"sysctls.{name} = {item!r}: use a string or a whole number")
        return {**DEFAULT_SYSCTLS, **{k: str(v) for k, v in value.items()}}
    expected = type(default)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise ProfileError(f"{key} = {value!r}: use a {expected.__name__} (default {default!r})")
    return value


def load_profile(path: str | Path | None, vcpus: int) -> TuningProfile:
    """The profile in a TOML file (any key of TuningProfile), over the defaults for ``vcpus``.

    Raises ProfileError with one line naming the file, the key, the value and what is allowed.
    """
    base = TuningProfile.for_vcpus(vcpus)
    if path is None:
        return base
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except IsADirectoryError:
        raise ProfileError(f"{path}: is a directory; give the profile's TOML file") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    fields = [f.name for f in dataclasses.fields(TuningProfile)]
    try:
        if "vcpus" in data:  # the CPU split follows the file's vCPU count, not this machine's
            base = TuningProfile.for_vcpus(_int_in("vcpus", data["vcpus"], 2, MAX_VCPUS))
        values = {}
        for key, value in data.items():
            if key not in fields:
                raise ProfileError(f"unknown key {key}; known keys: {', '.join(fields)}")
            values[key] = _profile_value(key, value, getattr(base, key))
        return dataclasses.replace(base, **values)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


CPULIST_KEYS = ("housekeeping", "isolated")


def profile_file(profile: TuningProfile, what: str) -> str:
    """``profile`` as TOML that ``load_profile`` reads back to an equal profile; the first line
    says ``what`` it is."""
    lines = [f"# {what[0].upper()}{what[1:]}."]
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        if f.name in CPULIST_KEYS:
            lines.append(f"{f.name} = {toml_value(cpulist(value))}")
        elif isinstance(value, tuple):
            lines.append(f"{f.name} = [{', '.join(toml_value(v) for v in value)}]")
        elif not isinstance(value, dict):
            lines.append(f"{f.name} = {toml_value(value)}")
    lines.append("\n[sysctls]")
    lines += [f"{toml_value(key)} = {toml_value(value)}" for key, value in profile.sysctls.items()]
    return "\n".join(lines) + "\n"
