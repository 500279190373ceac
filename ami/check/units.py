"""The units and packages the tuning relies on, and what it leaves alone on purpose.

- ``tune_unit``: ``lowlat-tune`` succeeded at this boot. The script records its outcome in
  ``ami.units.TUNE_STATE`` (``status=``, ``boot_id=``, ``rx_usecs=``) as its last act. /run is a
  tmpfs emptied at every boot, and the record carries the boot id, so a record that is there and
  names this boot says "at this boot".
- ``packages``: the programs the tuning runs or keeps running (ethtool, irqbalance, chronyd).
- ``tuned_off``: tuned is not running. lowlat's own tuning replaces a tuned profile; tuned would
  apply its profile's sysctls, THP and governor settings over it.
- ``io_scheduler`` is not applicable: the stages do no block I/O (they talk through shared memory;
  the units' logs are appended by systemd on the housekeeping CPUs), so the I/O scheduler and
  block queue settings are not tuned. It shows what the devices use.
"""

from __future__ import annotations

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host, key_values
from ami.hostos import host_os
from ami.units import TUNE_STATE, TUNE_UNIT

TUNE_LOG = f"systemctl status {TUNE_UNIT}; journalctl -u {TUNE_UNIT} -b"
# program -> (package, why the tuning needs it)
PROGRAMS = {
    "ethtool": ("ethtool", "lowlat-tune sets the NIC's queues and coalescing with it"),
    "irqbalance": ("irqbalance", "keeps interrupts off the isolated CPUs (with the ban)"),
    "chronyd": ("chrony", "keeps the clock on the Amazon Time Sync Service"),
}
BIN_DIRS = ("usr/sbin", "sbin", "usr/bin", "bin")


def tune_record(host: Host) -> tuple[dict[str, str] | None, str]:
    """lowlat-tune's record of this boot, or (None, why there is none)."""
    text = host.read(TUNE_STATE)
    if text is None:
        return None, f"no {TUNE_STATE}: lowlat-tune has not run (or could not record) this boot"
    record = key_values(text)
    boot = (host.read("proc/sys/kernel/random/boot_id") or "").strip()
    recorded = record.get("boot_id", "")
    if boot and recorded not in (boot, "unknown"):
        return None, f"{TUNE_STATE} is from boot {recorded or '?'}, this is boot {boot}"
    return record, ""


def check_tune_unit(host: Host) -> Check:
    expected = f"{TUNE_UNIT} succeeded at this boot (status=0 in {TUNE_STATE})"
    record, why = tune_record(host)
    if record is None:
        return Check("tune_unit", FAIL, expected, "no record of this boot", f"{why}. {TUNE_LOG}")
    status = record.get("status", "?")
    if status == "0":
        return Check("tune_unit", PASS, expected, "status 0 at this boot")
    return Check(
        "tune_unit",
        FAIL,
        expected,
        f"status {status}",
        f"lowlat-tune failed at boot (it did what it could): {TUNE_LOG} says what; "
        f"systemctl restart {TUNE_UNIT} after the fix",
    )


def check_packages(host: Host) -> Check:
    expected = "programs present: " + ", ".join(PROGRAMS)
    missing = [
        name for name in PROGRAMS if not any(host.path(f"{d}/{name}").exists() for d in BIN_DIRS)
    ]
    if not missing:
        return Check("packages", PASS, expected, "all present")
    family = host_os(host.profile).family
    install = "dnf install -y" if family == "rhel" else "apt-get install -y"
    packages = " ".join(sorted({PROGRAMS[m][0] for m in missing}))
    why = "; ".join(f"{m}: {PROGRAMS[m][1]}" for m in missing)
    observed = f"missing: {', '.join(missing)}"
    return Check("packages", FAIL, expected, observed, f"{install} {packages} ({why})")


def check_tuned_off(host: Host) -> Check:
    expected = "tuned not running (lowlat's tuning replaces a tuned profile)"
    if not host.sees_kernel_threads:
        return Check(
            "tuned_off",
            NA,
            expected,
            "",
            "root's processes are not visible here (a sandbox hides them); the root timer's "
            "report (lowlat-check-host.timer) sees them",
        )
    found = host.running("tuned")
    if not found:
        return Check("tuned_off", PASS, expected, "not running")
    return Check(
        "tuned_off",
        FAIL,
        expected,
        f"tuned[{found[0].pid}]",
        "tuned applies its own profile (sysctls, THP, governor) over lowlat's: "
        "systemctl disable --now tuned",
    )


def check_io_scheduler(host: Host) -> Check:
    seen = []
    for path in host.glob("sys/block/*/queue/scheduler"):
        if path.parent.parent.name.startswith(("loop", "ram", "zram")):
            continue  # memory-backed: no device behind them
        text = host.read(str(path.relative_to(host.root))) or "?"
        chosen = next((w for w in text.split() if w.startswith("[")), text.strip())
        seen.append(f"{path.parent.parent.name} {chosen}")
    return Check(
        "io_scheduler",
        NA,
        "",
        "; ".join(seen),
        "lowlat tunes no block I/O: the stages do none (they talk through shared memory, and "
        "systemd appends the units' logs on the housekeeping CPUs); EBS NVMe volumes use none",
    )


def checks(host: Host) -> list[Check]:
    return [
        check_tune_unit(host),
        check_packages(host),
        check_tuned_off(host),
        check_io_scheduler(host),
    ]
