"""Every file the host tuning installs, rendered from a ``TuningProfile`` and nothing else.

``render(profile)`` maps each absolute path on the host to its text. ``python -m ami apply``
writes them (ami/apply.py); the Image Builder component runs that on the stock arm64 image of
the profile's OS and then ``lowlat-apply-kernel-args`` and ``systemctl enable`` for the units.
Where an OS differs (the irqbalance file, grubby or a GRUB drop-in, a chrony source) the
adapter in ami/hostos.py says so; the tuning is rendered once for every OS. Nothing here reads
the machine it runs on: the same profile gives the same bytes on a laptop and on the host, which
is what lets the tests and ``check-host`` compare the host with the profile.

This module is light (standard library only): the CDK app reads it.
"""

from __future__ import annotations

import json
import shlex

from ami import security, units
from ami.hostos import GRUB_CFG, TIME_SYNC_SOURCE, host_os
from contracts.profile import AUTO_NIC, IGMP_SYSCTLS, SYSCTLS, TuningProfile, cpulist, cpumask

SYSCTL_CONF = "/etc/sysctl.d/90-lowlat.conf"
KERNEL_ARGS = "/etc/lowlat/kernel-args"
APPLY_KERNEL_ARGS = "/usr/local/sbin/lowlat-apply-kernel-args"
CPU_AFFINITY_CONF = "/etc/systemd/system.conf.d/50-lowlat-cpuaffinity.conf"
IRQBALANCE_DROPIN = "/etc/systemd/system/irqbalance.service.d/50-lowlat.conf"
TUNE_SCRIPT = "/usr/local/sbin/lowlat-tune"
TUNE_UNIT = f"/etc/systemd/system/{units.TUNE_UNIT}"
LIMITS_CONF = "/etc/security/limits.d/90-lowlat.conf"
SYSUSERS_CONF = "/etc/sysusers.d/lowlat.conf"
SERVICE_CONFIG = units.SERVICE_CONFIG
ENGINE_UNIT = f"/etc/systemd/system/{units.ENGINE_UNIT}"
TELEMETRY_UNIT = f"/etc/systemd/system/{units.TELEMETRY_UNIT}"
CHECK_HOST_SCRIPT = units.CHECK_HOST_SCRIPT
CHECK_HOST_UNIT = f"/etc/systemd/system/{units.CHECK_HOST_UNIT}"
CHECK_HOST_TIMER = f"/etc/systemd/system/{units.CHECK_HOST_TIMER_UNIT}"

# Installed 0755; every other file 0644.
SCRIPTS = frozenset({APPLY_KERNEL_ARGS, TUNE_SCRIPT, CHECK_HOST_SCRIPT, *security.SCRIPTS})

WORKQUEUE_CPUMASK = "/sys/devices/virtual/workqueue/cpumask"
ROUTE_WAIT_S = 30  # nic = "auto": how long lowlat-tune waits for the default route at boot

HEADER = (
    "Rendered by ami/render.py from the lowlat tuning profile; edit the profile, not this file."
)


def file_mode(path: str) -> int:
    """The mode a rendered file is installed with: scripts run, everything else is read."""
    return 0o755 if path in SCRIPTS else 0o644


def render(profile: TuningProfile) -> dict[str, str]:
    """Every file the tuning installs, keyed by absolute path on the host."""
    system = host_os(profile)
    files = {
        SYSCTL_CONF: sysctl_conf(profile),
        KERNEL_ARGS: " ".join(profile.kernel_args()) + "\n",
        APPLY_KERNEL_ARGS: apply_kernel_args_script(profile),
        CPU_AFFINITY_CONF: cpu_affinity_conf(profile),
        system.irqbalance_conf: irqbalance_conf(profile),
        IRQBALANCE_DROPIN: irqbalance_dropin(),
        TUNE_SCRIPT: tune_script(profile),
        TUNE_UNIT: tune_unit(profile),
        LIMITS_CONF: limits_conf(profile),
        SYSUSERS_CONF: sysusers_conf(profile),
        SERVICE_CONFIG: service_toml(profile),
        ENGINE_UNIT: units.engine_unit(profile),
        TELEMETRY_UNIT: units.telemetry_unit(profile),
        CHECK_HOST_SCRIPT: units.check_host_script(profile),
        CHECK_HOST_UNIT: units.check_host_unit(profile),
        CHECK_HOST_TIMER: units.check_host_timer(),
        LOGROTATE_CONF: logrotate_conf(),
        **security.files(profile),  # the firewall and the sshd drop-in
    }
    if system.grub_dropin:
        files[system.grub_dropin] = grub_dropin(profile)
    if system.chrony_sources:
        files[system.chrony_sources] = chrony_sources()
    return files


LOGROTATE_CONF = "/etc/logrotate.d/lowlat"


def logrotate_conf() -> str:
    # copytruncate: the units' output files are opened once by systemd for appending; a
    # rename-and-create rotation would leave the service writing to the renamed file
    return f"""# {HEADER}
{units.LOG_DIR}/*.log {{
    daily
    rotate 7
    maxsize 200M
    compress
    delaycompress
    missingok
    notifempty
    copytruncate
}}
"""


def sysctl_conf(profile: TuningProfile) -> str:
    lines = [f"# {HEADER}", "# Applied at boot by systemd-sysctl.", ""]
    for key, value in profile.sysctls.items():
        known = {**SYSCTLS, **IGMP_SYSCTLS}
        why = known[key][1] if key in known else "set by the lowlat tuning profile"
        lines.append(f"# {why}")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def apply_kernel_args_script(profile: TuningProfile) -> str:
    # The args are read from the file at run time (not baked in) so that the file is the one
    # record of what the host should boot with, and check-host can read the same file.
    system = host_os(profile)
    how = (
        f"# a GRUB drop-in ({system.grub_dropin}) and update-grub, then a look at\n"
        f"# {GRUB_CFG} to see that its default entry has them"
        if system.grub_dropin
        else "# grubby on every installed kernel (it replaces an argument's old value)"
    )
    check = _grub_cfg_check() if system.grub_dropin else ""
    return f"""#!/bin/bash
# {HEADER}
# Adds the lowlat kernel arguments in {KERNEL_ARGS} to the boot entries the way
# {system.title} manages them:
{how};
# then says whether a reboot is needed for the running kernel to have them. Running it again
# changes nothing. LOWLAT_ROOT (unset on a host) prefixes every path, so the script can be
# rehearsed in a scratch tree.
set -euo pipefail
root="${{LOWLAT_ROOT:-}}"

args=$(<"$root{KERNEL_ARGS}")
{system.boot_entries_command()}
{check}
read -r -a running < "$root/proc/cmdline"
missing=()
for arg in $args; do
    found=no
    for have in "${{running[@]}}"; do
        if [[ "$have" == "$arg" ]]; then found=yes; break; fi
    done
    if [[ $found == no ]]; then missing+=("$arg"); fi
done

if (( ${{#missing[@]}} )); then
    echo "lowlat kernel args written to the boot entries; reboot needed for: ${{missing[*]}}"
else
    echo "lowlat kernel args already active in the running kernel; no reboot needed"
fi
"""


def _grub_cfg_check() -> str:
    # A drop-in that sorts after ours, or /etc/default/grub itself, could still reset
    # GRUB_CMDLINE_LINUX_DEFAULT: check what update-grub wrote (the first `linux` line is the
    # default entry) rather than rebooting into a kernel without the arguments.
    return f"""
entry=""
if [[ -r "$root{GRUB_CFG}" ]]; then
    while read -r word rest; do
        if [[ $word == linux ]]; then entry=" $rest "; break; fi
    done < "$root{GRUB_CFG}"
fi
absent=()
for arg in $args; do
    if [[ $entry != *" $arg "* ]]; then absent+=("$arg"); fi
done
if (( ${{#absent[@]}} )); then
    echo "lowlat-apply-kernel-args: the default entry in {GRUB_CFG} lacks ${{absent[*]}}:" \\
        "a later /etc/default/grub.d drop-in resets GRUB_CMDLINE_LINUX_DEFAULT" >&2
    exit 1
fi
"""


def grub_dropin(profile: TuningProfile) -> str:
    # POSIX sh: grub-mkconfig sources it with /bin/sh (dash on Debian and Ubuntu) under set -e.
    # The profile's arguments enter once, shell-quoted, and are only expanded inside quotes.
    args = shlex.quote(" ".join(profile.kernel_args()))
    return f"""# {HEADER}
# Sourced by update-grub after /etc/default/grub and the drop-ins that sort before this one:
# adds the lowlat kernel arguments to GRUB_CMDLINE_LINUX_DEFAULT (normal boots; recovery
# entries keep the stock command line). An argument already there under one of our names
# (isolcpus=..., nosoftlockup) is dropped first, so ours counts and none is ever repeated,
# however often update-grub runs.
lowlat_args={args}
lowlat_kept=
case $- in *f*) lowlat_glob= ;; *) lowlat_glob=on; set -f ;; esac
for lowlat_word in ${{GRUB_CMDLINE_LINUX_DEFAULT-}}; do
    case " $lowlat_args " in
        *" ${{lowlat_word%%=*}}="* | *" $lowlat_word "*) ;;
        *) lowlat_kept="$lowlat_kept $lowlat_word" ;;
    esac
done
if [ -n "$lowlat_glob" ]; then set +f; fi
GRUB_CMDLINE_LINUX_DEFAULT="${{lowlat_kept# }} $lowlat_args"
GRUB_CMDLINE_LINUX_DEFAULT="${{GRUB_CMDLINE_LINUX_DEFAULT# }}"
unset lowlat_args lowlat_kept lowlat_word lowlat_glob
"""


def chrony_sources() -> str:
    return f"""# {HEADER}
# Amazon Time Sync Service, link-local on every Nitro instance (no internet needed), preferred
# over the distribution's pools; chrony reads it through its chrony.conf's sourcedir line.
{TIME_SYNC_SOURCE}
"""


def cpu_affinity_conf(profile: TuningProfile) -> str:
    return f"""# {HEADER}
# Every unit without its own CPUAffinity= (sshd, the SSM and CloudWatch agents, cron...) runs
# on the housekeeping CPUs and stays off the isolated ones; lowlat-engine.service sets its own.
[Manager]
CPUAffinity={cpulist(profile.housekeeping)}
"""


def irqbalance_conf(profile: TuningProfile) -> str:
    return f"""# {HEADER}
# irqbalance stays on: ENA gives no affinity hints, and its maintainers advise against running
# without irqbalance. It just never puts an interrupt on the isolated CPUs (irqbalance >= 1.8
# reads IRQBALANCE_BANNED_CPULIST; it also skips isolcpus/nohz_full CPUs on its own).
IRQBALANCE_BANNED_CPULIST={cpulist(profile.isolated)}
IRQBALANCE_ARGS=""
"""


def irqbalance_dropin() -> str:
    # Found by booting a tuned host (the lab): every packaged irqbalance.service (Debian, Ubuntu,
    # Fedora-based AL2023) has ConditionCPUs=>1, and systemd counts the CPUs of its own
    # CPUAffinity= (CPU_AFFINITY_CONF: the housekeeping CPUs). With one housekeeping CPU, as on a
    # c6g.large or c6g.xlarge, irqbalance was skipped at every boot and interrupts stayed where
    # they were first put, isolated CPUs included.
    return f"""# {HEADER}
# ConditionCPUs= counts systemd's CPUAffinity (the housekeeping CPUs): reset, container kept.
[Unit]
ConditionCPUs=
ConditionVirtualization=!container
"""


def tune_script(profile: TuningProfile) -> str:
    # Profile values enter the script once, as shell-quoted assignments, and are only ever
    # expanded inside double quotes: whatever a value holds, it stays one word of data.
    q = shlex.quote
    return f"""#!/bin/bash
# {HEADER}
# Boot-time tuning that has no config file of its own; run once by {units.TUNE_UNIT}.
# A NIC without a feature is reported and skipped; any other failure makes the unit fail
# (after doing the rest) so that check-host and the alarms see it. Running it again changes
# nothing that is already as it should be. LOWLAT_ROOT (unset on a host) prefixes every path,
# so the script can be rehearsed in a scratch tree.
set -uo pipefail
root="${{LOWLAT_ROOT:-}}"
nic={q(profile.nic)}
queues={profile.nic_queues}
rx_usecs={profile.rx_usecs}
user={q(profile.service_user)}
shm_dir={q(profile.shm_dir)}
workqueue_mask={cpumask(profile.housekeeping)}
status=0
rx_record=no-nic  # what ethtool -C took, for the record at the end
say() {{ echo "lowlat-tune: $*"; }}
fail() {{ echo "lowlat-tune: $*" >&2; status=1; }}

# Unbound kernel workqueues run on the housekeeping CPUs only ({cpulist(profile.housekeeping)}).
if echo "$workqueue_mask" > "$root{WORKQUEUE_CPUMASK}"; then
    say "workqueue cpumask $workqueue_mask"
else
    fail "cannot write {WORKQUEUE_CPUMASK}"
fi

# NIC: one queue per housekeeping CPU (its interrupts can only go there) and interrupt
# coalescing off, so a packet is delivered at once. ENA resets the device on a queue change.
# nic=auto is the IPv4 default route's interface (lowest metric), the rule check-host applies
# (ami.check.network.default_route_nic): ens5 on a c6g whichever OS names it.
if [[ $nic == {AUTO_NIC} ]]; then
    # the default route may come after network-online.target: wait up to {ROUTE_WAIT_S} s
    for ((waited = 0; waited <= {ROUTE_WAIT_S}; waited++)); do
        nic=""
        {{
            read -r _  # header: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            while read -r iface destination _ _ _ _ metric mask _; do
                if [[ $destination == 00000000 && $mask == 00000000 ]] &&
                    {{ [[ -z $nic ]] || (( metric < best )); }}; then
                    nic=$iface best=$metric
                fi
            done
        }} 2>/dev/null < "$root/proc/net/route"
        if [[ -n $nic || $waited -eq {ROUTE_WAIT_S} ]]; then break; fi
        sleep 1
    done
fi
if [[ -z $nic ]]; then
    say "no IPv4 default route: no NIC to tune (nic={AUTO_NIC}; skipped)"
elif [[ -e "$root/sys/class/net/$nic" ]]; then
    if ethtool -L "$nic" combined "$queues"; then
        say "$nic: $queues combined queue(s)"
    else
        say "$nic: queue count not changeable here (skipped)"
    fi
    if ethtool -C "$nic" rx-usecs "$rx_usecs"; then
        say "$nic: rx-usecs $rx_usecs"
        rx_record=$rx_usecs
    else
        say "$nic: interrupt coalescing not changeable here (skipped)"
        rx_record=skipped
    fi
else
    say "$nic: no such network interface (NIC tuning skipped)"
fi

# No swap: a page of the service swapped out is a millisecond stall.
if swapoff -a; then say "swap off"; else fail "swapoff -a failed"; fi

# Transparent huge pages never (also transparent_hugepage=never on the kernel command line):
# khugepaged compaction stalls are what the hugetlbfs segments avoid.
for f in "$root"/sys/kernel/mm/transparent_hugepage/{{enabled,defrag}}; do
    if [[ -e $f ]]; then
        if echo never > "$f"; then say "$f never"; else fail "cannot write $f"; fi
    fi
done

# The service's segment directory (on hugetlbfs, which systemd mounts root-owned).
if install -d -m 0750 -o "$user" -g "$user" "$root$shm_dir"; then
    say "$shm_dir ready"
else
    fail "cannot create $shm_dir for $user"
fi

# The outcome, for check-host (tune_unit, nic_coalescing): /run is emptied at every boot and the
# record names the boot, so it speaks of this boot only. Builtins only; without a record
# check-host fails tune_unit, which is how a failed write shows.
{{ read -r boot_id < "$root/proc/sys/kernel/random/boot_id"; }} 2>/dev/null || boot_id=unknown
printf 'status=%s\\nboot_id=%s\\nrx_usecs=%s\\n' "$status" "$boot_id" "$rx_record" \\
    > "$root{units.TUNE_STATE}" || echo "lowlat-tune: cannot write {units.TUNE_STATE}" >&2

exit $status
"""


def _device_unit(nic: str) -> str:
    """systemd's name for a network interface's device unit (systemd-escape rules)."""
    escaped = "".join(
        c if c.isascii() and (c.isalnum() or c in "_.") else f"\\x{ord(c):02x}" for c in nic
    )
    return f"sys-subsystem-net-devices-{escaped}.device"


def tune_unit(profile: TuningProfile) -> str:
    # nic=auto: the default route exists once the network is up; a named NIC is its device.
    device = "network-online.target" if profile.nic == AUTO_NIC else _device_unit(profile.nic)
    return f"""# {HEADER}
[Unit]
Description=lowlat boot-time host tuning (workqueues, NIC queues, swap, THP, segment directory)
# The NIC, the hugetlbfs mount and the service user must exist before they are tuned or used.
Wants={device}
After={device} dev-hugepages.mount systemd-sysusers.service
Before={units.ENGINE_UNIT} {units.TELEMETRY_UNIT}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={TUNE_SCRIPT}

[Install]
WantedBy=multi-user.target
"""


def limits_conf(profile: TuningProfile) -> str:
    return f"""# {HEADER}
# For sessions of the service user (e.g. `trading-service bench` over SSH); the systemd units
# set LimitMEMLOCK=infinity themselves, since pam_limits does not apply to services.
{profile.service_user} - memlock unlimited
"""


def sysusers_conf(profile: TuningProfile) -> str:
    return f"""# {HEADER}
# The service's own system user and group: both units run as it, no login.
u {profile.service_user} - "lowlat trading service" /var/cache/lowlat /usr/sbin/nologin
"""


def service_toml(profile: TuningProfile) -> str:
    cores = profile.stage_cores()
    return (
        "\n".join(
            [
                f"# {HEADER}",
                "# The trading service's config on this host; `trading-service config --config`",
                "# with this file prints every effective key with its help.",
                "",
                "[service]",
                f"shm_dir = {json.dumps(profile.shm_dir)}  # hugetlbfs: segment pages never fault",
                'shm_prefix = "lowlat"',
                "",
                "[cores]  # the isolated CPUs; stages that share one are fused into one process",
                *(f"{stage} = {cpu}" for stage, cpu in cores.items()),
                "",
                "[telemetry]",
                # Loopback by default: the CloudWatch agent scrapes /metrics on the host and people
                # reach the API through SSH or SSM. The CDK app widens it only when its security
                # group admits allowedCidrs to the port (TuningProfile.telemetry_host).
                f"host = {json.dumps(profile.telemetry_host)}  # the agent scrapes 127.0.0.1",
                f"port = {profile.telemetry_port}",
                *_exchange_toml(profile),
            ]
        )
        + "\n"
    )


def _exchange_toml(profile: TuningProfile) -> list[str]:
    """With an exchange in the profile: the feed reads its UDP market data and the gateway
    enters orders with it over TCP. Without one, nothing: the simulator and the simulated
    exchange, the service's defaults."""
    exchange = profile.exchange
    if exchange is None:
        return []
    session = [f"session = {json.dumps(exchange.session)}"] if exchange.session else []
    return [
        "",
        "[feed]",
        'source = "udp"  # the exchange\'s market data, [exchange] market_data',
        "",
        "[gateway]",
        'exchange = "tcp"  # orders to [exchange] orders',
        "",
        "[exchange]  # the addresses the security group, firewall and engine unit open",
        f"market_data = {json.dumps(str(exchange.market_data))}",
        f"recovery = {json.dumps(str(exchange.recovery))}",
        f"orders = {json.dumps(str(exchange.orders))}",
        *session,
    ]
