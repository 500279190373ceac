"""check-host's interrupt and NIC checks beyond the first twelve: IRQ affinity, irqbalance
running, the NIC's queues and coalescing, the network sysctls. Crafted trees: tuned, untuned,
half-tuned."""

from __future__ import annotations

import os
import shutil

import pytest

from ami.check import Check, check_host
from contracts.profile import TuningProfile
from tests.support.host_tree import program, tune_record, tuned_tree, write


def check(root, name: str, profile: TuningProfile | None = None) -> Check:
    return check_host(root, profile, irq_window_s=0).check(name)


@pytest.fixture
def tuned(tmp_path):
    return tuned_tree(tmp_path)


# ----------------------------------------------------------------------------- irq_affinity


def test_irq_affinity_tuned_skips_the_per_cpu_timer(tuned):
    c = check(tuned, "irq_affinity")  # arch_timer (a GIC PPI) is on every CPU by hardware
    assert (c.status, c.observed) == ("pass", "none of 3 IRQs")


def test_irq_affinity_untuned_names_the_irq(tuned):
    write(tuned, "proc/irq/36/effective_affinity_list", "2\n")
    c = check(tuned, "irq_affinity")
    assert (c.status, c.observed) == ("fail", "36 (eth0-Tx-Rx-0) on 2")
    assert "irqbalance" in c.detail


def test_irq_affinity_falls_back_to_smp_affinity_list(tuned):
    (tuned / "proc/irq/35/effective_affinity_list").unlink()
    write(tuned, "proc/irq/35/smp_affinity_list", "0-3\n")
    assert check(tuned, "irq_affinity").observed == "35 (ena-mgmnt@pci) on 1-3"


def test_irq_affinity_tolerates_managed_nvme_queues_and_says_so(tuned):
    text = (tuned / "proc/interrupts").read_text()
    write(tuned, "proc/interrupts", text + " 50:  0 0 9 0  ITS-MSI 1048578 Edge      nvme0q3\n")
    write(tuned, "proc/irq/50/effective_affinity_list", "2\n")
    c = check(tuned, "irq_affinity")
    assert c.status == "pass"
    assert "kernel-managed queue IRQs tolerated: 50 (nvme0q3) on 2" in c.detail


@pytest.mark.parametrize(
    ("action", "debugfs", "managed"),
    [
        ("virtio1-req.1", None, True),  # the lab's virtio-blk queue, known by name
        ("virtio1-req.1", "handler:  handle_fasteoi_irq\ndstate:   0x3040000\n", False),
        ("eth0-Tx-Rx-1", "dstate:   0x13600200\n            IRQD_AFFINITY_MANAGED\n", True),
        ("eth0-Tx-Rx-1", None, False),
    ],
)
def test_irq_affinity_reads_managed_from_debugfs_first(tuned, action, debugfs, managed):
    """debugfs says which interrupts the kernel manages; without it, the queue's name does."""
    text = (tuned / "proc/interrupts").read_text()
    write(tuned, "proc/interrupts", text + f" 56:  0 0 9 0  GICv3 78 Edge      {action}\n")
    write(tuned, "proc/irq/56/effective_affinity_list", "2\n")
    if debugfs is not None:
        write(tuned, "sys/kernel/debug/irq/irqs/56", debugfs)
    c = check(tuned, "irq_affinity")
    assert c.status == ("pass" if managed else "fail"), c


def test_irq_affinity_without_proc_irq_is_not_applicable(tmp_path):
    assert check(tmp_path, "irq_affinity").status == "not_applicable"


# ----------------------------------------------------------------------------- irqbalance


def test_irqbalance_running_tuned_untuned_hidden(tuned):
    c = check(tuned, "irqbalance_running")
    assert (c.status, c.observed) == ("pass", "irqbalance[200]")
    shutil.rmtree(tuned / "proc/200")
    c = check(tuned, "irqbalance_running")
    assert c.status == "fail" and "systemctl enable --now irqbalance" in c.detail
    for pid in (20, 21, 22, 23, 61, 62, 63):  # kernel threads hidden: a sandbox
        shutil.rmtree(tuned / f"proc/{pid}")
    assert check(tuned, "irqbalance_running").status == "not_applicable"


def test_irqbalance_ban_follows_the_host_os_adapter(tuned):
    ubuntu = TuningProfile.for_vcpus(4, os="ubuntu2404")
    c = check(tuned, "irqbalance_ban", ubuntu)  # /etc/default/irqbalance on Ubuntu
    assert (c.status, c.observed) == ("fail", "missing")
    assert "/etc/default/irqbalance" in c.detail
    write(tuned, "etc/default/irqbalance", "IRQBALANCE_BANNED_CPULIST=1-3\n")
    assert check(tuned, "irqbalance_ban", ubuntu).status == "pass"


# ----------------------------------------------------------------------------- the NIC


def test_nic_queues(tuned):
    assert (check(tuned, "nic_queues").status, check(tuned, "nic_queues").observed) == (
        "pass",
        "1 rx queue(s)",
    )
    for queue in ("rx-1", "rx-2", "rx-3"):
        (tuned / "sys/class/net/eth0/queues" / queue).mkdir()
    c = check(tuned, "nic_queues")
    assert (c.status, c.observed) == ("fail", "4 rx queue(s)")
    assert "systemctl restart lowlat-tune" in c.detail
    shutil.rmtree(tuned / "sys/class/net/eth0")
    c = check(tuned, "nic_queues")
    assert c.status == "not_applicable" and c.detail == "no interface eth0 here"
    (tuned / "proc/net/route").write_text("Iface\tDestination\n")  # no default route
    c = check(tuned, "nic_queues")
    assert c.status == "not_applicable" and "no IPv4 default route" in c.detail


def test_auto_nic_is_the_default_routes_interface(tuned):
    """A Debian or Ubuntu c6g names its ENA ens5, the lab's virtio NIC is enp0s1: nic=auto
    follows the default route, so the checks look at the interface lowlat-tune tuned."""
    os.rename(tuned / "sys/class/net/eth0", tuned / "sys/class/net/ens5")
    route = tuned / "proc/net/route"
    route.write_text(route.read_text().replace("eth0\t", "ens5\t"))
    c = check(tuned, "nic_queues")
    assert (c.status, c.expected) == ("pass", "1 combined queue(s) on ens5 (the default "
                                      "route's) (one per housekeeping CPU)")  # fmt: skip
    assert check(tuned, "nic_coalescing").status == "pass"


def test_nic_queues_follow_the_profile(tuned):
    wide = TuningProfile.for_vcpus(16, nic="ens5")  # two housekeeping CPUs
    for queue in ("rx-0", "rx-1"):
        (tuned / "sys/class/net/ens5/queues" / queue).mkdir(parents=True)
    assert check(tuned, "nic_queues", wide).status == "pass"


def test_nic_coalescing_reads_lowlat_tunes_record(tuned):
    c = check(tuned, "nic_coalescing")
    assert (c.status, c.observed) == ("pass", "rx-usecs 0")
    assert "a later change by hand is not seen" in c.detail
    tune_record(tuned, rx_usecs="skipped")  # the driver refused ethtool -C
    assert check(tuned, "nic_coalescing").status == "not_applicable"
    tune_record(tuned, rx_usecs="64")
    assert check(tuned, "nic_coalescing").status == "fail"
    tune_record(tuned, boot="an-earlier-boot")  # /run not emptied: not this boot's record
    c = check(tuned, "nic_coalescing")
    assert c.status == "fail" and "is from boot an-earlier-boot" in c.detail
    (tuned / "run/lowlat-tune.state").unlink()
    c = check(tuned, "nic_coalescing")
    assert (c.status, c.observed) == ("fail", "no record of this boot")
    assert "ethtool -c" in c.detail


def test_network_sysctls_are_not_applicable_with_the_reason(tuned):
    c = check(tuned, "network_sysctls")
    assert c.status == "not_applicable"
    assert "PrivateNetwork=yes" in c.detail and "tcp_low_latency" in c.detail


def test_a_user_process_named_like_a_daemon_by_its_program(tuned):
    """irqbalance found by its program's file name too (comm may be truncated or renamed)."""
    shutil.rmtree(tuned / "proc/200")
    program(tuned, 300, "irqbalance-wrk", "0", b"/usr/sbin/irqbalance\0--foreground\0")
    assert check(tuned, "irqbalance_running").observed == "irqbalance[300]"
