"""``check-host``: does this host match its tuning profile? Read-only, from /proc and /sys.

Every check reads files under ``root`` (``/`` on a host; a crafted tree in tests) and never
raises on a missing file: that check fails, or is not applicable, with the reason in ``detail``,
and a failure's ``detail`` says what to do. The expectations come from
``contracts.profile.TuningProfile`` (the one source of truth); without a profile, the installed
one (``INSTALLED_PROFILE``) or the defaults for the CPUs under ``root`` and the platform.

The checks, by area (each module's docstring has the decisions behind its checks):

- ``kernel``: the command line and what took effect of it (nohz_full, rcu_nocbs, skew_tick,
  nosoftlockup), the sysctls;
- ``cpus``: the isolated CPUs, kernel threads and unbound workqueues kept off them, PID 1's
  affinity, governor / C-states / SMT (not applicable on Graviton);
- ``memory``: hugepages, THP and khugepaged, swap, the engine's memlock limit, the segments' mount;
- ``interrupts``: interrupts on the isolated CPUs, IRQ affinity, irqbalance and its ban;
- ``network``: the NIC's queues and coalescing; the network sysctls (not applicable);
- ``timesync``: the clocksource, chrony running, synchronised, on the Amazon Time Sync Service;
- ``units``: lowlat-tune succeeded at this boot, the packages, tuned off, block I/O (not
  applicable);
- ``security``: the firewall is the profile's ruleset and loaded at this boot; sshd reads
  lowlat's drop-in first (keys only, root login as the profile says).

``coverage`` maps the checks to the AWS sample's validation categories.

Processes: a unit sandboxed with ``ProtectProc=invisible`` (the telemetry API) sees none of
root's processes. The checks that need them are not applicable there rather than passing blind;
the root timer (``lowlat-check-host.timer``, ami/units.py) runs check-host where it sees
everything, and the API serves its report.

Light: standard library, ``contracts`` and the light ``ami`` modules (render, units, hostos)
only: the telemetry process and Fabric import it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ami.check import cpus, interrupts, kernel, memory, network, security, timesync, units
from ami.check.model import FAIL, NA, PASS, STATUSES, Check, Report
from ami.check.read import Host, count_cpus, detect_platform, parse_interrupts
from contracts.profile import INSTALLED_PROFILE, TuningProfile, cpulist, load_profile

__all__ = [
    "FAIL",
    "NA",
    "PASS",
    "STATUSES",
    "Check",
    "Report",
    "check_host",
    "count_cpus",
    "default_profile",
    "detect_platform",
    "parse_interrupts",
]


def default_profile(root: Path = Path("/")) -> TuningProfile:
    """The profile the host under ``root`` was tuned with (``contracts.profile.INSTALLED_PROFILE``)
    when it has one; else the defaults for its vCPU count and platform (at least 2 vCPUs)."""
    vcpus = max(2, count_cpus(root))
    installed = root / INSTALLED_PROFILE.lstrip("/")
    if installed.is_file():
        return load_profile(installed, vcpus)
    return TuningProfile.for_vcpus(vcpus, platform=detect_platform(root))


def check_host(
    root: Path = Path("/"),
    profile: TuningProfile | None = None,
    irq_window_s: float = 1.0,
    wait: Callable[[float], None] = time.sleep,
) -> Report:
    """Every check of the host under ``root`` against ``profile``.

    ``wait(irq_window_s)`` runs between the two reads of /proc/interrupts (tests pass a hook
    that rewrites the file). Never raises on missing or unreadable files.
    """
    root = Path(root)
    profile = profile or default_profile(root)
    host = Host(root, profile)
    checks = [
        *kernel.checks(host),
        cpus.check_isolated(host),
        cpus.check_kthreads(host),
        cpus.check_workqueues(host),
        cpus.check_pid1(host),
        *memory.checks(host),
        *interrupts.checks(host, irq_window_s, wait),
        *network.checks(host),
        *timesync.checks(host),
        *units.checks(host),
        *cpus.check_power(host),
        *security.security_checks(root, profile),
    ]
    facts: dict[str, str | int] = {
        "platform": profile.platform,
        "vcpus": count_cpus(root),
        "kernel_release": host.release or "unknown",
        "housekeeping": cpulist(profile.housekeeping),
        "isolated": cpulist(profile.isolated),
    }
    return Report(checks=checks, host=facts)
