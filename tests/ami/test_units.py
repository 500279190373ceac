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


@pytest.fixture
def host_root(tmp_path) -> Path:
    """A root with the rendered files, a stand-in trading-service and the stock targets."""
    apply(render(PROFILE), tmp_path)
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


@needs_systemd_analyze
def test_systemd_analyze_verify_is_clean(host_root):
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={host_root}", ENGINE_UNIT, TELEMETRY_UNIT, TUNE_UNIT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys too: any output at all is a finding
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


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
@pytest.mark.parametrize("name", [units.ENGINE_UNIT, units.TELEMETRY_UNIT])
def test_security_exposure(tmp_path, name):
    text = {units.ENGINE_UNIT: ENGINE, units.TELEMETRY_UNIT: TELEMETRY}[name]
    path = tmp_path / name
    path.write_text(text)
    assert exposure(path) <= MAX_EXPOSURE


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
