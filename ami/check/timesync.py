"""Time: the clocksource, and chrony running, synchronised and on the Amazon Time Sync Service.

- ``chrony_source`` reads the chrony config the host OS adapter names (``ami.hostos``) and what
  it pulls in (``include``, ``confdir``, ``sourcedir``): a ``server``/``pool`` on 169.254.169.123
  (or fd00:ec2::123) or a ``refclock PHC`` on a /dev/ptp* that exists (ENA's PTP hardware clock).
- ``chrony_synced``: whether chronyd is synchronised is chronyd's to say, through ``chronyc``,
  and a file tree cannot hold a program's answer. So the root timer (lowlat-check-host.service)
  asks it just before it runs check-host, ``chronyc -c tracking``, and leaves the answer in
  ``ami.units.CHRONY_TRACKING``; check-host reads that record and its age. Leap status
  ``Not synchronised``, a chronyc error, or a record older than ``TRACKING_MAX_AGE_S`` fails.
  (/run/chrony holds no such state; the kernel's own flag, adjtimex STA_UNSYNC, has no file.)
"""

from __future__ import annotations

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host
from ami.hostos import host_os
from ami.units import CHECK_HOST_INTERVAL_S, CHECK_HOST_TIMER_UNIT, CHRONY_TRACKING

CLOCKSOURCES = {"graviton": "arch_sys_counter", "x86": "tsc"}
AMAZON_TIME_SYNC = ("169.254.169.123", "fd00:ec2::123")
TIME_SYNC_LINE = "server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4"
TRACKING_MAX_AGE_S = 5 * CHECK_HOST_INTERVAL_S
TIMER = f"the root timer records it every minute: systemctl status {CHECK_HOST_TIMER_UNIT}"
# chronyc -c tracking: reference id, name, stratum, ref time, system time offset, ..., leap status
TRACKING_FIELDS = 14


def check_clocksource(host: Host) -> Check:
    want = CLOCKSOURCES[host.profile.platform]
    text = host.read("sys/devices/system/clocksource/clocksource0/current_clocksource")
    if text is None:
        return Check("clocksource", FAIL, want, "missing", "cannot read the current clocksource")
    observed = text.strip()
    if observed == want:
        return Check("clocksource", PASS, want, observed)
    return Check(
        "clocksource",
        FAIL,
        want,
        observed,
        f"every clock read goes through {observed}, slower than {want}: look for clocksource "
        f"watchdog messages in dmesg, then boot with clocksource={want}",
    )


def check_chrony_running(host: Host) -> Check:
    unit = host_os(host.profile).chrony_unit
    expected = f"chronyd running ({unit})"
    if not host.sees_kernel_threads:
        return Check(
            "chrony_running",
            NA,
            expected,
            "",
            "root's processes are not visible here (a sandbox hides them); the root timer's "
            f"report ({CHECK_HOST_TIMER_UNIT}) sees them",
        )
    found = host.running("chronyd")
    if found:
        return Check("chrony_running", PASS, expected, f"chronyd[{found[0].pid}]")
    return Check("chrony_running", FAIL, expected, "not running", f"systemctl enable --now {unit}")


def check_chrony_synced(host: Host) -> Check:
    expected = f"chronyc tracking: leap status Normal (recorded within {TRACKING_MAX_AGE_S} s)"
    text, age = host.read(CHRONY_TRACKING), host.age_s(CHRONY_TRACKING)
    if text is None or age is None:
        return Check("chrony_synced", FAIL, expected, "no record", f"no {CHRONY_TRACKING}: {TIMER}")
    if age > TRACKING_MAX_AGE_S:
        return Check(
            "chrony_synced", FAIL, expected, f"record {age:.0f} s old", f"stale record: {TIMER}"
        )
    line = text.strip().splitlines()[0] if text.strip() else ""
    fields = line.split(",")
    if len(fields) < TRACKING_FIELDS:
        return Check(
            "chrony_synced",
            FAIL,
            expected,
            line or "(empty)",
            "chronyc could not ask chronyd (see chrony_running)",
        )
    reference, offset, leap = fields[1], fields[4], fields[13]
    observed = f"{leap}, reference {reference}, offset {offset} s"
    if leap == "Not synchronised":
        return Check(
            "chrony_synced",
            FAIL,
            expected,
            observed,
            "chronyd has no usable source (chronyc sources -v shows why): the Amazon Time Sync "
            "Service is 169.254.169.123 (see chrony_source)",
        )
    return Check("chrony_synced", PASS, expected, observed, f"recorded {age:.0f} s ago")


def _chrony_lines(host: Host, path: str, depth: int = 0) -> list[list[str]]:
    """The directives of a chrony config file and of what it includes, as word lists."""
    lines = []
    for raw in (host.read(path) or "").splitlines():
        words = raw.split("#", 1)[0].split("!", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        lines.append(words)
        if depth >= 3 or len(words) < 2:
            continue
        patterns = {
            "include": words[1:2],
            "confdir": [f"{d}/*.conf" for d in words[1:]],
            "sourcedir": [f"{d}/*.sources" for d in words[1:]],
        }.get(words[0].lower(), [])
        for pattern in patterns:
            for found in host.glob(pattern):
                lines += _chrony_lines(host, "/" + str(found.relative_to(host.root)), depth + 1)
    return lines


def check_chrony_source(host: Host) -> Check:
    conf = host_os(host.profile).chrony_conf
    expected = "Amazon Time Sync Service (169.254.169.123) or refclock PHC on ENA's /dev/ptp*"
    if host.read(conf) is None:
        return Check("chrony_source", FAIL, expected, f"no {conf}", "install chrony")
    lines = _chrony_lines(host, conf)
    ptp = [p.name for p in host.glob("dev/ptp*")]
    phc = [
        w[2]
        for w in lines
        if len(w) >= 3 and w[0] == "refclock" and w[1] == "PHC" and host.path(w[2]).exists()
    ]
    if phc:
        return Check("chrony_source", PASS, expected, f"refclock PHC {phc[0]}")
    amazon = [
        " ".join(w[:2])
        for w in lines
        if len(w) >= 2 and w[0] in ("server", "pool", "peer") and w[1] in AMAZON_TIME_SYNC
    ]
    hint = f" ({', '.join(ptp)} present: `refclock PHC /dev/{ptp[0]}` is closer)" if ptp else ""
    if amazon:
        return Check("chrony_source", PASS, expected, amazon[0], hint.strip(" ()"))
    sources = [" ".join(w[:2]) for w in lines if w[0] in ("server", "pool", "peer", "refclock")]
    return Check(
        "chrony_source",
        FAIL,
        expected,
        "; ".join(sources) or "no source",
        f"add `{TIME_SYNC_LINE}` to {conf}{hint}, then systemctl restart "
        f"{host_os(host.profile).chrony_unit}",
    )


def checks(host: Host) -> list[Check]:
    return [
        check_clocksource(host),
        check_chrony_running(host),
        check_chrony_synced(host),
        check_chrony_source(host),
    ]
