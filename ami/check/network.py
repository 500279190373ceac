"""The NIC as ``lowlat-tune`` sets it: one combined queue per housekeeping CPU, and interrupt
coalescing at the profile's ``rx_usecs``; and the network sysctls, which do not apply.

- ``nic_queues`` counts /sys/class/net/<nic>/queues/rx-* (what ``ethtool -L combined`` leaves).
- ``nic_coalescing``: the kernel shows coalescing only through ethtool's netlink/ioctl, which a
  file tree cannot hold and check-host does not call. It reads ``lowlat-tune``'s record of this
  boot instead (``rx_usecs=`` in ``ami.units.TUNE_STATE``: the value ``ethtool -C`` accepted, or
  ``skipped`` when the driver refused it). A later ``ethtool -C`` by hand is not seen.
- ``network_sysctls`` is not applicable: the engine has no network (``PrivateNetwork=yes``, the
  exchange is simulated in process), so busy_poll/busy_read and socket buffer sizes tune sockets
  it does not have; ``net.ipv4.tcp_low_latency`` has done nothing since Linux 4.14.
"""

from __future__ import annotations

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host
from ami.check.units import tune_record

RESTART_TUNE = "lowlat-tune sets it at boot (systemctl restart lowlat-tune; the NIC resets briefly)"


def check_nic_queues(host: Host) -> Check:
    nic, want = host.profile.nic, host.profile.nic_queues
    expected = f"{want} combined queue(s) on {nic} (one per housekeeping CPU)"
    base = f"sys/class/net/{nic}"
    if not host.path(base).exists():
        return Check("nic_queues", NA, expected, "", f"no interface {nic} here")
    have = len(host.glob(f"{base}/queues/rx-*"))
    observed = f"{have} rx queue(s)"
    if have == want:
        return Check("nic_queues", PASS, expected, observed)
    return Check(
        "nic_queues",
        FAIL,
        expected,
        observed,
        f"queues beyond the housekeeping CPUs spread interrupts further: {RESTART_TUNE}",
    )


def check_nic_coalescing(host: Host) -> Check:
    nic, rx_usecs = host.profile.nic, host.profile.rx_usecs
    expected = f"rx-usecs {rx_usecs} on {nic}, set by lowlat-tune at this boot"
    if not host.path(f"sys/class/net/{nic}").exists():
        return Check("nic_coalescing", NA, expected, "", f"no interface {nic} here")
    record, why = tune_record(host)
    if record is None:
        return Check(
            "nic_coalescing",
            FAIL,
            expected,
            "no record of this boot",
            f"{why}; coalescing is readable only with ethtool -c, so check-host reads "
            "lowlat-tune's record of ethtool -C",
        )
    value = record.get("rx_usecs", "not recorded")
    if value == str(rx_usecs):
        return Check(
            "nic_coalescing",
            PASS,
            expected,
            f"rx-usecs {value}",
            "as lowlat-tune set it with ethtool -C at boot (a later change by hand is not seen)",
        )
    if value == "skipped":
        return Check(
            "nic_coalescing",
            NA,
            expected,
            "skipped",
            f"{nic}'s driver did not take ethtool -C rx-usecs: nothing to set",
        )
    return Check("nic_coalescing", FAIL, expected, f"rx-usecs {value}", RESTART_TUNE)


def check_network_sysctls(host: Host) -> Check:
    return Check(
        "network_sysctls",
        NA,
        "",
        "",
        "the engine has no network (PrivateNetwork=yes: the exchange is simulated in process): "
        "busy_poll, busy_read and socket buffer sysctls tune sockets it does not have; "
        "tcp_low_latency is a no-op since Linux 4.14",
    )


def checks(host: Host) -> list[Check]:
    return [check_nic_queues(host), check_nic_coalescing(host), check_network_sysctls(host)]
