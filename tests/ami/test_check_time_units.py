"""check-host's time, unit and package checks: clocksource, chrony (running, synchronised, on the
Amazon Time Sync Service), lowlat-tune at this boot (with the record the real script writes),
packages, tuned, block I/O. Crafted trees: tuned, untuned, half-tuned."""

from __future__ import annotations

import os
import shutil

import pytest

from ami import render as r
from ami import units
from ami.check import Check, check_host
from contracts.profile import TuningProfile
from tests.support.host_tree import BOOT_ID, PROFILE, program, tuned_tree, write
from tests.support.rehearse import rehearse

TRACKING = units.CHRONY_TRACKING


def check(root, name: str, profile: TuningProfile | None = None) -> Check:
    return check_host(root, profile, irq_window_s=0).check(name)


@pytest.fixture
def tuned(tmp_path):
    return tuned_tree(tmp_path)


# ----------------------------------------------------------------------------- clocksource


def test_clocksource_per_platform(tuned):
    assert check(tuned, "clocksource").status == "pass"  # arch_sys_counter on Graviton
    write(tuned, "sys/devices/system/clocksource/clocksource0/current_clocksource", "jiffies\n")
    c = check(tuned, "clocksource")
    assert (c.status, c.expected, c.observed) == ("fail", "arch_sys_counter", "jiffies")
    assert "clocksource=arch_sys_counter" in c.detail
    x86 = TuningProfile.for_vcpus(4, platform="x86")
    write(tuned, "sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc\n")
    assert check(tuned, "clocksource", x86).status == "pass"


# ----------------------------------------------------------------------------- chrony


def test_chrony_running(tuned):
    assert check(tuned, "chrony_running").observed == "chronyd[201]"
    shutil.rmtree(tuned / "proc/201")
    c = check(tuned, "chrony_running")
    assert c.status == "fail" and c.detail == "systemctl enable --now chronyd.service"
    ubuntu = TuningProfile.for_vcpus(4, os="ubuntu2404")
    assert check(tuned, "chrony_running", ubuntu).detail.endswith("chrony.service")


def test_chrony_synced_reads_the_timers_tracking_record(tuned):
    c = check(tuned, "chrony_synced")
    assert c.status == "pass"
    assert c.observed == "Normal, reference 169.254.169.123, offset -0.000001234 s"


def test_chrony_not_synchronised_fails(tuned):
    text = (tuned / TRACKING.lstrip("/")).read_text().replace("Normal", "Not synchronised")
    write(tuned, TRACKING, text)
    c = check(tuned, "chrony_synced")
    assert c.status == "fail" and c.observed.startswith("Not synchronised")
    assert "chronyc sources -v" in c.detail


def test_chrony_synced_stale_missing_or_an_error(tuned):
    path = tuned / TRACKING.lstrip("/")
    old = path.stat().st_mtime - 3600
    os.utime(path, (old, old))
    c = check(tuned, "chrony_synced")
    assert c.status == "fail" and c.observed.startswith("record 36")
    assert "systemctl status lowlat-check-host.timer" in c.detail
    write(tuned, TRACKING, "506 Cannot talk to daemon\n")  # chronyc's error, as recorded
    c = check(tuned, "chrony_synced")
    assert (c.status, c.observed) == ("fail", "506 Cannot talk to daemon")
    path.unlink()
    assert check(tuned, "chrony_synced").observed == "no record"


def test_chrony_source_follows_includes_and_the_os_adapter(tuned):
    assert check(tuned, "chrony_source").observed == "server 169.254.169.123"
    write(tuned, "etc/chrony.conf", "pool 2.amazon.pool.ntp.org iburst\nsourcedir /etc/chrony.d\n")
    c = check(tuned, "chrony_source")
    assert (c.status, c.observed) == ("fail", "pool 2.amazon.pool.ntp.org")
    assert "server 169.254.169.123 prefer iburst" in c.detail and "/etc/chrony.conf" in c.detail
    write(tuned, "etc/chrony.d/link-local.sources", "server 169.254.169.123 prefer iburst\n")
    assert check(tuned, "chrony_source").status == "pass"
    ubuntu = TuningProfile.for_vcpus(4, os="ubuntu2404")  # /etc/chrony/chrony.conf
    assert check(tuned, "chrony_source", ubuntu).observed == "no /etc/chrony/chrony.conf"


def test_chrony_source_ena_ptp_clock(tuned):
    write(tuned, "etc/chrony.conf", "refclock PHC /dev/ptp0 poll 0 delay 0.000010 prefer\n")
    c = check(tuned, "chrony_source")  # no /dev/ptp0: the refclock does not count
    assert c.status == "fail"
    write(tuned, "dev/ptp0", "")
    assert check(tuned, "chrony_source").observed == "refclock PHC /dev/ptp0"
    write(tuned, "etc/chrony.conf", "server 169.254.169.123 iburst\n")
    c = check(tuned, "chrony_source")  # the clock is there but unused: pass, with the hint
    assert c.status == "pass" and "refclock PHC /dev/ptp0" in c.detail


# ----------------------------------------------------------------------------- lowlat-tune


def test_tune_unit_record_of_this_boot(tuned):
    assert check(tuned, "tune_unit").observed == "status 0 at this boot"
    write(tuned, units.TUNE_STATE, f"status=1\nboot_id={BOOT_ID}\nrx_usecs=0\n")
    c = check(tuned, "tune_unit")
    assert (c.status, c.observed) == ("fail", "status 1")
    assert "journalctl -u lowlat-tune.service -b" in c.detail
    write(tuned, units.TUNE_STATE, "status=0\nboot_id=another\n")
    assert check(tuned, "tune_unit").status == "fail"
    (tuned / units.TUNE_STATE.lstrip("/")).unlink()
    c = check(tuned, "tune_unit")
    assert (c.status, c.observed) == ("fail", "no record of this boot")
    assert "systemctl status lowlat-tune.service" in c.detail


@pytest.mark.parametrize(("ethtool", "recorded"), [(0, "0"), (1, "skipped")])
def test_the_tune_scripts_record_is_what_check_host_reads(tmp_path, ethtool, recorded):
    """The real lowlat-tune, rehearsed in the tuned tree, records its run; check-host reads it."""
    root = tuned_tree(tmp_path / "root")
    (root / units.TUNE_STATE.lstrip("/")).unlink()  # /run is there, empty as after a boot
    run = rehearse(r.tune_script(PROFILE), root, ("ethtool", "swapoff", "install"), ethtool=ethtool)
    assert run.result.returncode == 0, run.result.stderr
    assert (root / units.TUNE_STATE.lstrip("/")).read_text() == (
        f"status=0\nboot_id={BOOT_ID}\nrx_usecs={recorded}\n"
    )
    report = check_host(root, PROFILE, irq_window_s=0)
    assert report.check("tune_unit").status == "pass"
    assert report.check("nic_coalescing").status == ("pass" if ethtool == 0 else "not_applicable")


def test_a_failed_tune_run_records_its_status(tmp_path):
    root = tuned_tree(tmp_path / "root")
    run = rehearse(r.tune_script(PROFILE), root, ("ethtool", "swapoff", "install"), swapoff=1)
    assert run.result.returncode == 1
    assert check(root, "tune_unit").observed == "status 1"


# ----------------------------------------------------------------------------- packages, tuned, I/O


def test_packages(tuned):
    assert check(tuned, "packages").observed == "all present"
    (tuned / "usr/sbin/ethtool").unlink()
    (tuned / "usr/sbin/chronyd").unlink()
    c = check(tuned, "packages")
    assert (c.status, c.observed) == ("fail", "missing: ethtool, chronyd")
    assert c.detail.startswith("dnf install -y chrony ethtool (")
    ubuntu = TuningProfile.for_vcpus(4, os="ubuntu2404")
    assert check(tuned, "packages", ubuntu).detail.startswith("apt-get install -y chrony ethtool")


def test_tuned_off(tuned):
    assert check(tuned, "tuned_off").status == "pass"
    program(tuned, 400, "tuned", "0", b"/usr/bin/python3\0-Es\0/usr/sbin/tuned\0-l\0")
    c = check(tuned, "tuned_off")
    assert (c.status, c.observed) == ("fail", "tuned[400]")
    assert "systemctl disable --now tuned" in c.detail


def test_io_scheduler_is_not_applicable_and_shows_the_devices(tuned):
    write(tuned, "sys/block/loop0/queue/scheduler", "[none]\n")
    c = check(tuned, "io_scheduler")
    assert (c.status, c.observed) == ("not_applicable", "nvme0n1 [none]")
    assert "the stages do none" in c.detail
