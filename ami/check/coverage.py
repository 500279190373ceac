"""What check-host covers of the AWS sample's OS validation, as data.

The sample ``aws-samples/trading-latency-benchmark``,
``deployment/ansible/validate_tuning_os.yaml``, validates 28 categories (``SAMPLE_CATEGORIES``).
``COVERAGE`` maps each of our checks to the categories it speaks to: with a verdict (pass/fail),
or as not applicable with the reason where the category does not fit this product (the check's
``detail`` says why). Several cover a category by other means than the sample, on purpose:
irqbalance is kept on with a ban rather than stopped (ENA's maintainers advise against running
without it), services are confined to the housekeeping CPUs (``pid1_affinity``) rather than
disabled, the writeback workqueue's CPUs are checked rather than its ``numa`` flag, and tuned is
checked *not* to run because lowlat's tuning replaces it.
``UNCOVERED`` names what no check of ours covers yet, and why (nothing, today).
"""

from __future__ import annotations

SAMPLE = "aws-samples/trading-latency-benchmark deployment/ansible/validate_tuning_os.yaml"

SAMPLE_CATEGORIES = (
    "PACKAGES",
    "TUNED PROFILE",
    "HYPERTHREADING",
    "CPU GOVERNOR",
    "INTEL PSTATE",
    "CPU FREQUENCY",
    "KERNEL WORKQUEUES",
    "WRITEBACK NUMA",
    "CPU ISOLATION",
    "KERNEL PARAMETERS",
    "TRANSPARENT HUGE PAGES",
    "THP DEFRAG",
    "THP KHUGEPAGED",
    "HUGEPAGES",
    "MEMORY SYSCTL",
    "SHARED MEMORY LIMITS",
    "NETWORK SYSCTL",
    "NETWORK INTERFACE",
    "INTERRUPT AFFINITY",
    "CHRONY SERVICE",
    "CHRONY CONFIG",
    "SYSTEM LIMITS",
    "KERNEL SCHEDULER",
    "I/O SCHEDULERS",
    "BLOCK DEVICE SETTINGS",
    "IRQBALANCE SERVICE",
    "DISABLED SERVICES",
    "IPTABLES",
)

# check name -> the sample's categories it covers
COVERAGE: dict[str, tuple[str, ...]] = {
    "packages": ("PACKAGES",),
    "tuned_off": ("TUNED PROFILE",),
    "smt": ("HYPERTHREADING",),
    # Graviton: not applicable (fixed clock, no P-states); x86: the performance governor
    "governor": ("CPU GOVERNOR", "INTEL PSTATE", "CPU FREQUENCY"),
    "workqueue_cpumask": ("KERNEL WORKQUEUES", "WRITEBACK NUMA"),
    "isolated": ("CPU ISOLATION",),
    "nohz_full": ("CPU ISOLATION",),
    "rcu_nocbs": ("CPU ISOLATION",),
    "cmdline": ("KERNEL PARAMETERS",),
    "skew_tick": ("KERNEL PARAMETERS",),
    "clocksource": ("KERNEL PARAMETERS",),
    "thp": ("TRANSPARENT HUGE PAGES",),
    "thp_defrag": ("THP DEFRAG",),
    "thp_khugepaged": ("THP KHUGEPAGED",),
    "hugepages": ("HUGEPAGES",),
    "sysctls": ("MEMORY SYSCTL", "KERNEL SCHEDULER"),
    "swap": ("MEMORY SYSCTL",),
    "shm_dir": ("SHARED MEMORY LIMITS",),
    "network_sysctls": ("NETWORK SYSCTL",),
    "nic_queues": ("NETWORK INTERFACE",),
    "nic_coalescing": ("NETWORK INTERFACE",),
    "irq_affinity": ("INTERRUPT AFFINITY",),
    "irqs_on_isolated": ("INTERRUPT AFFINITY",),
    "chrony_running": ("CHRONY SERVICE",),
    "chrony_synced": ("CHRONY SERVICE",),
    "chrony_source": ("CHRONY CONFIG",),
    "memlock": ("SYSTEM LIMITS",),
    "nosoftlockup": ("KERNEL SCHEDULER",),
    "io_scheduler": ("I/O SCHEDULERS", "BLOCK DEVICE SETTINGS"),
    "irqbalance_running": ("IRQBALANCE SERVICE",),
    "irqbalance_ban": ("IRQBALANCE SERVICE",),
    "pid1_affinity": ("DISABLED SERVICES",),
    "firewall": ("IPTABLES",),  # nftables, the profile's ruleset, loaded at this boot
}

UNCOVERED: dict[str, str] = {}


def covered() -> set[str]:
    """The sample's categories at least one check of ours covers."""
    return {category for categories in COVERAGE.values() for category in categories}
