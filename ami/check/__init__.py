"""``check-host``: does this host match its tuning profile? Read-only, from /proc and /sys.

Every check reads files under ``root`` (``/`` on a host; a crafted tree in tests) and never
raises on a missing file: that check fails, or is not applicable, with the reason in ``detail``.
The expectations come from ``contracts.profile.TuningProfile`` (the one source of truth); without a
profile, the defaults for the CPUs found under ``root`` and the detected platform are used.

Decisions worth knowing:

- ``irqs_on_isolated`` compares two reads of /proc/interrupts ``irq_window_s`` apart. With
  ``irq_window_s=0`` there is no window to compare, so the check is ``not_applicable``. The
  local timer (``LOC`` on x86, ``arch_timer`` on arm64) may tick once a second on an isolated
  CPU that runs a task even under nohz_full (the residual 1 Hz tick): up to ``window + 1``
  such ticks per CPU are tolerated; every other interrupt counts.
- ``kthreads_on_isolated`` flags kernel threads confined to isolated CPUs, except the per-CPU
  ones the kernel runs on every CPU by design (``PER_CPU_KTHREADS``).
- governor / cstates / smt are ``not_applicable`` on Graviton (no SMT, no C-/P-state control);
  on x86 they are checked when the kernel exposes them.

Light: standard library and ``contracts.profile`` only (the telemetry process and Fabric import it).
"""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contracts.profile import (
    HUGEPAGE_KB,
    INSTALLED_PROFILE,
    TuningProfile,
    cpulist,
    load_profile,
    parse_cpulist,
)

PASS, FAIL, NA = "pass", "fail", "not_applicable"
STATUSES = (PASS, FAIL, NA)
PF_KTHREAD = 0x00200000
GRAVITON_NA = "Graviton: no SMT, no C-/P-state control"

# kernel threads that exist once per CPU and belong on that CPU, isolated or not
PER_CPU_KTHREADS = re.compile(
    r"^(ksoftirqd|migration|cpuhp|rcuc|rcuop|rcuos|rcuog|watchdog|idle_inject|ktimers"
    r"|posixcputmr|irq_work)/\d+$"
    r"|^kworker/\d+:\d+H?(-.*)?$"
)
_TIMER_IRQS = ("LOC", "arch_timer")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # one of STATUSES
    expected: str
    observed: str
    detail: str = ""


@dataclass
class Report:
    checks: list[Check]
    host: dict[str, str | int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def passed(self) -> int:
        return self.count(PASS)

    @property
    def failed(self) -> int:
        return self.count(FAIL)

    @property
    def not_applicable(self) -> int:
        return self.count(NA)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict:
        return {
            "checks": [asdict(c) for c in self.checks],
            "ok": self.ok,
            "summary": {
                "passed": self.passed,
                "failed": self.failed,
                "not_applicable": self.not_applicable,
                "total": len(self.checks),
            },
            "host": dict(self.host),
        }


# ----------------------------------------------------------------------------- reading


def _read(root: Path, rel: str) -> str | None:
    """The text of ``root/rel``, or None when it cannot be read."""
    try:
        return (root / rel.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def _cpus(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    text = text.strip()
    if text in ("", "(null)"):
        return ()
    try:
        return parse_cpulist(text)
    except ValueError:
        return None


def count_cpus(root: Path = Path("/")) -> int:
    """vCPUs under ``root``: /sys/devices/system/cpu/possible, else /proc/cpuinfo (0 if neither)."""
    possible = _cpus(_read(root, "sys/devices/system/cpu/possible"))
    if possible:
        return len(possible)
    cpuinfo = _read(root, "proc/cpuinfo") or ""
    return len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))


def detect_platform(root: Path = Path("/")) -> str:
    """ "graviton" for an Arm (implementer 0x41) / aarch64 /proc/cpuinfo, else "x86"."""
    cpuinfo = _read(root, "proc/cpuinfo") or ""
    if re.search(r"^CPU implementer\s*:\s*0x41", cpuinfo, re.MULTILINE | re.IGNORECASE):
        return "graviton"
    return "graviton" if "aarch64" in cpuinfo.lower() else "x86"


def default_profile(root: Path = Path("/")) -> TuningProfile:
    """The profile the host under ``root`` was tuned with (``contracts.profile.INSTALLED_PROFILE``)
    when it has one; else the defaults for its vCPU count and platform (at least 2 vCPUs)."""
    vcpus = max(2, count_cpus(root))
    installed = root / INSTALLED_PROFILE.lstrip("/")
    if installed.is_file():
        return load_profile(installed, vcpus)
    return TuningProfile.for_vcpus(vcpus, platform=detect_platform(root))


def parse_interrupts(text: str) -> dict[str, dict[int, int]]:
    """/proc/interrupts -> {"24 (IO-APIC 5-edge ACPI:Ged)": {cpu: count}}."""
    lines = text.splitlines()
    if not lines:
        return {}
    columns = [int(c[3:]) for c in lines[0].split() if c.startswith("CPU") and c[3:].isdigit()]
    table: dict[str, dict[int, int]] = {}
    for line in lines[1:]:
        label, sep, rest = line.partition(":")
        if not sep:
            continue
        tokens = rest.split()
        counts = []
        for token in tokens[: len(columns)]:
            if not token.isdigit():
                break
            counts.append(int(token))
        desc = " ".join(tokens[len(counts) :])
        label = label.strip()
        name = f"{label} ({desc})" if desc else label
        table[name] = dict(zip(columns, counts, strict=False))
    return table


# ----------------------------------------------------------------------------- the checks


def _check_cmdline(root: Path, profile: TuningProfile, cmdline: str | None) -> Check:
    expected = " ".join(profile.kernel_args())
    if cmdline is None:
        return Check("cmdline", FAIL, expected, "missing", "cannot read /proc/cmdline")
    present = set(cmdline.split())
    missing = [a for a in profile.kernel_args() if a not in present]
    if missing:
        detail = f"{len(missing)} kernel argument(s) missing"
        return Check("cmdline", FAIL, expected, f"missing: {' '.join(missing)}", detail)
    return Check("cmdline", PASS, expected, "", "every kernel argument is present")


def _check_isolated(root: Path, profile: TuningProfile) -> Check:
    expected = cpulist(profile.isolated)
    text = _read(root, "sys/devices/system/cpu/isolated")
    if text is None:
        return Check("isolated", FAIL, expected, "missing", "no /sys/devices/system/cpu/isolated")
    observed = text.strip()
    got = _cpus(text)
    if got == tuple(profile.isolated):
        return Check("isolated", PASS, expected, observed)
    return Check(
        "isolated",
        FAIL,
        expected,
        observed or "(none)",
        "the kernel isolates other CPUs than the profile's (isolcpus= on the command line)",
    )


def _kernel_config(root: Path, release: str | None) -> tuple[str | None, str]:
    """(the kernel config text or None, where it came from)."""
    if release:
        text = _read(root, f"boot/config-{release}")
        if text is not None:
            return text, f"/boot/config-{release}"
    try:
        with gzip.open(root / "proc/config.gz", "rt", errors="replace") as f:
            return f.read(), "/proc/config.gz"
    except (OSError, EOFError):
        return None, "no kernel config found"


def _check_nohz_full(root: Path, profile: TuningProfile, cmdline: str, release: str | None):
    expected = cpulist(profile.isolated)
    text = _read(root, "sys/devices/system/cpu/nohz_full")
    observed = "missing" if text is None else (text.strip() or "(empty)")
    config, source = _kernel_config(root, release)
    built = None if config is None else "CONFIG_NO_HZ_FULL=y" in config.splitlines()
    asked = next((a for a in cmdline.split() if a.startswith("nohz_full=")), None)
    effective = text is not None and text.strip() not in ("", "(null)")
    if built is False or not effective:
        why = []
        if built is False:
            why.append(f"kernel built without CONFIG_NO_HZ_FULL=y ({source})")
        if not effective:
            why.append(f"/sys/devices/system/cpu/nohz_full is {observed}")
        head = (
            f"the command line asks for {asked} but it is not effective "
            "(dmesg: 'Housekeeping: nohz unsupported')"
            if asked
            else "nohz_full is not in effect"
        )
        return Check("nohz_full", FAIL, expected, observed, f"{head}: {'; '.join(why)}")
    if _cpus(text) != tuple(profile.isolated):
        return Check(
            "nohz_full", FAIL, expected, observed, "nohz_full covers other CPUs than the isolated"
        )
    note = "CONFIG_NO_HZ_FULL=y" if built else "kernel config not found; the kernel applies it"
    return Check("nohz_full", PASS, expected, observed, f"{note} ({source})")


def _check_hugepages(root: Path, profile: TuningProfile) -> Check:
    base = f"sys/kernel/mm/hugepages/hugepages-{HUGEPAGE_KB}kB"
    expected = f">= {profile.hugepages} pages of {HUGEPAGE_KB} kB"
    total, free = _read(root, f"{base}/nr_hugepages"), _read(root, f"{base}/free_hugepages")
    try:
        n = int((total or "").strip())
    except ValueError:
        if profile.hugepages == 0:
            return Check("hugepages", PASS, expected, "missing", "none needed")
        return Check("hugepages", FAIL, expected, "missing", f"no {HUGEPAGE_KB} kB hugepages")
    observed = f"total {n}, free {(free or '?').strip()}"
    if n >= profile.hugepages:
        return Check("hugepages", PASS, expected, observed)
    return Check("hugepages", FAIL, expected, observed, f"{profile.hugepages - n} pages short")


def _check_thp(root: Path) -> Check:
    text = _read(root, "sys/kernel/mm/transparent_hugepage/enabled")
    if text is None:
        return Check("thp", NA, "[never]", "missing", "this kernel has no transparent hugepages")
    observed = text.strip()
    if "[never]" in observed:
        return Check("thp", PASS, "[never]", observed)
    return Check("thp", FAIL, "[never]", observed, "khugepaged may stall the stages' pages")


def _check_sysctls(root: Path, profile: TuningProfile) -> Check:
    expected = ", ".join(f"{k}={v}" for k, v in profile.sysctls.items())
    wrong = []
    for key, value in profile.sysctls.items():
        text = _read(root, "proc/sys/" + key.replace(".", "/"))
        if text is None:
            wrong.append(f"{key}: not on this kernel")
        elif text.split() != str(value).split():
            wrong.append(f"{key}={' '.join(text.split())}")
    if wrong:
        return Check("sysctls", FAIL, expected, ", ".join(wrong), f"{len(wrong)} sysctl(s) differ")
    return Check("sysctls", PASS, expected, expected)


def _check_irqs(
    root: Path, profile: TuningProfile, window_s: float, wait: Callable[[float], None]
) -> Check:
    expected = f"no interrupts on CPUs {cpulist(profile.isolated)} over {window_s:g} s"
    first = _read(root, "proc/interrupts")
    if first is None:
        return Check("irqs_on_isolated", FAIL, expected, "missing", "cannot read /proc/interrupts")
    if window_s <= 0:
        return Check(
            "irqs_on_isolated", NA, expected, "", "irq window 0 s: nothing to compare (one read)"
        )
    wait(window_s)
    second = _read(root, "proc/interrupts")
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
        f"{len(grew)} interrupt source(s) fired on isolated CPUs (top 5 shown)",
    )


def _check_kthreads(root: Path, profile: TuningProfile) -> Check:
    iso = set(profile.isolated)
    expected = "no unbound kernel threads confined to isolated CPUs"
    try:
        pids = [p for p in (root / "proc").iterdir() if p.name.isdigit()]
    except OSError:
        pids = []
    if not pids:
        return Check("kthreads_on_isolated", NA, expected, "", "no processes under /proc")
    offenders = []
    for pid in pids:
        try:
            stat = (pid / "stat").read_text()
            cmdline = (pid / "cmdline").read_bytes()
            status = (pid / "status").read_text()
        except OSError:
            continue  # exited while we looked
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        rest = stat[stat.rfind(")") + 2 :].split()
        try:
            flags = int(rest[6])
        except (IndexError, ValueError):
            continue
        if cmdline or not flags & PF_KTHREAD:
            continue
        match = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.MULTILINE)
        allowed = _cpus(match.group(1)) if match else None
        if not allowed or not set(allowed) <= iso or PER_CPU_KTHREADS.match(comm):
            continue
        offenders.append(f"{comm}[{pid.name}] on {cpulist(allowed)}")
    if offenders:
        offenders.sort()
        shown = "; ".join(offenders[:10]) + (" ..." if len(offenders) > 10 else "")
        return Check(
            "kthreads_on_isolated",
            FAIL,
            expected,
            shown,
            f"{len(offenders)} kernel thread(s) confined to isolated CPUs",
        )
    return Check("kthreads_on_isolated", PASS, expected, "none", f"{len(pids)} processes looked at")


def _check_irqbalance(root: Path, profile: TuningProfile) -> Check:
    expected = f"IRQBALANCE_BANNED_CPULIST covers {cpulist(profile.isolated)}"
    text = _read(root, "etc/sysconfig/irqbalance")
    if text is None:
        if (root / "usr/sbin/irqbalance").exists():
            return Check(
                "irqbalance_ban", FAIL, expected, "missing", "no /etc/sysconfig/irqbalance"
            )
        return Check("irqbalance_ban", NA, expected, "", "irqbalance is not installed")
    banned: set[int] = set()
    observed = "not set"
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        value = value.strip().strip("\"'")
        try:
            if key == "IRQBALANCE_BANNED_CPULIST":
                banned |= set(parse_cpulist(value))
                observed = line.strip()
            elif key == "IRQBALANCE_BANNED_CPUS" and value:
                mask = int(value.replace(",", ""), 16)
                banned |= {c for c in range(mask.bit_length()) if mask >> c & 1}
                observed = line.strip()
        except ValueError:
            return Check("irqbalance_ban", FAIL, expected, line.strip(), "cannot parse this line")
    missing = set(profile.isolated) - banned
    if missing:
        return Check(
            "irqbalance_ban", FAIL, expected, observed, f"CPUs {cpulist(missing)} not banned"
        )
    return Check("irqbalance_ban", PASS, expected, observed)


def _check_power(root: Path, profile: TuningProfile, cmdline: str) -> list[Check]:
    if not profile.has_cpu_power_control:
        return [Check(n, NA, "", "", GRAVITON_NA) for n in ("governor", "cstates", "smt")]
    cpu = root / "sys/devices/system/cpu"
    governors = sorted(cpu.glob("cpu[0-9]*/cpufreq/scaling_governor"))
    if not governors:
        governor = Check("governor", NA, "performance", "", "no cpufreq: the host sets the clock")
    else:
        values = {(_read(root, str(g.relative_to(root))) or "?").strip() for g in governors}
        status = PASS if values == {"performance"} else FAIL
        governor = Check("governor", status, "performance", ",".join(sorted(values)))
    limits = ("intel_idle.max_cstate=0", "processor.max_cstate=1", "idle=poll")
    driver = (_read(root, "sys/devices/system/cpu/cpuidle/current_driver") or "none").strip()
    used = [a for a in cmdline.split() if a in limits]
    if driver == "none":
        cstates = Check("cstates", NA, " or ".join(limits), "", "no cpuidle driver")
    elif used:
        cstates = Check("cstates", PASS, " or ".join(limits), " ".join(used))
    else:
        cstates = Check(
            "cstates", FAIL, " or ".join(limits), f"cpuidle driver {driver}", "deep C-states on"
        )
    active = _read(root, "sys/devices/system/cpu/smt/active")
    if active is None:
        smt = Check("smt", NA, "0", "missing", "no SMT control on this kernel")
    elif active.strip() == "1":
        smt = Check("smt", FAIL, "0", "1", "SMT siblings share the isolated cores (use nosmt)")
    else:
        smt = Check("smt", PASS, "0", active.strip())
    return [governor, cstates, smt]


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
    release = (_read(root, "proc/sys/kernel/osrelease") or "").strip() or None
    cmdline_text = _read(root, "proc/cmdline")
    cmdline = cmdline_text or ""
    checks = [
        _check_cmdline(root, profile, cmdline_text),
        _check_isolated(root, profile),
        _check_nohz_full(root, profile, cmdline, release),
        _check_hugepages(root, profile),
        _check_thp(root),
        _check_sysctls(root, profile),
        _check_irqs(root, profile, irq_window_s, wait),
        _check_kthreads(root, profile),
        _check_irqbalance(root, profile),
        *_check_power(root, profile, cmdline),
    ]
    host: dict[str, str | int] = {
        "platform": profile.platform,
        "vcpus": count_cpus(root),
        "kernel_release": release or "unknown",
        "housekeeping": cpulist(profile.housekeeping),
        "isolated": cpulist(profile.isolated),
    }
    return Report(checks=checks, host=host)
