"""The engine and telemetry units: what they run, where, and how tightly they are sandboxed.

``systemd-analyze verify`` and ``systemd-analyze security --offline=true`` judge the rendered
files (no systemd runs as PID 1 here). verify resolves ExecStart= and the units' dependencies,
so it runs with ``--root`` on a tree that holds the rendered files, a stand-in executable at the
venv path and the few stock targets the units name.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ami import units
from ami.apply import apply
from ami.render import ENGINE_UNIT, TELEMETRY_UNIT, TUNE_UNIT, render
from contracts.profile import TuningProfile, cpulist, parse_cpulist
from tests.support.systemd_tools import STOCK_UNITS, SYSTEMD_ANALYZE, exposure

PROFILE = TuningProfile.for_vcpus(4)
MAX_EXPOSURE = 2.5
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)
# What the units pull in (After=/Wants=/WantedBy= and the implicit default dependencies).
NEEDED_TARGETS = (
    "sysinit.target",
    "basic.target",
    "multi-user.target",
    "network-online.target",
    "shutdown.target",
    "timers.target",
)


def settings(unit: str) -> dict[str, list[str]]:
    """key -> every value it is given in the unit (comments and sections dropped)."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def comments(unit: str) -> str:
    return "\n".join(line for line in unit.splitlines() if line.startswith("#"))


ENGINE = units.engine_unit(PROFILE)
TELEMETRY = units.telemetry_unit(PROFILE)
CHECKER = units.check_host_unit(PROFILE)
TIMER = units.check_host_timer()


def test_what_and_where_they_run():
    engine, telemetry = settings(ENGINE), settings(TELEMETRY)
    venv = "/opt/lowlat/current/venv/bin/trading-service"
    assert engine["ExecStart"] == [f"{venv} run --config /etc/lowlat/service.toml"]
    assert telemetry["ExecStart"] == [f"{venv} telemetry --config /etc/lowlat/service.toml"]
    # the stages' isolated CPUs and the housekeeping CPU the supervisor moves itself to
    assert engine["CPUAffinity"] == ["0-3"]
    assert telemetry["CPUAffinity"] == ["0"]  # housekeeping
    for unit in (engine, telemetry):
        assert unit["User"] == unit["Group"] == ["lowlat"]
        assert unit["LimitMEMLOCK"] == ["infinity"]
        assert unit["Restart"] == ["on-failure"]
        assert "StartLimitIntervalSec" in unit and "StartLimitBurst" in unit
        assert unit["CacheDirectory"] == ["lowlat"]
        assert unit["CapabilityBoundingSet"] == unit["AmbientCapabilities"] == [""]
        assert unit["ProtectSystem"] == ["strict"]
        assert unit["SystemCallFilter"][0] == "@system-service"
    assert engine["KillMode"] == ["control-group"] and engine["KillSignal"] == ["SIGTERM"]
    assert int(engine["TimeoutStopSec"][0].rstrip("s")) >= 20  # room for the drain
    assert engine["RestrictAddressFamilies"] == ["AF_UNIX"]


def test_no_memory_deny_write_execute_and_why():
    for unit in (ENGINE, TELEMETRY):
        assert "MemoryDenyWriteExecute" not in settings(unit)
    why = comments(ENGINE)
    assert "No MemoryDenyWriteExecute=" in why and "numba" in why and "executable" in why


def test_both_units_reach_the_same_shm_dir():
    shm = PROFILE.shm_dir
    engine, telemetry = settings(ENGINE), settings(TELEMETRY)
    for unit in (engine, telemetry):
        # either would give the unit its own /dev/shm (PrivateDevices also drops /dev/hugepages)
        assert unit.get("PrivateDevices", ["no"]) == ["no"]
        assert unit.get("PrivateIPC", ["no"]) == ["no"]
        # the units share a user: RemoveIPC=yes would delete the segments when either stops
        assert unit["RemoveIPC"] == ["no"]
        assert "InaccessiblePaths" not in unit and "TemporaryFileSystem" not in unit
    assert shm in engine["ReadWritePaths"][0].split()
    assert f"-{shm}" in telemetry["ReadOnlyPaths"][0].split()  # telemetry only reads
    assert "ReadWritePaths" not in telemetry


@pytest.mark.parametrize("vcpus", [2, 4, 16, 64])
def test_engine_may_use_its_stage_cores_and_the_housekeeping_cpus(vcpus):
    profile = TuningProfile.for_vcpus(vcpus)
    engine = settings(units.engine_unit(profile))
    allowed = set(parse_cpulist(engine["CPUAffinity"][0]))
    # check_runtime accepts the rendered [cores]: they are CPUs the unit's process may use
    assert set(profile.stage_cores().values()) <= set(profile.isolated) <= allowed
    # and the supervisor has CPUs no stage runs on to move to: the housekeeping ones, no others
    assert allowed - set(profile.stage_cores().values()) >= set(profile.housekeeping)
    assert allowed == set(profile.housekeeping) | set(profile.isolated)
    assert settings(units.telemetry_unit(profile))["CPUAffinity"] == [cpulist(profile.housekeeping)]


def test_shm_dir_follows_the_profile():
    profile = TuningProfile.for_vcpus(8, shm_dir="/dev/shm", install_prefix="/srv/ll")
    engine = settings(units.engine_unit(profile))
    assert engine["ReadWritePaths"] == ["/dev/shm"]
    assert engine["ExecStart"][0].startswith("/srv/ll/current/venv/bin/trading-service ")


def _root(tmp_path: Path, profile: TuningProfile) -> Path:
    """A root with ``profile``'s rendered files, a stand-in trading-service and the stock
    targets."""
    apply(render(profile), tmp_path)
    venv_bin = tmp_path / "opt/lowlat/current/venv/bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "trading-service").write_text("#!/bin/sh\nexit 0\n")
    (venv_bin / "trading-service").chmod(0o755)
    stock = tmp_path / "usr/lib/systemd/system"
    stock.mkdir(parents=True)
    for name in NEEDED_TARGETS:
        if not (STOCK_UNITS / name).is_file():
            pytest.skip(f"{STOCK_UNITS / name} is not installed")
        shutil.copy(STOCK_UNITS / name, stock / name)
    return tmp_path


@pytest.fixture
def host_root(tmp_path) -> Path:
    return _root(tmp_path, PROFILE)


def verify_units(root: Path) -> tuple[int, str]:
    """``systemd-analyze verify`` of the engine, telemetry and tuning units under ``root``."""
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={root}", ENGINE_UNIT, TELEMETRY_UNIT, TUNE_UNIT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


@needs_systemd_analyze
def test_systemd_analyze_verify_is_clean(host_root):
    # verify exits 0 on unknown keys too: any output at all is a finding
    assert verify_units(host_root) == (0, "")


@needs_systemd_analyze
def test_verify_catches_a_broken_unit(host_root):
    unit = host_root / ENGINE_UNIT.lstrip("/")
    unit.write_text(unit.read_text() + "Bogus=1\n")
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={host_root}", ENGINE_UNIT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unknown key 'Bogus'" in result.stderr  # the check above can fail


@needs_systemd_analyze
@pytest.mark.parametrize("name", [units.ENGINE_UNIT, units.TELEMETRY_UNIT, units.CHECK_HOST_UNIT])
def test_security_exposure(tmp_path, name):
    text = {
        units.ENGINE_UNIT: ENGINE,
        units.TELEMETRY_UNIT: TELEMETRY,
        units.CHECK_HOST_UNIT: CHECKER,
    }[name]
    path = tmp_path / name
    path.write_text(text)
    assert exposure(path) <= MAX_EXPOSURE


# ----------------------------------------------------------------------------- the exchange

EXCHANGE = {
    "exchange_recovery": "10.50.0.10:31002",
    "exchange_orders": "10.50.0.11:31003",
    "exchange_cidrs": ("10.50.0.0/24", "fd00:50::/64"),
}
# name -> (the profile's exchange, the address families and addresses its engine may use)
WITH_EXCHANGE = {
    "multicast": (
        {**EXCHANGE, "exchange_market_data": "239.192.0.1:31001"},
        "AF_UNIX AF_INET",
        "10.50.0.0/24 239.192.0.1",  # the IPv6 range: no socket of the host's is IPv6
    ),
    "ipv6-orders": (
        {
            **EXCHANGE,
            "exchange_market_data": "239.192.0.1:31001",
            "exchange_orders": "[fd00:50::11]:3",
        },
        "AF_UNIX AF_INET AF_INET6",
        "10.50.0.0/24 fd00:50::/64 239.192.0.1",
    ),
    "unicast": (
        {**EXCHANGE, "exchange_market_data": "10.42.0.7:31001"},
        "AF_UNIX AF_INET",
        "10.50.0.0/24",  # the feed's address is this host's own: the senders are the ranges
    ),
}


def test_without_an_exchange_the_engine_has_no_network():
    engine = settings(ENGINE)
    assert engine["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert engine["PrivateNetwork"] == ["yes"]
    assert engine["IPAddressDeny"] == ["any"] and "IPAddressAllow" not in engine


@pytest.mark.parametrize("name", list(WITH_EXCHANGE))
def test_with_an_exchange_the_engine_reaches_exactly_it(name):
    exchange, families, allowed = WITH_EXCHANGE[name]
    engine = settings(units.engine_unit(TuningProfile.for_vcpus(4, **exchange)))
    assert engine["RestrictAddressFamilies"] == [families]
    assert engine["PrivateNetwork"] == ["no"]
    assert engine["IPAddressDeny"] == ["any"]
    assert engine["IPAddressAllow"] == [allowed]
    # the rest of the sandbox is the same as without one
    plain = settings(ENGINE)
    changed = {"RestrictAddressFamilies", "PrivateNetwork", "IPAddressAllow"}
    assert {k: v for k, v in engine.items() if k not in changed} == {
        k: v for k, v in plain.items() if k not in changed
    }


@needs_systemd_analyze
@pytest.mark.parametrize("name", list(WITH_EXCHANGE))
def test_with_an_exchange_the_units_verify_and_stay_exposed_no_more(tmp_path, name):
    profile = TuningProfile.for_vcpus(4, **WITH_EXCHANGE[name][0])
    root = _root(tmp_path / "root", profile)
    assert verify_units(root) == (0, "")
    for unit in (ENGINE_UNIT, TELEMETRY_UNIT):
        assert exposure(root / unit.lstrip("/")) <= MAX_EXPOSURE
    # the network costs the engine something: the score sees it (so it can see a regression)
    plain = tmp_path / units.ENGINE_UNIT
    plain.write_text(ENGINE)
    assert exposure(plain) < exposure(root / ENGINE_UNIT.lstrip("/"))


def test_units_log_where_the_cloudwatch_agent_collects():
    import fnmatch

    from ami import units
    from ami.cloudwatch import agent_config
    from contracts.profile import TuningProfile

    profile = TuningProfile.for_vcpus(4)
    collected = [
        f["file_path"]
        for f in agent_config(profile)["logs"]["logs_collected"]["files"]["collect_list"]
    ]
    for name, text in (
        ("engine", units.engine_unit(profile)),
        ("telemetry", units.telemetry_unit(profile)),
    ):
        path = f"{units.LOG_DIR}/{name}.log"
        assert f"StandardOutput=append:{path}" in text and f"StandardError=append:{path}" in text
        assert any(fnmatch.fnmatch(path, pattern) for pattern in collected), (path, collected)


# ----------------------------------------------------------------------------- check-host as root


@needs_systemd_analyze
def test_systemd_analyze_verify_is_clean_for_the_check_host_units(host_root):
    result = subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "verify",
            f"--root={host_root}",
            units.CHECK_HOST_UNIT,
            units.CHECK_HOST_TIMER_UNIT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_checker_runs_as_root_without_a_capability_and_sees_every_process():
    checker = settings(CHECKER)
    assert "User" not in checker and "DynamicUser" not in checker  # root: sees all of /proc
    assert checker["CapabilityBoundingSet"] == checker["AmbientCapabilities"] == [""]
    assert checker["NoNewPrivileges"] == ["yes"] and checker["ProtectSystem"] == ["strict"]
    # the point: no hidden processes, no /proc subset, /dev/ptp* visible by name
    for hiding in ("ProtectProc", "ProcSubset", "PrivateDevices"):
        assert hiding not in checker, hiding
    assert checker["Type"] == ["oneshot"]
    assert checker["ExecStart"] == [units.CHECK_HOST_SCRIPT]
    assert checker["CPUAffinity"] == ["0"]  # housekeeping
    assert checker["StateDirectory"] == ["lowlat"] and checker["StateDirectoryMode"] == ["0755"]
    assert checker["IPAddressDeny"] == ["any"] and checker["IPAddressAllow"] == ["localhost"]
    assert "[Install]" not in CHECKER  # the timer starts it


def test_the_timer_runs_the_checker_every_minute():
    timer = settings(TIMER)
    assert timer["Unit"] == [units.CHECK_HOST_UNIT]
    assert timer["OnUnitActiveSec"] == [f"{units.CHECK_HOST_INTERVAL_S}s"]
    assert "OnBootSec" in timer and timer["WantedBy"] == ["timers.target"]


def test_the_telemetry_unit_can_read_the_checkers_report():
    telemetry = settings(TELEMETRY)
    assert units.CHECK_HOST_REPORT.startswith(units.STATE_DIR + "/")
    assert f"-{units.STATE_DIR}" in telemetry["ReadOnlyPaths"]
    assert telemetry["ProtectSystem"] == ["strict"]  # read-only, not hidden
    for hiding in ("InaccessiblePaths", "TemporaryFileSystem", "StateDirectory"):
        assert hiding not in telemetry
    # the API must see the engine's supervisor in /proc (another user namespace): not hidden
    assert "ProtectProc" not in telemetry
    assert settings(ENGINE)["ProtectProc"] == ["invisible"]


def test_the_check_host_files_are_rendered():
    from ami import render as r

    files = render(PROFILE)
    assert files[r.CHECK_HOST_UNIT] == CHECKER and files[r.CHECK_HOST_TIMER] == TIMER
    assert r.CHECK_HOST_SCRIPT in r.SCRIPTS  # installed 0755
    assert files[r.CHECK_HOST_SCRIPT] == units.check_host_script(PROFILE)


def _run_checker(
    root: Path, exit_code: int, chronyc: str = "chronyc-ok"
) -> subprocess.CompletedProcess:
    """lowlat-check-host under LOWLAT_ROOT=root, with chronyc and trading-service stubbed."""
    stubs = root.parent / "stubs"
    stubs.mkdir(exist_ok=True)
    chronyc_stub = stubs / "chronyc"
    if chronyc == "chronyc-ok":
        chronyc_stub.write_text(
            '#!/bin/sh\necho "A9FEA97B,169.254.169.123,3,1,0,0,0,0,0,0,0,0,16,Normal"\n'
        )
    else:
        chronyc_stub.write_text('#!/bin/sh\necho "506 Cannot talk to daemon" >&2\nexit 1\n')
    chronyc_stub.chmod(0o755)
    service = root / "opt/lowlat/current/venv/bin/trading-service"
    service.parent.mkdir(parents=True, exist_ok=True)
    service.write_text(
        '#!/bin/sh\n[ "$1 $2" = "check-host --json" ] || exit 9\n'
        f'echo \'{{"checks": [], "ok": {"true" if exit_code == 0 else "false"}, '
        '"summary": {"failed": 0}, "host": {}}\'\n'
        f"exit {exit_code}\n"
    )
    service.chmod(0o755)
    (root / units.STATE_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    script = root.parent / "lowlat-check-host"
    script.write_text(units.check_host_script(PROFILE))
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "LOWLAT_ROOT": str(root), "LC_ALL": "C"}
    return subprocess.run(["/bin/bash", str(script)], capture_output=True, text=True, env=env)


def test_the_checker_script_writes_the_report_whole(tmp_path):
    import json

    root = tmp_path / "root"
    report = root / units.CHECK_HOST_REPORT.lstrip("/")
    tracking = root / units.CHRONY_TRACKING.lstrip("/")
    for code, ok in ((0, True), (1, False)):  # tuned, not tuned: both are reports
        result = _run_checker(root, code)
        assert result.returncode == 0, result.stderr
        assert json.loads(report.read_text())["ok"] is ok
        assert oct(report.stat().st_mode & 0o777) == "0o644"  # the service user reads it
    assert tracking.read_text().endswith(",Normal\n")
    assert sorted(p.name for p in report.parent.iterdir()) == ["check-host.json", "chrony-tracking"]


def test_the_checker_script_keeps_the_old_report_when_check_host_gives_none(tmp_path):
    root = tmp_path / "root"
    assert _run_checker(root, 0).returncode == 0
    report = root / units.CHECK_HOST_REPORT.lstrip("/")
    before = report.read_text()
    result = _run_checker(root, 2, chronyc="down")  # bad input: no report
    assert result.returncode == 2 and "no report written" in result.stderr
    assert report.read_text() == before  # left to age: the API notices a stale report
    tracking = root / units.CHRONY_TRACKING.lstrip("/")
    assert tracking.read_text() == "506 Cannot talk to daemon\n"  # chrony_synced shows it
    assert not list(report.parent.glob("*.tmp"))
