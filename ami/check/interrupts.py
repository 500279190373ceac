"""Interrupts: none fire on the isolated CPUs, none may be steered there, and irqbalance runs
with the isolated CPUs banned (kept on, as ENA's maintainers advise, rather than stopped).

- ``irqs_on_isolated`` compares two reads of /proc/interrupts ``irq_window_s`` apart. With
  ``irq_window_s=0`` there is no window to compare, so the check is ``not_applicable``. The
  local timer (``LOC`` on x86, ``arch_timer`` on arm64) may tick once a second on an isolated
  CPU that runs a task even under nohz_full (the residual 1 Hz tick): up to ``window + 1``
  such ticks per CPU are tolerated; every other interrupt counts.
- ``irq_affinity`` reads each /proc/irq/N/effective_affinity_list (smp_affinity_list where the
  kernel has no effective mask). Two kinds may include isolated CPUs by design: per-CPU
  interrupts (GIC PPIs such as ``arch_timer``: hwirq 16-31 or 1056-1119), and the per-CPU queue
  interrupts of block devices (NVMe on EBS and instance storage, virtio-blk in the lab), which
  the kernel manages (``isolcpus=managed_irq`` keeps them off isolated CPUs whenever a queue
  also serves a housekeeping CPU; the others fire only for I/O submitted from their own CPU, and
  the stages submit none; nothing, irqbalance included, can move them). They are named, not
  failed. Managed is read from debugfs (``IRQD_AFFINITY_MANAGED`` in
  /sys/kernel/debug/irq/irqs/N) where it is mounted, else known from the queue's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host, cpus, parse_interrupts
from ami.hostos import host_os
from contracts.profile import cpulist, parse_cpulist

# blk-mq queue interrupts, which the kernel manages: NVMe I/O queues, virtio-blk request queues
MANAGED_QUEUE = re.compile(r"^(nvme\d+q[1-9]\d*|virtio\d+-req\.\d+)$")
BAN_FIX = "python -m ami apply --root / writes the ban; then systemctl restart irqbalance"


def check_irqs(host: Host, window_s: float, wait: Callable[[float], None]) -> Check:
    profile = host.profile
    expected = f"no interrupts on CPUs {cpulist(profile.isolated)} over {window_s:g} s"
    first = host.read("proc/interrupts")
    if first is None:
        return Check("irqs_on_isolated", FAIL, expected, "missing", "cannot read /proc/interrupts")
    if window_s <= 0:
        return Check(
            "irqs_on_isolated", NA, expected, "", "irq window 0 s: nothing to compare (one read)"
        )
    wait(window_s)
    second = host.read("proc/interrupts")
    if second is None:
        return Check("irqs_on_isolated", FAIL, expected, "missing", "/proc/interrupts went away")
    before, after = parse_interrupts(first), parse_interrupts(second)
    tolerated = int(window_s) + 1
    grew = []
    for name, counts in after.items():
        timer = name.split(" ")[0] == "LOC" or "arch_timer" in name
        for cpu in profile.isolated:
            delta = counts.get(cpu, 0) - before.get(name, {}).get(cpu, 0)
            if delta > (tolerated if timer else 0):
                grew.append((delta, name, cpu))
    if not grew:
        return Check("irqs_on_isolated", PASS, expected, "none")
    grew.sort(reverse=True)
    top = "; ".join(f"cpu{cpu} {name}: +{delta}" for delta, name, cpu in grew[:5])
    return Check(
        "irqs_on_isolated",
        FAIL,
        expected,
        top,
        f"{len(grew)} interrupt source(s) fired on isolated CPUs (top 5 shown): see "
        "irq_affinity and irqbalance_ban for where they are steered",
    )


def _descriptions(host: Host) -> dict[str, str]:
    """IRQ number -> the rest of its /proc/interrupts line after the counts."""
    found = {}
    for name in parse_interrupts(host.read("proc/interrupts") or ""):
        label, _, desc = name.partition(" (")
        found[label] = desc.rstrip(")")
    return found


def _per_cpu(desc: str) -> bool:
    """A GIC private peripheral interrupt: one per CPU by hardware (arch_timer, PMU)."""
    words = desc.split()
    if len(words) < 2 or not words[0].startswith("GIC") or not words[1].isdigit():
        return False
    hwirq = int(words[1])
    return 16 <= hwirq < 32 or 1056 <= hwirq < 1120


def check_irq_affinity(host: Host) -> Check:
    iso = set(host.profile.isolated)
    expected = f"no IRQ's effective affinity includes an isolated CPU ({cpulist(iso)})"
    dirs = [d for d in host.glob("proc/irq/*") if d.name.isdigit()]
    if not dirs:
        return Check("irq_affinity", NA, expected, "", "no /proc/irq here")
    descriptions = _descriptions(host)
    offenders: list[str] = []
    managed: list[str] = []
    for irq in sorted(dirs, key=lambda d: int(d.name)):
        rel = str(irq.relative_to(host.root))
        affinity = cpus(host.read(f"{rel}/effective_affinity_list"))
        if affinity is None:
            affinity = cpus(host.read(f"{rel}/smp_affinity_list"))
        on_isolated = iso & set(affinity or ())
        desc = descriptions.get(irq.name, "")
        if not on_isolated or _per_cpu(desc):
            continue
        action = desc.split()[-1] if desc else "?"
        shown = f"{irq.name} ({action}) on {cpulist(on_isolated)}"
        (managed if _managed(host, irq.name, action) else offenders).append(shown)
    note = f"; kernel-managed queue IRQs tolerated: {', '.join(managed)}" if managed else ""
    if offenders:
        return Check(
            "irq_affinity",
            FAIL,
            expected,
            "; ".join(offenders[:8]) + (" ..." if len(offenders) > 8 else ""),
            f"{len(offenders)} IRQ(s) steered to isolated CPUs: irqbalance moves them off when "
            f"it runs with the ban (irqbalance_running, irqbalance_ban){note}",
        )
    return Check(
        "irq_affinity", PASS, expected, f"none of {len(dirs)} IRQs", note.removeprefix("; ")
    )


def _managed(host: Host, irq: str, action: str) -> bool:
    """The kernel manages this interrupt's affinity (a per-CPU queue of a block device)."""
    state = host.read(f"sys/kernel/debug/irq/irqs/{irq}")
    if state is not None:
        return "IRQD_AFFINITY_MANAGED" in state
    return bool(MANAGED_QUEUE.match(action))


def _banned(line: str) -> set[int] | None:
    """CPUs an irqbalance config line bans, None for other lines; ValueError if unparsable."""
    key, _, value = line.strip().partition("=")
    value = value.strip().strip("\"'")
    if key == "IRQBALANCE_BANNED_CPULIST":
        return set(parse_cpulist(value))
    if key == "IRQBALANCE_BANNED_CPUS" and value:
        mask = int(value.replace(",", ""), 16)
        return {c for c in range(mask.bit_length()) if mask >> c & 1}
    return None


def check_irqbalance_ban(host: Host) -> Check:
    profile = host.profile
    conf = host_os(profile).irqbalance_conf
    expected = f"IRQBALANCE_BANNED_CPULIST covers {cpulist(profile.isolated)}"
    text = host.read(conf)
    if text is None:
        if host.path("usr/sbin/irqbalance").exists():
            return Check("irqbalance_ban", FAIL, expected, "missing", f"no {conf}: {BAN_FIX}")
        return Check("irqbalance_ban", NA, expected, "", "irqbalance is not installed")
    banned: set[int] = set()
    observed = "not set"
    for line in text.splitlines():
        try:
            cpus_banned = _banned(line)
        except ValueError:
            return Check("irqbalance_ban", FAIL, expected, line.strip(), "cannot parse this line")
        if cpus_banned is not None:
            banned |= cpus_banned
            observed = line.strip()
    missing = set(profile.isolated) - banned
    if missing:
        return Check(
            "irqbalance_ban",
            FAIL,
            expected,
            observed,
            f"CPUs {cpulist(missing)} not banned: {BAN_FIX}",
        )
    return Check("irqbalance_ban", PASS, expected, observed)


def check_irqbalance_running(host: Host) -> Check:
    expected = "irqbalance running (with the ban: irqbalance_ban)"
    if not host.sees_kernel_threads:
        return Check(
            "irqbalance_running",
            NA,
            expected,
            "",
            "root's processes are not visible here (a sandbox hides them); the root timer's "
            "report (lowlat-check-host.timer) sees them",
        )
    found = host.running("irqbalance")
    if found:
        return Check("irqbalance_running", PASS, expected, f"irqbalance[{found[0].pid}]")
    return Check(
        "irqbalance_running",
        FAIL,
        expected,
        "not running",
        "ENA gives no affinity hints: without irqbalance its queue interrupts stay where they "
        "were first put. systemctl enable --now irqbalance",
    )


def checks(host: Host, window_s: float, wait: Callable[[float], None]) -> list[Check]:
    return [
        check_irqs(host, window_s, wait),
        check_irq_affinity(host),
        check_irqbalance_ban(host),
        check_irqbalance_running(host),
    ]
