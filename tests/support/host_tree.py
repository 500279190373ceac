"""Crafted /proc, /sys, /etc and /run trees for check-host: a tuned 4-vCPU Graviton host and the
pieces to spoil it. cpu0 does housekeeping, cpu1-3 are isolated (``PROFILE``)."""

from __future__ import annotations

from pathlib import Path

from ami import security, units
from ami.render import ENGINE_UNIT, LIMITS_CONF, render
from contracts.profile import TuningProfile

PROFILE = TuningProfile.for_vcpus(4)  # cpu0 housekeeping, cpu1-3 isolated, graviton
RELEASE = "6.1.115-126.197.amzn2023.aarch64"
BOOT_ID = "3f1c2a9e-0d4b-4c5e-9a7f-1b2c3d4e5f60"
GRAVITON_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\n"
    for i in range(4)
)
# chronyc -n -c tracking, synchronised to the Amazon Time Sync Service
TRACKING_NORMAL = (
    "A9FEA97B,169.254.169.123,3,1715000000.123456789,-0.000001234,0.000000512,0.000002001,"
    "-3.214,0.000,0.012,0.000123456,0.000045678,16.2,Normal\n"
)
LIMITS_UNLIMITED = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max open files            1024                 524288               files     \n"
    "Max locked memory         unlimited            unlimited            bytes     \n"
)


def interrupts(device_on: dict[int, int] | None = None, loc: int = 1000) -> str:
    """A 4-CPU /proc/interrupts; ``device_on`` {cpu: count} for the ENA queue IRQ."""
    ena = [0, 0, 0, 0]
    for cpu, count in (device_on or {}).items():
        ena[cpu] = count
    rows = [
        "           CPU0       CPU1       CPU2       CPU3",
        f" 11:  {loc} {loc} {loc} {loc}     GICv3  27 Level     arch_timer",
        f" 35:  {ena[0] + 500} {ena[1]} {ena[2]} {ena[3]}  ITS-MSI 81920 Edge  ena-mgmnt@pci",
        " 36:  7 0 0 0  ITS-MSI 81921 Edge      eth0-Tx-Rx-0",
        "IPI0:  10 0 0 0       Rescheduling interrupts",
        "Err:          0",
    ]
    return "\n".join(rows) + "\n"


def write(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def process(
    root: Path, pid: int, comm: str, allowed: str, kthread: bool, flags: int = 0x00208040
) -> None:
    """/proc/<pid>/{stat,cmdline,status}: a kernel thread (``flags``: PF_KTHREAD and others), or
    a user process running systemd."""
    if not kthread:
        program(root, pid, comm, allowed, b"/usr/lib/systemd/systemd\0")
        return
    _proc(root, pid, comm, flags, f"Name:\t{comm}\nPPid:\t2\nCpus_allowed_list:\t{allowed}\n")
    write(root, f"proc/{pid}/cmdline", b"")


def program(root: Path, pid: int, comm: str, allowed: str, cmdline: bytes, ppid: int = 1) -> None:
    """A user process running ``cmdline`` (NUL-separated), started by ``ppid``."""
    _proc(
        root,
        pid,
        comm,
        0x00400100,
        f"Name:\t{comm}\nPPid:\t{ppid}\nCpus_allowed_list:\t{allowed}\n",
    )
    write(root, f"proc/{pid}/cmdline", cmdline)


def _proc(root: Path, pid: int, comm: str, flags: int, status: str) -> None:
    write(root, f"proc/{pid}/stat", f"{pid} ({comm}) S 2 0 0 0 -1 {flags} 0 0 0 0 1 2 3\n")
    write(root, f"proc/{pid}/status", status)


def tune_record(root: Path, status: int = 0, rx_usecs: str = "0", boot: str = BOOT_ID) -> None:
    """What lowlat-tune records at the end of its run, as ami/render.py's tune_script writes it."""
    record = f"status={status}\nboot_id={boot}\nrx_usecs={rx_usecs}\n"
    write(root, units.TUNE_STATE, record)


def tuned_tree(root: Path) -> Path:
    write(root, "sys/devices/system/cpu/possible", "0-3\n")
    write(root, "proc/cpuinfo", GRAVITON_CPUINFO)
    write(root, "proc/sys/kernel/osrelease", RELEASE + "\n")
    write(
        root, "proc/cmdline", f"BOOT_IMAGE=/vmlinuz root=UUID=x {' '.join(PROFILE.kernel_args())}\n"
    )
    write(root, "sys/devices/system/cpu/isolated", "1-3\n")
    write(root, "sys/devices/system/cpu/nohz_full", "1-3\n")
    write(root, f"boot/config-{RELEASE}", "CONFIG_NO_HZ=y\nCONFIG_NO_HZ_FULL=y\n")
    write(root, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "512\n")
    write(root, "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "500\n")
    write(root, "sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n")
    for key, value in PROFILE.sysctls.items():
        write(root, "proc/sys/" + key.replace(".", "/"), value + "\n")
    write(root, "proc/interrupts", interrupts())
    process(root, 1, "systemd", "0", kthread=False)
    process(root, 20, "ksoftirqd/2", "2", kthread=True)
    process(root, 21, "kworker/3:1H-kblockd", "3", kthread=True)
    process(root, 22, "kworker/u8:0-events_unbound", "0", kthread=True)
    process(root, 23, "kcompactd0", "0-3", kthread=True)
    process(root, 30, "stage-engine", "2", kthread=False)  # a user process on an isolated CPU
    write(root, "etc/sysconfig/irqbalance", 'IRQBALANCE_BANNED_CPULIST="1-3"\n')
    write(root, "usr/sbin/irqbalance", "")
    return tuned_more(root)


def tuned_more(root: Path) -> Path:
    """What the checks beyond the first twelve read, as a tuned host has it."""
    # kernel: rcu_nocbs in effect, nosoftlockup, the boot id
    config = "CONFIG_NO_HZ=y\nCONFIG_NO_HZ_FULL=y\nCONFIG_RCU_NOCB_CPU=y\n"
    write(root, f"boot/config-{RELEASE}", config)
    for cpu in (1, 2, 3):
        process(root, 60 + cpu, f"rcuop/{cpu}", "0", kthread=True)
    write(root, "proc/sys/kernel/soft_watchdog", "0\n")
    write(root, "proc/sys/kernel/watchdog_cpumask", "0\n")
    write(root, "proc/sys/kernel/random/boot_id", BOOT_ID + "\n")
    # workqueues: the global mask is the housekeeping CPU; each workqueue asks for all CPUs
    write(root, "sys/devices/virtual/workqueue/cpumask", "1\n")
    for name in ("writeback", "blkcg_punt_bio", "scsi_tmf_0"):
        write(root, f"sys/devices/virtual/workqueue/{name}/cpumask", "f\n")
    write(root, "sys/bus/workqueue/devices/writeback/cpumask", "f\n")
    # memory: THP defrag never, khugepaged left at 1 (stopped while THP is never), no swap
    thp = "sys/kernel/mm/transparent_hugepage"
    write(root, f"{thp}/defrag", "always defer defer+madvise madvise [never]\n")
    write(root, f"{thp}/khugepaged/defrag", "1\n")
    write(root, "proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    write(root, "proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n")
    (root / "dev/hugepages/lowlat").mkdir(parents=True, exist_ok=True)
    files = render(PROFILE)
    write(root, ENGINE_UNIT, files[ENGINE_UNIT])
    write(root, LIMITS_CONF, files[LIMITS_CONF])
    # the engine: its supervisor and one spawned stage, memlock unlimited
    engine = b"/opt/lowlat/current/venv/bin/python3\0/opt/lowlat/current/venv/bin/trading-service"
    program(root, 100, "trading-servic", "1-3", engine + b"\0run\0--config\0x.toml\0")
    stage = b"/opt/lowlat/current/venv/bin/python3\0-c\0from multiprocessing.spawn import x\0"
    program(root, 101, "python3", "2", stage, ppid=100)
    for pid in (100, 101):
        write(root, f"proc/{pid}/limits", LIMITS_UNLIMITED)
    # interrupts: the housekeeping CPU takes the devices; arch_timer is a per-CPU PPI
    for irq, effective in (("11", "0-3"), ("35", "0"), ("36", "0")):
        write(root, f"proc/irq/{irq}/smp_affinity_list", "0\n")
        write(root, f"proc/irq/{irq}/effective_affinity_list", effective + "\n")
    program(root, 200, "irqbalance", "0", b"/usr/sbin/irqbalance\0--foreground\0")
    # the NIC: one combined queue, coalescing as lowlat-tune recorded it
    for queue in ("rx-0", "tx-0"):
        (root / "sys/class/net/eth0/queues" / queue).mkdir(parents=True, exist_ok=True)
    write(
        root,
        "proc/net/route",
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n",
    )  # eth0 has the default route: the NIC of nic = "auto"
    tune_record(root)
    # time: arm64's counter, chronyd on the Amazon Time Sync Service and synchronised
    write(
        root,
        "sys/devices/system/clocksource/clocksource0/current_clocksource",
        "arch_sys_counter\n",
    )
    program(root, 201, "chronyd", "0", b"/usr/sbin/chronyd\0-F\x002\0")
    write(root, "etc/chrony.conf", "server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4\n")
    write(root, units.CHRONY_TRACKING, TRACKING_NORMAL)
    for name in ("ethtool", "chronyd"):
        write(root, f"usr/sbin/{name}", "")
    write(root, "sys/block/nvme0n1/queue/scheduler", "[none] mq-deadline kyber\n")
    # security: the firewall installed and loaded at this boot; sshd reads lowlat's drop-in first
    for path in (security.FIREWALL_RULESET, security.SSHD_DROPIN):
        write(root, path, files[path])
    write(root, f"{security.FIREWALL_STATE}/ruleset.nft", files[security.FIREWALL_RULESET])
    write(root, f"{security.FIREWALL_STATE}/boot-id", BOOT_ID + "\n")
    write(root, security.SSHD_CONFIG, "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n")
    write(root, security.SSHD, "")
    return root
