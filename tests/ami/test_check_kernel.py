"""check-host's kernel and CPU checks beyond the first twelve: rcu_nocbs, skew_tick,
nosoftlockup, the workqueue masks, PID 1's affinity; and nohz_full's advice. Crafted trees only:
tuned (tests/support/host_tree.py), untuned and half-tuned."""

from __future__ import annotations

import gzip
import shutil

import pytest

from ami.check import Check, check_host
from tests.support.host_tree import RELEASE, process, tuned_tree, write


def check(root, name: str) -> Check:
    return check_host(root, irq_window_s=0).check(name)


@pytest.fixture
def tuned(tmp_path):
    return tuned_tree(tmp_path)


# ----------------------------------------------------------------------------- rcu_nocbs


def test_rcu_nocbs_tuned_sees_the_rcuo_threads(tuned):
    c = check(tuned, "rcu_nocbs")
    assert (c.status, c.observed) == ("pass", "rcuo threads for CPUs 1-3")


def test_rcu_nocbs_half_tuned_names_the_cpu_without_a_thread(tuned):
    shutil.rmtree(tuned / "proc/63")  # rcuop/3
    c = check(tuned, "rcu_nocbs")
    assert (c.status, c.observed) == ("fail", "no rcuo thread for CPUs 3")
    assert "rcu_nocbs= is on the command line but not in effect" in c.detail
    assert "CONFIG_NO_HZ_FULL" in c.detail  # what to boot instead


def test_rcu_nocbs_untuned_says_put_the_argument_back(tuned):
    for pid in (61, 62, 63):
        shutil.rmtree(tuned / f"proc/{pid}")
    write(tuned, "proc/cmdline", "BOOT_IMAGE=/vmlinuz ro\n")
    c = check(tuned, "rcu_nocbs")
    assert c.status == "fail" and "not on the command line" in c.detail
    assert "lowlat-apply-kernel-args" in c.detail and "reboot" in c.detail


def test_rcu_nocbs_kernel_without_nocb_support(tuned):
    shutil.rmtree(tuned / "proc/61")
    write(
        tuned, f"boot/config-{RELEASE}", "CONFIG_NO_HZ_FULL=y\n# CONFIG_RCU_NOCB_CPU is not set\n"
    )
    assert "without CONFIG_RCU_NOCB_CPU=y" in check(tuned, "rcu_nocbs").detail


def test_rcu_nocbs_without_visible_kernel_threads_is_not_applicable(tuned):
    """What the telemetry API's sandbox sees (ProtectProc=invisible): its own processes only."""
    for pid in (1, 20, 21, 22, 23, 61, 62, 63, 200, 201):
        shutil.rmtree(tuned / f"proc/{pid}")
    c = check(tuned, "rcu_nocbs")
    assert c.status == "not_applicable" and "lowlat-check-host.timer" in c.detail
    # the same blindness makes the kernel-thread check not applicable instead of a blind pass
    assert check(tuned, "kthreads_on_isolated").status == "not_applicable"


# ----------------------------------------------------------------------------- skew_tick


def test_skew_tick_on_the_command_line_is_not_applicable_with_the_reason(tuned):
    c = check(tuned, "skew_tick")
    assert c.status == "not_applicable" and c.observed == "on the command line"
    assert "exposes no state" in c.detail


def test_skew_tick_missing_fails(tuned):
    write(tuned, "proc/cmdline", "BOOT_IMAGE=/vmlinuz nohz_full=1-3\n")
    c = check(tuned, "skew_tick")
    assert (c.status, c.observed) == ("fail", "not on the command line")
    assert "reboot" in c.detail


def test_nosoftlockup_tuned_untuned_and_absent(tuned):
    c = check(tuned, "nosoftlockup")
    assert c.status == "pass" and "soft_watchdog 0" in c.observed
    assert "watchdog_cpumask 0" in c.observed
    write(tuned, "proc/sys/kernel/soft_watchdog", "1\n")
    c = check(tuned, "nosoftlockup")
    assert c.status == "fail" and "sysctl kernel.soft_watchdog=0" in c.detail
    (tuned / "proc/sys/kernel/soft_watchdog").unlink()
    assert check(tuned, "nosoftlockup").status == "not_applicable"


# ----------------------------------------------------------------------------- nohz_full's advice


def test_nohz_full_failure_says_which_kernel_to_boot(tuned):
    write(tuned, "sys/devices/system/cpu/nohz_full", "(null)\n")
    (tuned / f"boot/config-{RELEASE}").unlink()
    write(tuned, "proc/config.gz", gzip.compress(b"# CONFIG_NO_HZ_FULL is not set\n"))
    c = check(tuned, "nohz_full")
    assert c.status == "fail"
    assert "boot a kernel built with CONFIG_NO_HZ_FULL=y" in c.detail
    assert "Ubuntu 24.04" in c.detail and "-c hostOs=ubuntu2404" in c.detail


# ----------------------------------------------------------------------------- workqueues


def test_workqueues_tuned_judge_the_effective_mask(tuned):
    """Each workqueue asks for all CPUs ("f"): with the global mask 1 it runs on cpu0."""
    c = check(tuned, "workqueue_cpumask")
    assert c.status == "pass", c
    assert c.observed == "global 1 (CPUs 0); 3 workqueue(s)"


def test_workqueues_untuned_global_mask(tuned):
    write(tuned, "sys/devices/virtual/workqueue/cpumask", "f\n")
    c = check(tuned, "workqueue_cpumask")
    assert c.status == "fail"
    assert c.observed.startswith("global f (CPUs 0-3); blkcg_punt_bio on 0-3;")
    assert "writeback on 0-3" in c.observed
    assert "systemctl restart lowlat-tune" in c.detail


def test_workqueues_half_tuned_writeback_pinned_to_an_isolated_cpu(tuned):
    """A wide global mask, and writeback asking for cpu2 only: it runs on cpu2."""
    write(tuned, "sys/devices/virtual/workqueue/cpumask", "5\n")  # cpu0 and cpu2
    for path in ("sys/devices/virtual/workqueue", "sys/bus/workqueue/devices"):
        write(tuned, f"{path}/writeback/cpumask", "00000000,00000004\n")
    c = check(tuned, "workqueue_cpumask")
    assert c.status == "fail" and "writeback on 2" in c.observed


def test_workqueues_missing_mask_fails_and_no_writeback_is_said(tmp_path):
    assert check(tmp_path, "workqueue_cpumask").observed == "missing"
    write(tmp_path, "sys/devices/system/cpu/possible", "0-3\n")
    write(tmp_path, "sys/devices/virtual/workqueue/cpumask", "1\n")
    c = check(tmp_path, "workqueue_cpumask")
    assert c.status == "pass" and "no writeback workqueue" in c.observed


# ----------------------------------------------------------------------------- PID 1


def test_pid1_affinity_tuned_untuned_hidden(tuned):
    assert check(tuned, "pid1_affinity").status == "pass"
    process(tuned, 1, "systemd", "0-3", kthread=False)
    c = check(tuned, "pid1_affinity")
    assert (c.status, c.observed) == ("fail", "0-3")
    assert "/etc/systemd/system.conf.d/50-lowlat-cpuaffinity.conf" in c.detail
    shutil.rmtree(tuned / "proc/1")
    assert check(tuned, "pid1_affinity").status == "not_applicable"


# ----------------------------------------------------------------------------- kthreads

PF_KERNEL_BOUND = 0x00208040 | 0x04000000  # PF_KTHREAD ... | PF_NO_SETAFFINITY


@pytest.mark.parametrize(
    ("comm", "flags", "status"),
    [
        ("kcompactd0", 0x00208040, "fail"),  # movable, and moved there: fail
        ("mm_percpu_wq", PF_KERNEL_BOUND, "pass"),  # a per-CPU workqueue's rescuer (the lab)
        ("kworker/u4:2", PF_KERNEL_BOUND, "fail"),  # unbound kworkers follow the workqueue mask
    ],
)
def test_kthreads_the_kernel_binds_are_named_not_failed(tuned, comm, flags, status):
    process(tuned, 70, comm, "2", kthread=True, flags=flags)
    c = check(tuned, "kthreads_on_isolated")
    assert c.status == status, c
    if status == "pass":
        assert f"bound there by the kernel, tolerated: {comm}[70] on 2" in c.detail
    else:
        assert f"{comm}[70] on 2" in c.observed
