"""Who runs where: the isolated CPUs, the kernel threads and unbound workqueues kept off them,
PID 1's affinity (every unit without its own inherits it), and governor / C-states / SMT.

- ``kthreads_on_isolated`` flags kernel threads confined to isolated CPUs, except the per-CPU
  ones the kernel runs on every CPU by design (``PER_CPU_KTHREADS``), and those the kernel binds
  itself (``PF_NO_SETAFFINITY``) other than unbound kworkers (which follow the workqueue mask):
  a per-CPU workqueue's rescuer (``mm_percpu_wq``, found on the lab's host after a reboot)
  stays bound to the last CPU whose work it rescued, sleeps otherwise, and cannot be moved. Those
  are named, not failed. It is not applicable when no kernel thread is visible at all (a sandbox
  with ``ProtectProc=invisible`` hides them).
- ``workqueue_cpumask`` judges what the kernel runs unbound work on. A workqueue's own
  ``cpumask`` file shows the mask it *asks* for (all CPUs unless someone wrote it); the kernel
  runs it on that mask ANDed with the global one, or on the global one when they share no CPU
  (``apply_wqattrs_prepare`` in kernel/workqueue.c). So each workqueue's effective mask, and the
  global mask itself, must lie within the housekeeping CPUs.
- governor / cstates / smt are ``not_applicable`` on Graviton (no SMT, no C-/P-state control);
  on x86 they are checked when the kernel exposes them.
"""

from __future__ import annotations

import re

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host, cpus, mask_cpus
from ami.render import CPU_AFFINITY_CONF, WORKQUEUE_CPUMASK
from contracts.profile import cpulist, cpumask

GRAVITON_NA = "Graviton: no SMT, no C-/P-state control"
RESTART_TUNE = "systemctl restart lowlat-tune"

# kernel threads that exist once per CPU and belong on that CPU, isolated or not
PER_CPU_KTHREADS = re.compile(
    r"^(ksoftirqd|migration|cpuhp|rcuc|rcuop|rcuos|rcuog|watchdog|idle_inject|ktimers"
    r"|posixcputmr|irq_work)/\d+$"
    r"|^kworker/\d+:\d+H?(-.*)?$"
)
WORKQUEUES = "sys/devices/virtual/workqueue"
WRITEBACK_CPUMASK = "sys/bus/workqueue/devices/writeback/cpumask"


def check_isolated(host: Host) -> Check:
    profile = host.profile
    expected = cpulist(profile.isolated)
    text = host.read("sys/devices/system/cpu/isolated")
    if text is None:
        return Check("isolated", FAIL, expected, "missing", "no /sys/devices/system/cpu/isolated")
    observed = text.strip()
    if cpus(text) == tuple(profile.isolated):
        return Check("isolated", PASS, expected, observed)
    return Check(
        "isolated",
        FAIL,
        expected,
        observed or "(none)",
        "the kernel isolates other CPUs than the profile's (isolcpus= on the command line): "
        "put the profile's arguments on the boot entries (lowlat-apply-kernel-args) and reboot",
    )


def check_kthreads(host: Host) -> Check:
    iso = set(host.profile.isolated)
    expected = "no unbound kernel threads confined to isolated CPUs"
    if not host.pid_dirs:
        return Check("kthreads_on_isolated", NA, expected, "", "no processes under /proc")
    if not host.sees_kernel_threads:
        return Check(
            "kthreads_on_isolated",
            NA,
            expected,
            "",
            "no kernel threads visible under /proc here (a sandbox with ProtectProc=invisible "
            "hides them); the root timer's report (lowlat-check-host.timer) sees them",
        )
    offenders: list[str] = []
    bound: list[str] = []
    for proc in host.processes:
        if not proc.kthread:
            continue
        allowed = proc.allowed
        if not allowed or not set(allowed) <= iso or PER_CPU_KTHREADS.match(proc.comm):
            continue
        shown = f"{proc.comm}[{proc.pid}] on {cpulist(allowed)}"
        unbound_worker = proc.comm.startswith("kworker/u")
        (bound if proc.kernel_bound and not unbound_worker else offenders).append(shown)
    note = f"; bound there by the kernel, tolerated: {', '.join(sorted(bound))}" if bound else ""
    if offenders:
        offenders.sort()
        shown = "; ".join(offenders[:10]) + (" ..." if len(offenders) > 10 else "")
        return Check(
            "kthreads_on_isolated",
            FAIL,
            expected,
            shown,
            f"{len(offenders)} kernel thread(s) confined to isolated CPUs: the workqueue mask "
            f"(workqueue_cpumask) or a driver pinned them; {RESTART_TUNE} rewrites the mask" + note,
        )
    return Check(
        "kthreads_on_isolated",
        PASS,
        expected,
        "none",
        f"{len(host.pid_dirs)} processes looked at{note}",
    )


def _workqueue_masks(host: Host) -> dict[str, str | None]:
    """Each sysfs-visible workqueue's own cpumask text, by name (writeback's from either path)."""
    masks: dict[str, str | None] = {}
    for path in host.glob(f"{WORKQUEUES}/*/cpumask"):
        masks[path.parent.name] = host.read(str(path.relative_to(host.root)))
    writeback = host.read(WRITEBACK_CPUMASK)
    if writeback is not None:
        masks["writeback"] = writeback
    return masks


def check_workqueues(host: Host) -> Check:
    hk = set(host.profile.housekeeping)
    expected = (
        f"unbound workqueues on housekeeping CPUs {cpulist(hk)} only "
        f"(global cpumask {cpumask(hk)}, writeback included)"
    )
    text = host.read(WORKQUEUE_CPUMASK)
    global_cpus = mask_cpus(text)
    if text is None or global_cpus is None:
        observed = "missing" if text is None else text.strip()
        detail = f"cannot read {WORKQUEUE_CPUMASK}; lowlat-tune writes it at boot ({RESTART_TUNE})"
        return Check("workqueue_cpumask", FAIL, expected, observed, detail)
    outside = []
    if not global_cpus or not set(global_cpus) <= hk:
        outside.append(f"global {text.strip()} (CPUs {cpulist(global_cpus) or 'none'})")
    masks = _workqueue_masks(host)
    for name, own in sorted(masks.items()):
        asked = mask_cpus(own)
        if asked is None:
            outside.append(f"{name}: unreadable cpumask")
            continue
        effective = (set(asked) & set(global_cpus)) or set(global_cpus)
        if not effective <= hk:
            outside.append(f"{name} on {cpulist(effective)}")
    writeback = "writeback" in masks
    if outside:
        return Check(
            "workqueue_cpumask",
            FAIL,
            expected,
            "; ".join(outside[:8]) + (" ..." if len(outside) > 8 else ""),
            "unbound kernel work (writeback, crypto, block...) can run on isolated CPUs: "
            f"lowlat-tune writes the global mask at boot ({RESTART_TUNE})",
        )
    return Check(
        "workqueue_cpumask",
        PASS,
        expected,
        f"global {text.strip()} (CPUs {cpulist(global_cpus)}); {len(masks)} workqueue(s)"
        + ("" if writeback else ", no writeback workqueue in sysfs"),
        "a workqueue runs on its own cpumask ANDed with the global one",
    )


def check_pid1(host: Host) -> Check:
    hk = cpulist(host.profile.housekeeping)
    expected = f"PID 1 (systemd) on housekeeping CPUs {hk} (CPUAffinity= drop-in in effect)"
    status = host.read("proc/1/status")
    if status is None:
        return Check(
            "pid1_affinity",
            NA,
            expected,
            "",
            "PID 1 is not visible here (a sandbox with ProtectProc=invisible hides it); the "
            "root timer's report (lowlat-check-host.timer) sees it",
        )
    match = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.MULTILINE)
    observed = match.group(1) if match else "missing"
    if observed == hk:
        return Check("pid1_affinity", PASS, expected, observed)
    return Check(
        "pid1_affinity",
        FAIL,
        expected,
        observed,
        "every unit without its own CPUAffinity= (sshd, agents, cron) may run on isolated CPUs: "
        f"{CPU_AFFINITY_CONF} takes effect at boot (or systemctl daemon-reexec)",
    )


def check_power(host: Host) -> list[Check]:
    profile, root, cmdline = host.profile, host.root, host.cmdline
    if not profile.has_cpu_power_control:
        return [Check(n, NA, "", "", GRAVITON_NA) for n in ("governor", "cstates", "smt")]
    governors = host.glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
    if not governors:
        governor = Check("governor", NA, "performance", "", "no cpufreq: the host sets the clock")
    else:
        values = {(host.read(str(g.relative_to(root))) or "?").strip() for g in governors}
        status = PASS if values == {"performance"} else FAIL
        governor = Check("governor", status, "performance", ",".join(sorted(values)))
    limits = ("intel_idle.max_cstate=0", "processor.max_cstate=1", "idle=poll")
    driver = (host.read("sys/devices/system/cpu/cpuidle/current_driver") or "none").strip()
    used = [a for a in cmdline.split() if a in limits]
    if driver == "none":
        cstates = Check("cstates", NA, " or ".join(limits), "", "no cpuidle driver")
    elif used:
        cstates = Check("cstates", PASS, " or ".join(limits), " ".join(used))
    else:
        cstates = Check(
            "cstates", FAIL, " or ".join(limits), f"cpuidle driver {driver}", "deep C-states on"
        )
    active = host.read("sys/devices/system/cpu/smt/active")
    if active is None:
        smt = Check("smt", NA, "0", "missing", "no SMT control on this kernel")
    elif active.strip() == "1":
        smt = Check("smt", FAIL, "0", "1", "SMT siblings share the isolated cores (use nosmt)")
    else:
        smt = Check("smt", PASS, "0", active.strip())
    return [governor, cstates, smt]
