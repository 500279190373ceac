"""The systemd units of the trading service and its root checker, rendered from the profile.

``lowlat-engine.service`` runs ``trading-service run``: a supervisor that starts one
busy-polling process per stage, each pinning itself to its isolated core. The unit's
``CPUAffinity=`` is the housekeeping and the isolated CPUs: ``check_runtime`` accepts the
``[cores]`` of /etc/lowlat/service.toml (isolated CPUs this process may use), and the supervisor
then moves itself to the CPUs no stage uses, the housekeeping ones, before it starts the stages.
With the isolated CPUs only, it would stay on one of them: ``isolcpus=domain`` takes them out of
load balancing, so nothing would ever move it to where it belongs.

``lowlat-telemetry.service`` runs ``trading-service telemetry`` on the housekeeping CPUs: the
HTTP API that reads the engine's stats and control blocks read-only.

Both units are sandboxed as far as the service allows (``systemd-analyze security --offline=true``
rates each at or below 2.5, see tests/ami/test_units.py). The exceptions, each explained where
it is set, are what the service needs:

- no ``MemoryDenyWriteExecute=``: numba compiles with LLVM at run time into memory it writes
  and then maps executable; the setting forbids exactly that and the first kernel call dies;
- no ``PrivateDevices=``/``PrivateIPC=``: the two units share the segments in the profile's
  ``shm_dir`` (a hugetlbfs directory under /dev/hugepages, or /dev/shm); a private /dev drops
  /dev/hugepages and gives each unit its own /dev/shm, so telemetry would see no engine;
- ``RemoveIPC=no``: both units run as the same user, and ``RemoveIPC=yes`` deletes every POSIX
  shared-memory object (files in /dev/shm) of that user when *either* unit stops;
- no ``ProcSubset=pid``: LLVM reads /proc/cpuinfo to name the host CPU on aarch64 (and numba keys
  its cache on that name); hiding it compiles for a generic CPU and misses the warm cache.

``lowlat-check-host.timer`` starts ``lowlat-check-host.service`` every minute: as root (with no
capability), it records chronyd's ``chronyc -c tracking`` answer and writes
``trading-service check-host --json`` to ``CHECK_HOST_REPORT``, renamed into place whole. The
telemetry API serves that file at ``/host`` while it is fresh: sandboxed and unprivileged, its
own check cannot read all that root can (service/telemetry/api.py, ``HostReporter``).

This module is light (standard library only): the CDK app and the tests read it.
"""

from __future__ import annotations

import ipaddress
import shlex

from contracts.profile import TuningProfile, cpulist

ENGINE_UNIT = "lowlat-engine.service"
TELEMETRY_UNIT = "lowlat-telemetry.service"
TUNE_UNIT = "lowlat-tune.service"
CHECK_HOST_UNIT = "lowlat-check-host.service"
CHECK_HOST_TIMER_UNIT = "lowlat-check-host.timer"
SERVICE_CONFIG = "/etc/lowlat/service.toml"

# lowlat-tune's record of its run (status, boot id, what ethtool -C took), for check-host's
# tune_unit and nic_coalescing: /run is emptied at every boot, so it speaks of this boot.
TUNE_STATE = "/run/lowlat-tune.state"
# The root timer's output: check-host's report, which the telemetry API serves at /host, and
# chronyd's answer to `chronyc -c tracking`, which check-host's chrony_synced reads.
STATE_DIR = "/var/lib/lowlat"
CHECK_HOST_REPORT = f"{STATE_DIR}/check-host.json"
CHRONY_TRACKING = f"{STATE_DIR}/chrony-tracking"
CHECK_HOST_SCRIPT = "/usr/local/sbin/lowlat-check-host"
CHECK_HOST_INTERVAL_S = 60

# Longest drain on stop: [service] drain_timeout_s defaults to 10 s and the stages then print
# their report; 30 s leaves room before systemd sends SIGKILL to the whole control group.
ENGINE_STOP_TIMEOUT_S = 30


def venv_bin(profile: TuningProfile, name: str) -> str:
    """A console script of the release that ``current`` points at (swapped atomically on deploy)."""
    return f"{profile.install_prefix}/current/venv/bin/{name}"


def _shm_paths(profile: TuningProfile) -> tuple[str, ...]:
    """Where the segments live: the profile's shm_dir, plus /dev/shm (the service's fallback
    when shm_dir is a plain tmpfs path, and where Python's multiprocessing puts semaphores)."""
    return tuple(dict.fromkeys((profile.shm_dir, "/dev/shm")))


LOG_DIR = "/var/log/lowlat"


def _logging(name: str) -> list[str]:
    """Output to a file the CloudWatch agent ships (ami/cloudwatch.py collects LOG_DIR/*.log).

    systemd opens the file itself, before the sandbox applies, so the service needs no write
    access to /var/log; logrotate truncates it in place (copytruncate), which a file opened
    for appending survives.
    """
    return [
        "LogsDirectory=lowlat",
        f"StandardOutput=append:{LOG_DIR}/{name}.log",
        f"StandardError=append:{LOG_DIR}/{name}.log",
    ]


def _common(profile: TuningProfile, hide_processes: bool = True) -> list[str]:
    """[Service] settings both units share: identity, limits, restart policy and the sandbox.
    ``hide_processes``: ProtectProc=invisible (the engine; not the telemetry API, which must
    see the engine's supervisor in /proc to know it is alive)."""
    user = profile.service_user
    return [
        f"User={user}",
        f"Group={user}",
        "# numba's on-disk cache: /var/cache/lowlat, the one writable path besides the",
        "# segments under ProtectSystem=strict; the service reads $CACHE_DIRECTORY (jit.py).",
        "CacheDirectory=lowlat",
        "CacheDirectoryMode=0750",
        "WorkingDirectory=/var/cache/lowlat",
        "# Files the service creates are never group-writable and hidden from other users.",
        "UMask=0027",
        "Environment=PYTHONUNBUFFERED=1",
        "# The rings and the stats block may be locked in RAM (mlock) whatever their size.",
        "LimitMEMLOCK=infinity",
        "Restart=on-failure",
        "RestartSec=2s",
        "",
        "# sandbox (systemd.exec(5)); `systemd-analyze security` rates it",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateMounts=yes",
        "PrivateTmp=yes",
        "# PrivateUsers: the service needs no other user's files; the shared segments are owned",
        "# by this unit's own user, which the user namespace maps through unchanged.",
        "PrivateUsers=yes",
        "# No PrivateDevices= and no PrivateIPC=: both would give this unit its own /dev/shm (and",
        "# PrivateDevices drops /dev/hugepages), cutting it off from the other unit's segments.",
        "# DevicePolicy=closed still denies every device node; hugetlbfs and /dev/shm hold",
        "# regular files, which the device controller does not police.",
        "DevicePolicy=closed",
        "# RemoveIPC=yes removes every SysV and POSIX IPC object (so every file in /dev/shm)",
        "# owned by the unit's user when the unit stops. Both units run as that user: stopping",
        "# telemetry would delete the running engine's segments. So no.",
        "RemoveIPC=no",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        *(["ProtectProc=invisible"] if hide_processes else _SEES_THE_ENGINE),
        "# No ProcSubset=pid: LLVM names the host CPU from /proc/cpuinfo on aarch64 and numba",
        "# keys its cache on that name; without it kernels compile for a generic CPU.",
        "RestrictNamespaces=yes",
        "# The stages busy-poll at normal priority on isolated cores; a real-time policy would",
        "# only starve the per-CPU kernel threads there, so it is not needed and is refused.",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "KeyringMode=private",
        "# No MemoryDenyWriteExecute=: numba JIT-compiles with LLVM into writable memory that",
        "# it then maps executable (mprotect PROT_EXEC); the setting forbids exactly that, so",
        "# the first kernel call would fail. mmap/mprotect stay in the filter for the same reason.",
        "SystemCallArchitectures=native",
        "# @system-service has what numba/llvmlite and the stages use: mmap/mprotect (@default),",
        "# sched_setaffinity (@resources), mlock (@memlock), membarrier, madvise.",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @obsolete",
        "SystemCallErrorNumber=EPERM",
    ]


# ProtectProc=invisible shows a unit only the processes it may ptrace, and the engine runs in a
# user namespace of its own (PrivateUsers=yes): the API would never find the engine's
# supervisor in /proc, so the segments' owner would look dead and /ready say "engine not
# running" with the engine up (found by booting a host in the lab).
_SEES_THE_ENGINE = [
    "# No ProtectProc=invisible: it would hide the engine unit's processes (their own user",
    "# namespace) and the API checks the segments' owner is alive in /proc/<pid>/stat.",
]


def _unit(description: str, after: list[str], service: list[str]) -> str:
    lines = [
        "# Rendered by ami/units.py from the tuning profile; edit the profile, not this file.",
        "[Unit]",
        f"Description={description}",
        f"Wants={TUNE_UNIT}",
        f"After=network-online.target {' '.join(after)}".rstrip(),
        # Five failures in five minutes: stop restarting and let the alarm page someone rather
        # than JIT-compile in a loop.
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def engine_unit(profile: TuningProfile) -> str:
    """lowlat-engine.service: the stages on the isolated CPUs, the supervisor on the housekeeping
    ones, with no network at all, or only the exchange's (``_engine_network``)."""
    rw = " ".join(_shm_paths(profile))
    service = [
        "Type=exec",
        f"ExecStart={venv_bin(profile, 'trading-service')} run --config {SERVICE_CONFIG}",
        "# The supervisor moves itself to the housekeeping CPUs, each stage to its isolated one.",
        f"CPUAffinity={cpulist((*profile.housekeeping, *profile.isolated))}",
        "# SIGTERM to every stage: each drains its rings and the supervisor prints the report;",
        "# whatever is left after TimeoutStopSec is killed with the whole control group.",
        "KillMode=control-group",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={ENGINE_STOP_TIMEOUT_S}s",
        "# Warm-up JIT-compiles every kernel before the service says ready: allow for it.",
        "TimeoutStartSec=300s",
        *_common(profile),
        *_logging("engine"),
        '# The engine creates the segments; a leading "-" would hide a missing hugetlbfs mount.',
        f"ReadWritePaths={rw}",
        *_engine_network(profile),
    ]
    return _unit(
        "lowlat trading engine (feed, engine, gateway stages on the isolated CPUs)",
        [TUNE_UNIT],
        service,
    )


def _engine_network(profile: TuningProfile) -> list[str]:
    """The engine's network: none with the simulated exchange; with a real one, exactly the
    address families and addresses the feed and the gateway use (the profile's exchange_*)."""
    exchange = profile.exchange
    if exchange is None:
        return [
            "# The stages talk through shared memory and the supervisor to them through pipes and",
            "# AF_UNIX socket pairs (multiprocessing); the exchange is simulated in process. A "
            "real",
            "# exchange gateway needs AF_INET(6), IPAddressAllow= and PrivateNetwork=no.",
            "RestrictAddressFamilies=AF_UNIX",
            "PrivateNetwork=yes",
            "IPAddressDeny=any",
        ]
    families = " ".join({4: "AF_INET", 6: "AF_INET6"}[v] for v in exchange.ip_versions)
    versions = exchange.ip_versions
    ranges = [c for c in exchange.cidrs if ipaddress.ip_network(c).version in versions]
    allowed = [*ranges, *([str(exchange.group.ip)] if exchange.group else [])]
    return [
        "# The stages talk through shared memory and the supervisor to them through pipes and",
        "# AF_UNIX socket pairs (multiprocessing). The feed receives the exchange's market data",
        f"# ({exchange.market_data}, UDP) and asks its recovery ({exchange.recovery}, TCP); the",
        f"# gateway enters orders at {exchange.orders} (TCP): the host's network, the address",
        "# families of those addresses and the exchange's ranges (the remote address of every",
        "# packet in or out), and the group, nothing else. The engine stage's own process has",
        "# no network even so: a seccomp filter refuses it AF_INET/AF_INET6 sockets",
        "# (service/runtime/sandbox.py).",
        f"RestrictAddressFamilies=AF_UNIX {families}",
        "PrivateNetwork=no",
        "IPAddressDeny=any",
        f"IPAddressAllow={' '.join(allowed)}",
    ]


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _telemetry_ip_policy(profile: TuningProfile) -> list[str]:
    """Loopback only unless the profile widens the listen address (TuningProfile.telemetry_host)."""
    if profile.telemetry_host in LOOPBACK_HOSTS:
        return [
            "# It listens on 127.0.0.1 (see /etc/lowlat/service.toml): the CloudWatch agent",
            "# scrapes it on the host and people reach it through SSH, so no address beyond",
            "# loopback.",
            "IPAddressDeny=any",
            "IPAddressAllow=localhost",
        ]
    return [
        f"# It listens on {profile.telemetry_host} (see /etc/lowlat/service.toml): the security",
        "# group in front of the host admits only the deployment's allowedCidrs to the port.",
    ]


def telemetry_unit(profile: TuningProfile) -> str:
    """lowlat-telemetry.service: the HTTP API on the housekeeping CPUs, segments read-only."""
    ro = " ".join(f"-{p}" for p in _shm_paths(profile))
    service = [
        "Type=exec",
        f"ExecStart={venv_bin(profile, 'trading-service')} telemetry --config {SERVICE_CONFIG}",
        f"CPUAffinity={cpulist(profile.housekeeping)}",
        "KillMode=control-group",
        "TimeoutStopSec=10s",
        *_common(profile, hide_processes=False),
        *_logging("telemetry"),
        "# Telemetry only reads the engine's segments. The leading - lets it start before they",
        "# exist (it answers 503 on /ready until the engine is up).",
        f"ReadOnlyPaths={ro}",
        f"# /host serves the root timer's check-host report, {CHECK_HOST_REPORT}: readable",
        "# (ProtectSystem=strict leaves /var/lib readable; named so that no setting hides it).",
        f"ReadOnlyPaths=-{STATE_DIR}",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        *_telemetry_ip_policy(profile),
    ]
    return _unit(
        "lowlat telemetry API (reads the engine's stats, on the housekeeping CPUs)",
        [TUNE_UNIT, ENGINE_UNIT],
        service,
    )


# ----------------------------------------------------------------------------- check-host as root

HEADER = "Rendered by ami/units.py from the tuning profile; edit the profile, not this file."


def check_host_script(profile: TuningProfile) -> str:
    """What lowlat-check-host.service runs: chronyd's state, then check-host, into STATE_DIR."""
    return f"""#!/bin/bash
# {HEADER}
# Run as root every minute by {CHECK_HOST_UNIT} ({CHECK_HOST_TIMER_UNIT}). As root,
# check-host sees every process (kernel threads, irqbalance, chronyd, PID 1), which the telemetry
# API cannot under ProtectProc=invisible; the API serves the report written here at /host.
# LOWLAT_ROOT (unset on a host) prefixes every path, so the script can be rehearsed in a tree.
set -uo pipefail
root="${{LOWLAT_ROOT:-}}"
service={shlex.quote(venv_bin(profile, "trading-service"))}
tracking="$root{CHRONY_TRACKING}"
report="$root{CHECK_HOST_REPORT}"
umask 022  # the telemetry API reads both files as the service user

# chronyd's answer for check-host's chrony_synced (or chronyc's error): no file holds it. Asked
# over UDP on localhost, where monitoring commands need no privilege and no access to chronyd's
# socket directory.
chronyc -h 127.0.0.1,::1 -n -c tracking > "$tracking.tmp" 2>&1
mv -f "$tracking.tmp" "$tracking"

# The report, renamed into place whole: a reader never sees half a file. check-host exits 0
# (tuned) or 1 (not tuned) with a report; anything else leaves no report and the old one ages,
# which the API notices.
"$root$service" check-host --json > "$report.tmp"
rc=$?
if (( rc <= 1 )); then
    mv -f "$report.tmp" "$report"
    exit 0
fi
rm -f "$report.tmp"
echo "lowlat-check-host: check-host exited $rc, no report written" >&2
exit "$rc"
"""


def check_host_unit(profile: TuningProfile) -> str:
    """lowlat-check-host.service: check-host as root, as sandboxed as a reader of all of /proc
    can be (it needs no capability: every file it reads is world-readable)."""
    lines = [
        f"# {HEADER}",
        "[Unit]",
        "Description=lowlat check-host as root, for the telemetry API's /host (run by its timer)",
        f"After={TUNE_UNIT}",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={CHECK_HOST_SCRIPT}",
        f"CPUAffinity={cpulist(profile.housekeeping)}",
        "Nice=10",
        "# A run takes about 2 s (a 1 s interrupt window, a scan of /proc): done before the next.",
        f"TimeoutStartSec={CHECK_HOST_INTERVAL_S // 2}s",
        "# /var/lib/lowlat, root-owned 0755: the service user reads the report, cannot forge it.",
        "StateDirectory=lowlat",
        "StateDirectoryMode=0755",
        "UMask=0022",
        "",
        "# sandbox (systemd.exec(5)). Root for an untouched view of /proc, without a capability.",
        "# ProtectProc= and ProcSubset= stay at their defaults: seeing every process and /proc's",
        "# files (cmdline, interrupts, swaps, irq/) is the point of running as root.",
        "# No PrivateDevices=: chrony_source looks for ENA's PTP clock, /dev/ptp*, by name;",
        "# DevicePolicy=closed still opens no device.",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateUsers=yes",
        "DevicePolicy=closed",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "KeyringMode=private",
        "# No MemoryDenyWriteExecute=: the CLI loads numpy and ctypes, whose libffi closures may",
        "# need memory that is written and then executed.",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @obsolete",
        "SystemCallErrorNumber=EPERM",
        "# chronyc asks chronyd over UDP on localhost; nothing else.",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
    ]
    return "\n".join(lines) + "\n"


def check_host_timer() -> str:
    """lowlat-check-host.timer: the service every CHECK_HOST_INTERVAL_S seconds from boot."""
    return f"""# {HEADER}
[Unit]
Description=lowlat check-host as root every {CHECK_HOST_INTERVAL_S} s (telemetry API's /host)

[Timer]
OnBootSec=30s
OnUnitActiveSec={CHECK_HOST_INTERVAL_S}s
AccuracySec=1s
Unit={CHECK_HOST_UNIT}

[Install]
WantedBy=timers.target
"""
