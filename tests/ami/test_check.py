"""check-host against crafted /proc and /sys trees (tuned, untuned, half-tuned) and, read-only,
against this machine, which is not a tuned host."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from ami.check import Report, check_host, parse_interrupts
from tests.support.host_tree import (
    GRAVITON_CPUINFO,
    RELEASE,
    interrupts,
    process,
    tuned_tree,
    write,
)

CLI = [sys.executable, "-m", "service.cli"]
# The first twelve checks, and the statuses a tuned Graviton host gives them.
FIRST_CHECKS = {
    "cmdline": "pass",
    "isolated": "pass",
    "nohz_full": "pass",
    "hugepages": "pass",
    "thp": "pass",
    "sysctls": "pass",
    "irqs_on_isolated": "pass",
    "kthreads_on_isolated": "pass",
    "irqbalance_ban": "pass",
    "governor": "not_applicable",
    "cstates": "not_applicable",
    "smt": "not_applicable",
}
# Not applicable on a tuned Graviton host, each with its reason (tests/ami/test_check_areas.py).
ALWAYS_NA = ("skew_tick", "network_sysctls", "io_scheduler")


def statuses(report: Report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_tuned_graviton_host_passes_and_power_checks_do_not_apply(tmp_path):
    report = check_host(tuned_tree(tmp_path), irq_window_s=0.01)
    assert report.ok, [c for c in report.checks if c.status == "fail"]
    s = statuses(report)
    assert {s[n] for n in ("governor", "cstates", "smt")} == {"not_applicable"}
    assert "Graviton" in report.check("smt").detail
    not_applicable = ("governor", "cstates", "smt", *ALWAYS_NA)
    assert all(v == "pass" for k, v in s.items() if k not in not_applicable)
    assert {k: s[k] for k in FIRST_CHECKS} == FIRST_CHECKS
    assert all(report.check(n).detail for n in ALWAYS_NA)  # each says why
    assert report.host == {
        "platform": "graviton",
        "vcpus": 4,
        "kernel_release": RELEASE,
        "housekeeping": "0",
        "isolated": "1-3",
    }
    # the first twelve checks: 9 pass, 3 not applicable; the others: all pass but ALWAYS_NA
    assert (report.passed, report.failed, report.not_applicable) == (9 + 22, 0, 3 + 3)


def test_an_untuned_host_fails_with_the_right_names(tmp_path):
    root = tmp_path
    write(root, "sys/devices/system/cpu/possible", "0-3\n")
    write(root, "proc/cpuinfo", GRAVITON_CPUINFO)
    write(root, "proc/sys/kernel/osrelease", RELEASE + "\n")
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz console=ttyS0\n")
    write(root, "sys/devices/system/cpu/isolated", "\n")
    write(root, "proc/config.gz", gzip.compress(b"# CONFIG_NO_HZ_FULL is not set\n"))
    write(root, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n")
    write(root, "sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n")
    write(root, "proc/sys/kernel/numa_balancing", "1\n")
    write(root, "proc/interrupts", interrupts())
    process(root, 40, "kcompactd0", "2", kthread=True)  # unbound kthread pinned to isolated
    process(root, 41, "irq/36-eth0", "1-3", kthread=True)
    write(root, "usr/sbin/irqbalance", "")  # installed, not configured
    hook = lambda s: write(root, "proc/interrupts", interrupts({2: 50, 3: 7}))  # noqa: E731
    report = check_host(root, irq_window_s=0.01, wait=hook)
    assert not report.ok
    failed = {c.name for c in report.checks if c.status == "fail"}
    first = {
        "cmdline",
        "isolated",
        "nohz_full",
        "hugepages",
        "thp",
        "sysctls",
        "irqs_on_isolated",
        "kthreads_on_isolated",
        "irqbalance_ban",
    }
    assert failed & set(FIRST_CHECKS) == first
    assert failed - set(FIRST_CHECKS) == {
        "rcu_nocbs",  # kernel threads visible, no rcuo thread
        "skew_tick",
        "workqueue_cpumask",
        "memlock",  # engine not running, no unit or limits file
        "shm_dir",
        "irqbalance_running",
        "clocksource",
        "chrony_running",
        "chrony_synced",
        "chrony_source",
        "tune_unit",
        "packages",
        "firewall",  # not installed; sshd is not applicable (no sshd in the tree)
    }
    # observed says what is missing, not the expected line again
    assert report.check("cmdline").observed.startswith("missing: ")
    assert "nohz_full=1-3" in report.check("cmdline").observed
    sysctls = report.check("sysctls").observed
    assert "kernel.numa_balancing=1" in sysctls and "kernel.watchdog: not on this kernel" in sysctls
    assert "CONFIG_NO_HZ_FULL" in report.check("nohz_full").detail
    assert "/proc/config.gz" in report.check("nohz_full").detail
    kthreads = report.check("kthreads_on_isolated").observed
    assert "kcompactd0[40] on 2" in kthreads and "irq/36-eth0[41] on 1-3" in kthreads
    assert report.check("hugepages").observed == "total 0, free ?"


def test_half_tuned_nohz_full_asked_but_not_effective_and_irqs_on_isolated(tmp_path):
    root = tuned_tree(tmp_path)
    write(root, "sys/devices/system/cpu/nohz_full", "(null)\n")
    write(root, f"boot/config-{RELEASE}", "CONFIG_NO_HZ_IDLE=y\n# CONFIG_NO_HZ_FULL is not set\n")
    calls = []

    def between_reads(seconds):
        calls.append(seconds)
        write(root, "proc/interrupts", interrupts({2: 1234}, loc=1001))  # timer +1: tolerated

    report = check_host(root, irq_window_s=0.5, wait=between_reads)
    assert calls == [0.5]
    failed = {c.name for c in report.checks if c.status == "fail"}
    assert failed == {"nohz_full", "irqs_on_isolated"}
    nohz = report.check("nohz_full")
    assert nohz.observed == "(null)" and nohz.expected == "1-3"
    assert "asks for nohz_full=1-3 but it is not effective" in nohz.detail
    assert "kernel built without CONFIG_NO_HZ_FULL=y" in nohz.detail
    assert "nohz unsupported" in nohz.detail
    irqs = report.check("irqs_on_isolated")
    assert irqs.observed == "cpu2 35 (ITS-MSI 81920 Edge ena-mgmnt@pci): +1234"
    assert "arch_timer" not in irqs.observed


def test_irq_window_zero_is_not_applicable_and_one_read(tmp_path):
    root = tuned_tree(tmp_path)

    def never(seconds):
        raise AssertionError("no second read with a 0 s window")

    report = check_host(root, irq_window_s=0, wait=never)
    check = report.check("irqs_on_isolated")
    assert check.status == "not_applicable" and "nothing to compare" in check.detail
    assert report.ok


def test_timer_ticks_beyond_the_residual_tick_fail(tmp_path):
    root = tuned_tree(tmp_path)
    hook = lambda s: write(root, "proc/interrupts", interrupts(loc=1100))  # noqa: E731
    check = check_host(root, irq_window_s=0.01, wait=hook).check("irqs_on_isolated")
    assert check.status == "fail" and "arch_timer): +100" in check.observed


def test_an_empty_tree_never_raises(tmp_path):
    report = check_host(tmp_path, irq_window_s=0.01)
    assert not report.ok
    assert report.host["vcpus"] == 0 and report.host["kernel_release"] == "unknown"
    s = statuses(report)
    assert s["irqbalance_ban"] == "not_applicable" and s["kthreads_on_isolated"] == "not_applicable"
    assert s["cmdline"] == "fail" and report.check("cmdline").detail == "cannot read /proc/cmdline"


def test_x86_checks_governor_and_smt(tmp_path):
    root = tuned_tree(tmp_path)
    write(root, "proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\n")
    write(root, "sys/devices/system/cpu/smt/active", "1\n")
    write(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    write(root, "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "powersave\n")
    write(root, "sys/devices/system/cpu/cpuidle/current_driver", "intel_idle\n")
    report = check_host(root, irq_window_s=0)
    assert report.host["platform"] == "x86"
    s = statuses(report)
    assert s["smt"] == s["governor"] == s["cstates"] == "fail"
    assert report.check("governor").observed == "performance,powersave"


def test_parse_interrupts_reads_per_cpu_columns():
    table = parse_interrupts(interrupts({1: 5}))
    assert table["35 (ITS-MSI 81920 Edge ena-mgmnt@pci)"] == {0: 500, 1: 5, 2: 0, 3: 0}
    assert table["Err"] == {0: 0}
    assert table["IPI0 (Rescheduling interrupts)"][0] == 10


def test_json_shape(tmp_path):
    doc = check_host(tuned_tree(tmp_path), irq_window_s=0).to_json()
    assert set(doc) == {"checks", "ok", "summary", "host"}
    assert doc["ok"] is True
    # the first twelve checks: 8 pass, 4 not applicable (no irq window); the others: 20 and 3
    assert doc["summary"] == {"passed": 8 + 22, "failed": 0, "not_applicable": 4 + 3, "total": 37}
    for check in doc["checks"]:
        assert set(check) == {"name", "status", "expected", "observed", "detail"}
        assert check["status"] in ("pass", "fail", "not_applicable")
        assert all(isinstance(v, str) for v in check.values())
    assert json.loads(json.dumps(doc)) == doc


def test_this_machine_is_not_a_tuned_host():
    report = check_host(Path("/"), irq_window_s=0.1)
    assert not report.ok
    assert report.check("isolated").status == "fail"
    assert report.host["vcpus"] >= 1


def run(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_cli_on_this_machine_exits_1_with_a_json_report():
    result = run("check-host", "--json", "--irq-window", "0.1")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert {c["name"]: c["status"] for c in doc["checks"]}["isolated"] == "fail"


def test_cli_table_on_a_tuned_tree_exits_0(tmp_path):
    result = run("check-host", "--root", tuned_tree(tmp_path), "--irq-window", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "30 passed, 0 failed, 7 not applicable" in result.stdout  # 8 and 4 of the first 12
    assert "[never]" in result.stdout  # rich markup does not eat the brackets


def test_cli_profile_file_sets_the_expectations(tmp_path):
    root = tuned_tree(tmp_path / "root")
    profile = tmp_path / "p.toml"
    profile.write_text('isolated = "2-3"\nhousekeeping = "0-1"\n')
    result = run("check-host", "--root", root, "--profile", profile, "--json", "--irq-window", "0")
    assert result.returncode == 1
    failed = {c["name"] for c in json.loads(result.stdout)["checks"] if c["status"] == "fail"}
    assert {"isolated", "cmdline"} <= failed


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("hugepages = -1\n")
    for args in (
        ("--profile", bad),
        ("--profile", tmp_path / "missing.toml"),
        ("--root", tmp_path / "nowhere"),
        ("--irq-window", "-1"),
    ):
        result = run("check-host", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        if args[0] != "--irq-window":  # argparse prints usage first
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert result.stderr.startswith("trading-service check-host: ")


def test_the_installed_profile_sets_the_expectations(tmp_path):
    """A host tuned with a custom profile is judged against it, not against the defaults."""
    from ami.check import default_profile
    from contracts.profile import INSTALLED_PROFILE

    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/possible").write_text("0-3\n")
    assert default_profile(tmp_path).isolated == (1, 2, 3)  # no profile: the defaults
    installed = tmp_path / INSTALLED_PROFILE.lstrip("/")
    installed.parent.mkdir(parents=True)
    installed.write_text('isolated = "2-3"\nhousekeeping = [0, 1]\nhugepages = 64\n')
    profile = default_profile(tmp_path)
    assert profile.isolated == (2, 3) and profile.housekeeping == (0, 1)
    assert profile.hugepages == 64
