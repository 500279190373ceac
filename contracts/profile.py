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
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.stages import stage_cores

PLATFORMS = ("graviton", "x86")
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
    "net.core.busy_poll": (
        "50",
        "poll()/select() busy-poll the NIC queue, microseconds (telemetry)",
    ),
    "net.core.busy_read": ("50", "blocking socket reads busy-poll the NIC queue, microseconds"),
    "kernel.watchdog": ("0", "no soft/hard-lockup watchdog threads or timers on the isolated CPUs"),
}
DEFAULT_SYSCTLS = {key: value for key, (value, _) in SYSCTLS.items()}


class ProfileError(ValueError):
    """A profile value is wrong; the message names the key, the value and what is allowed."""


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
    vcpus: int
    housekeeping: tuple[int, ...]
    isolated: tuple[int, ...]
    hugepages: int = 512  # 2 MiB pages: 1 GiB for the rings and stats (shm_dir below)
    platform: str = "graviton"
    sysctls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SYSCTLS))
    nic: str = "eth0"
    rx_usecs: int = 0  # interrupt coalescing: deliver at once (ENA accepts 0-2 for low latency)
    service_user: str = "lowlat"
    install_prefix: str = "/opt/lowlat"
    shm_dir: str = "/dev/hugepages/lowlat"  # hugetlbfs: ring pages never fault or move
    telemetry_port: int = 8000
    # Loopback unless people reach the API directly: the CDK app sets "0.0.0.0" when its
    # allowedCidrs open the telemetry port (the security group is then the gate).
    telemetry_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.vcpus < 2:
            raise ProfileError(f"vcpus = {self.vcpus}: a tuned host needs at least 2 vCPUs")
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
        if self.platform not in PLATFORMS:
            raise ProfileError(f"platform = {self.platform!r}: use one of {', '.join(PLATFORMS)}")
        if self.hugepages < 0:
            raise ProfileError(f"hugepages = {self.hugepages}: use a count >= 0")
        if not 0 <= self.rx_usecs <= 1000:
            raise ProfileError(f"rx_usecs = {self.rx_usecs}: use 0 to 1000 microseconds")

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


def _profile_value(path: Path, key: str, value: Any, default: Any) -> Any:
    """One key of a profile file as TuningProfile takes it, or a ProfileError saying why not."""
    if key in ("housekeeping", "isolated"):
        if isinstance(value, str):
            return parse_cpulist(value)
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return tuple(value)
        raise ProfileError(f'{path}: {key} = {value!r}: use a cpulist like "1-3" or [1, 2]')
    if key == "sysctls":
        if not isinstance(value, dict):
            raise ProfileError(f"{path}: sysctls must be a table of name = value")
        return {**DEFAULT_SYSCTLS, **{k: str(v) for k, v in value.items()}}
    expected = type(default)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise ProfileError(
            f"{path}: {key} = {value!r}: use a {expected.__name__} (default {default!r})"
        )
    return value


def load_profile(path: str | Path | None, vcpus: int) -> TuningProfile:
    """The profile in a TOML file (any key of TuningProfile), over the defaults for ``vcpus``."""
    base = TuningProfile.for_vcpus(vcpus)
    if path is None:
        return base
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(data.get("vcpus"), int) and not isinstance(data["vcpus"], bool):
        try:  # the CPU split follows the file's vCPU count, not this machine's
            base = TuningProfile.for_vcpus(data["vcpus"])
        except ProfileError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    fields = [f.name for f in dataclasses.fields(TuningProfile)]
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ProfileError(f"{path}: unknown key {key}; known keys: {', '.join(fields)}")
        values[key] = _profile_value(path, key, value, getattr(base, key))
    try:
        return dataclasses.replace(base, **values)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
