"""The NIC as ``lowlat-tune`` sets it: one combined queue per housekeeping CPU, and interrupt
coalescing at the profile's ``rx_usecs``; and the network sysctls, which do not apply.

- The NIC is the profile's ``nic``, or with ``nic = "auto"`` the IPv4 default route's interface
  (``default_route_nic``: the rule lowlat-tune's script applies, read from /proc/net/route).

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
from contracts.profile import AUTO_NIC

NO_ROUTE = 'no IPv4 default route here, so no NIC to tune (nic = "auto")'
RESTART_TUNE = "lowlat-tune sets it at boot (systemctl restart lowlat-tune; the NIC resets briefly)"


def default_route_nic(route_table: str | None) -> str | None:
    """The interface of the IPv4 default route with the lowest metric in /proc/net/route's
    text (Iface, Destination, Gateway, Flags, RefCnt, Use, Metric, Mask, ...), or None."""
    best: tuple[int, str] | None = None
    for line in (route_table or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == fields[7] == "00000000" and fields[6].isdigit():
            candidate = (int(fields[6]), fields[0])
            best = candidate if best is None or candidate[0] < best[0] else best
    return best[1] if best else None


def host_nic(host: Host) -> tuple[str | None, str]:
    """The NIC lowlat-tune tunes on this host, and how it was chosen (for a check's text)."""
    if host.profile.nic != AUTO_NIC:
        return host.profile.nic, host.profile.nic
    nic = default_route_nic(host.read("proc/net/route"))
    return nic, f"{nic} (the default route's)" if nic else "the default route's interface"


def check_nic_queues(host: Host) -> Check:
    (nic, named), want = host_nic(host), host.profile.nic_queues
    expected = f"{want} combined queue(s) on {named} (one per housekeeping CPU)"
    base = f"sys/class/net/{nic}"
    if nic is None:
        return Check("nic_queues", NA, expected, "", NO_ROUTE)
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
    (nic, named), rx_usecs = host_nic(host), host.profile.rx_usecs
    expected = f"rx-usecs {rx_usecs} on {named}, set by lowlat-tune at this boot"
    if nic is None:
        return Check("nic_coalescing", NA, expected, "", NO_ROUTE)
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
