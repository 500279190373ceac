"""The kernel's side of the tuning: its command line, and whether what it asks for took effect.

``cmdline`` checks the arguments are there; the others check their effect where the kernel shows
it: ``nohz_full`` (/sys/devices/system/cpu/nohz_full and the kernel config), ``rcu_nocbs`` (the
``rcuo`` kernel threads that take the isolated CPUs' RCU callbacks), ``nosoftlockup``
(/proc/sys/kernel/soft_watchdog); ``skew_tick`` leaves no trace but the command line, so it is
not applicable when asked for. ``sysctls`` compares /proc/sys with the profile.
"""

from __future__ import annotations

import re

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host, cpus
from ami.render import APPLY_KERNEL_ARGS
from contracts.profile import cpulist

REBOOT = f"put the profile's arguments on the boot entries ({APPLY_KERNEL_ARGS}) and reboot"
NO_HZ_FULL_KERNEL = (
    "boot a kernel built with CONFIG_NO_HZ_FULL=y, e.g. Ubuntu 24.04's generic kernel "
    "(deploy with `-c hostOs=ubuntu2404`)"
)
RCUO = re.compile(r"^rcuo[ps]/(\d+)$")


def check_cmdline(host: Host) -> Check:
    profile, cmdline = host.profile, host.cmdline_text
    expected = " ".join(profile.kernel_args())
    if cmdline is None:
        return Check("cmdline", FAIL, expected, "missing", "cannot read /proc/cmdline")
    present = set(cmdline.split())
    missing = [a for a in profile.kernel_args() if a not in present]
    if missing:
        detail = f"{len(missing)} kernel argument(s) missing: {REBOOT}"
        return Check("cmdline", FAIL, expected, f"missing: {' '.join(missing)}", detail)
    return Check("cmdline", PASS, expected, "", "every kernel argument is present")


def check_nohz_full(host: Host) -> Check:
    expected = cpulist(host.profile.isolated)
    text = host.read("sys/devices/system/cpu/nohz_full")
    observed = "missing" if text is None else (text.strip() or "(empty)")
    _, source = host.kernel_config
    built = host.config_option("CONFIG_NO_HZ_FULL")
    asked = host.cmdline_arg("nohz_full")
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
        todo = NO_HZ_FULL_KERNEL if built is False or asked else REBOOT
        detail = f"{head}: {'; '.join(why)}. To fix: {todo}"
        return Check("nohz_full", FAIL, expected, observed, detail)
    if cpus(text) != tuple(host.profile.isolated):
        return Check(
            "nohz_full",
            FAIL,
            expected,
            observed,
            f"nohz_full covers other CPUs than the isolated: {REBOOT}",
        )
    note = "CONFIG_NO_HZ_FULL=y" if built else "kernel config not found; the kernel applies it"
    return Check("nohz_full", PASS, expected, observed, f"{note} ({source})")


def check_rcu_nocbs(host: Host) -> Check:
    iso = set(host.profile.isolated)
    expected = f"an rcuo kernel thread (rcuop/N) for each isolated CPU {cpulist(iso)}"
    if not host.sees_kernel_threads:
        return Check(
            "rcu_nocbs",
            NA,
            expected,
            "",
            "no kernel threads visible under /proc here (a sandbox hides them); the root "
            "timer's report (lowlat-check-host.timer) sees them",
        )
    offloaded = {int(m.group(1)) for p in host.processes if p.kthread and (m := RCUO.match(p.comm))}
    missing = iso - offloaded
    if not missing:
        return Check(
            "rcu_nocbs",
            PASS,
            expected,
            f"rcuo threads for CPUs {cpulist(offloaded & iso)}",
            "their RCU callbacks run in these threads on the housekeeping CPUs",
        )
    if host.config_option("CONFIG_RCU_NOCB_CPU") is False:
        todo = "the kernel is built without CONFIG_RCU_NOCB_CPU=y: " + NO_HZ_FULL_KERNEL
    elif host.cmdline_arg("rcu_nocbs"):
        todo = "rcu_nocbs= is on the command line but not in effect for them: " + NO_HZ_FULL_KERNEL
    else:
        todo = f"rcu_nocbs= is not on the command line: {REBOOT}"
    return Check(
        "rcu_nocbs",
        FAIL,
        expected,
        f"no rcuo thread for CPUs {cpulist(missing)}",
        f"RCU callbacks of these CPUs run on them, in softirq: {todo}",
    )


def check_skew_tick(host: Host) -> Check:
    if host.cmdline_arg("skew_tick") == "skew_tick=1":
        return Check(
            "skew_tick",
            NA,
            "skew_tick=1",
            "on the command line",
            "the kernel reads skew_tick once at boot and exposes no state for it: "
            "/proc/cmdline (the cmdline check) is all there is to see",
        )
    return Check("skew_tick", FAIL, "skew_tick=1", "not on the command line", REBOOT)


def check_nosoftlockup(host: Host) -> Check:
    expected = "soft_watchdog 0 (nosoftlockup)"
    soft = host.read("proc/sys/kernel/soft_watchdog")
    if soft is None:
        return Check(
            "nosoftlockup",
            NA,
            expected,
            "missing",
            "this kernel has no soft-lockup detector (no /proc/sys/kernel/soft_watchdog)",
        )
    shown = [f"soft_watchdog {soft.strip()}"]
    for name in ("watchdog", "nmi_watchdog", "watchdog_cpumask"):
        value = host.read(f"proc/sys/kernel/{name}")
        if value is not None:
            shown.append(f"{name} {value.strip()}")
    observed = ", ".join(shown)
    if soft.strip() == "0":
        return Check("nosoftlockup", PASS, expected, observed)
    return Check(
        "nosoftlockup",
        FAIL,
        expected,
        observed,
        "the soft-lockup detector is on (its hrtimer fires on every CPU it watches): "
        f"nosoftlockup is not in effect. Now: sysctl kernel.soft_watchdog=0; for good: {REBOOT}",
    )


def check_sysctls(host: Host) -> Check:
    profile = host.profile
    expected = ", ".join(f"{k}={v}" for k, v in profile.sysctls.items())
    wrong = []
    for key, value in profile.sysctls.items():
        text = host.read("proc/sys/" + key.replace(".", "/"))
        if text is None:
            wrong.append(f"{key}: not on this kernel")
        elif text.split() != str(value).split():
            wrong.append(f"{key}={' '.join(text.split())}")
    if wrong:
        detail = f"{len(wrong)} sysctl(s) differ: sysctl --system applies /etc/sysctl.d again"
        return Check("sysctls", FAIL, expected, ", ".join(wrong), detail)
    return Check("sysctls", PASS, expected, expected)


def checks(host: Host) -> list[Check]:
    return [
        check_cmdline(host),
        check_nohz_full(host),
        check_rcu_nocbs(host),
        check_skew_tick(host),
        check_nosoftlockup(host),
        check_sysctls(host),
    ]
