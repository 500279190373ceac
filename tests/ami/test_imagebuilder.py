"""The Image Builder component, for each host OS: a well-formed schema 1.0 document whose steps
use only files the tuning installs, that refuses a kernel without CONFIG_NO_HZ_FULL, and whose
check-host gate fails the image when any check that applies fails."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import subprocess
import sys

import pytest
import yaml

from ami import imagebuilder as IB
from ami.hostos import host_os
from contracts.profile import TuningProfile, load_profile
from tests.support.rehearse import rehearse

# AWSTOE action modules a Linux component may use (a subset of the documented ones)
KNOWN_ACTIONS = {
    "ExecuteBash",
    "ExecuteBinary",
    "Reboot",
    "UpdateOS",
    "S3Download",
    "WebDownload",
    "CreateFile",
    "CreateFolder",
    "AppendFile",
    "CopyFile",
    "MoveFile",
    "DeleteFile",
    "SetFileOwner",
    "SetFolderOwner",
    "SetFilePermissions",
    "SetFolderPermissions",
}

PROFILES = [
    TuningProfile.for_vcpus(4),
    TuningProfile.for_vcpus(16, install_prefix="/srv/lowlat"),
    TuningProfile.for_vcpus(4, os="ubuntu2404"),
]


@pytest.fixture(params=PROFILES, ids=lambda p: f"{p.os}-{p.vcpus}vcpu")
def profile(request) -> TuningProfile:
    return request.param


def _steps(doc: dict, phase: str | None = None) -> list[dict]:
    return [s for p in doc["phases"] if phase in (None, p["name"]) for s in p["steps"]]


def _text(step: dict) -> str:
    return json.dumps(step["inputs"])


def test_document_is_yaml_of_schema_1_0(profile):
    text = IB.component_document(profile)
    doc = yaml.safe_load(text)
    assert doc == IB.component_data(profile)
    assert doc["schemaVersion"] == 1.0
    assert doc["name"] and doc["description"]
    assert [p["name"] for p in doc["phases"]] == ["build", "validate", "test"]


def test_every_step_is_well_formed(profile):
    doc = IB.component_data(profile)
    for phase in doc["phases"]:
        names = [s["name"] for s in phase["steps"]]
        assert len(names) == len(set(names)), f"duplicate step names in {phase['name']}"
        for step in phase["steps"]:
            assert set(step) == {"name", "action", "inputs"}, step
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", step["name"])
            assert step["action"] in KNOWN_ACTIONS
            assert step["inputs"]
            if step["action"] == "ExecuteBash":
                assert all(isinstance(c, str) for c in step["inputs"]["commands"])


def test_wheel_comes_from_the_s3_parameter(profile):
    doc = IB.component_data(profile)
    ((name, spec),) = [item for p in doc["parameters"] for item in p.items()]
    assert name == "WheelS3Uri"
    assert spec["type"] == "string"
    # the wheel is used by its own file name, as pip requires
    assert "$(basename '{{ WheelS3Uri }}')" in " ".join(_text(s) for s in _steps(doc, "build"))
    (download,) = [s for s in _steps(doc, "build") if s["action"] == "S3Download"]
    assert download["inputs"][0]["source"] == "{{ WheelS3Uri }}"


def test_build_installs_applies_and_reboots_in_order(profile):
    build = _steps(IB.component_data(profile), "build")
    names = [s["name"] for s in build]
    joined = [_text(s) for s in build]

    def index(fragment: str) -> int:
        return next(i for i, t in enumerate(joined) if fragment in t)

    packages = joined[names.index("InstallPackages")]
    for package in ("irqbalance", "ethtool", "chrony", "amazon-cloudwatch-agent"):
        assert package in packages
    if profile.os == "al2023":
        for package in ("python3.11", "amazon-cloudwatch-agent", "irqbalance", "ethtool"):
            assert package in packages
        assert "dnf install -y" in packages
        assert "apt-get" not in packages
    else:  # Ubuntu: apt, its Python with venv, and AWS's arm64 .deb of the agent
        assert "apt-get -o DPkg::Lock::Timeout=600" in packages and "dnf" not in packages
        assert "python3.12 python3.12-venv" in packages
        assert "ubuntu/arm64/latest/amazon-cloudwatch-agent.deb" in packages
    python = host_os(profile).python
    assert f"{python} -m venv" in joined[names.index("InstallRelease")]
    assert names[0] == "RequireNoHzFull"  # before anything is installed
    order = [
        index("pip install"),
        index('"path": "/etc/lowlat/profile.toml"'),
        index("-m ami apply --root / --profile /etc/lowlat/profile.toml"),
        index("agent_files"),
        index("lowlat-apply-kernel-args"),
    ]
    assert order == sorted(order)
    assert build[-1]["action"] == "Reboot"
    assert f"{profile.install_prefix}/current/venv/bin/python -m ami apply" in joined[order[2]]


def test_profile_written_to_the_image_loads_back_equal(profile, tmp_path):
    (create,) = [s for s in _steps(IB.component_data(profile)) if s["action"] == "CreateFile"]
    (entry,) = create["inputs"]
    assert entry["path"] == IB.PROFILE_PATH
    path = tmp_path / "profile.toml"
    path.write_text(entry["content"])
    assert load_profile(path, vcpus=2) == profile


def test_validate_and_test_gate_on_check_host(profile):
    doc = IB.component_data(profile)
    for phase in ("validate", "test"):
        text = " ".join(_text(s) for s in _steps(doc, phase))
        assert "trading-service check-host --profile /etc/lowlat/profile.toml --json" in text
        assert "cmdline,isolated,hugepages" in text


def _run_check(tmp_path, report, exit_status: int = 0) -> subprocess.CompletedProcess:
    """The gate's script on ``report``, as if check-host had exited with ``exit_status``."""
    path = tmp_path / "check-host.json"
    path.write_text(json.dumps(report))
    required = ",".join(IB.REQUIRED_HOST_CHECKS)
    return subprocess.run(
        [sys.executable, "-", str(path), str(exit_status), required],
        input=IB.CHECK_HOST_SCRIPT,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "report",
    [
        {
            "checks": [
                {"name": "cmdline", "status": "pass"},
                {"name": "isolated", "status": "pass"},
                {"name": "hugepages", "status": "pass"},
                {"name": "governor", "status": "n/a"},
            ]
        },
        {"cmdline": "pass", "isolated": {"status": "passed"}, "hugepages": {"ok": True}},
    ],
)
def test_check_script_passes_a_tuned_host(tmp_path, report):
    result = _run_check(tmp_path, report)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("exit_status", [1, 0])  # the report alone blocks, whatever the exit
@pytest.mark.parametrize(
    "report",
    [
        {
            "checks": [
                {"name": "cmdline", "status": "pass"},
                {"name": "isolated", "status": "fail"},
                {"name": "hugepages", "status": "pass"},
            ]
        },
        {"cmdline": "pass", "isolated": "pass"},  # hugepages missing
        {"cmdline": "n/a", "isolated": "pass", "hugepages": "pass"},
    ],
)
def test_check_script_fails_an_untuned_host(tmp_path, report, exit_status):
    result = _run_check(tmp_path, report, exit_status)
    assert result.returncode == 1
    assert "required check-host checks failed" in result.stderr


PASSING = {"checks": [{"name": n, "status": "pass"} for n in IB.REQUIRED_HOST_CHECKS]}


@pytest.mark.parametrize(
    ("extra", "blocks"),
    [
        ({"name": "thp", "status": "fail"}, True),  # not required, but it applies: it blocks
        ({"name": "irqbalance_ban", "status": "fail"}, True),
        ({"name": "smt", "status": "not_applicable"}, False),  # does not apply: never blocks
        ({"name": "chrony", "status": "warn"}, True),  # a status the gate does not know
    ],
)
def test_every_check_that_applies_gates_the_image(tmp_path, extra, blocks):
    report = {"checks": [*PASSING["checks"], extra]}
    result = _run_check(tmp_path, report, 1 if extra["status"] == "fail" else 0)
    assert result.returncode == (1 if blocks else 0), result.stdout + result.stderr
    if blocks:
        assert f"check-host {extra['name']}: FAIL" in result.stdout
        assert "check-host checks that apply to this host failed: " + extra["name"] in (
            result.stderr
        )


def test_a_failing_exit_status_blocks_even_a_clean_report(tmp_path):
    # check-host exits 1 only when a check fails: a clean report with 1 is a report to distrust
    result = _run_check(tmp_path, PASSING, exit_status=1)
    assert result.returncode == 1
    assert "check-host exited 1 though no check failed" in result.stderr


def test_no_report_at_all_blocks(tmp_path):
    path = tmp_path / "check-host.json"
    path.write_text("Traceback (most recent call last):\n")
    result = subprocess.run(
        [sys.executable, "-", str(path), "2", ",".join(IB.REQUIRED_HOST_CHECKS)],
        input=IB.CHECK_HOST_SCRIPT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "check-host exited 2 without a JSON report" in result.stderr


@pytest.mark.parametrize(("status", "exit_code"), [("pass", 0), ("fail", 1)])
@pytest.mark.parametrize("phase", ["validate", "test"])
def test_check_host_step_runs_under_bash(profile, tmp_path, phase, status, exit_code):
    """The step's script as bash runs it, with a stand-in check-host and this Python."""
    (step,) = _steps(IB.component_data(profile), phase)
    (script,) = step["inputs"]["commands"]
    fake = tmp_path / "trading-service"
    report = {"checks": [{"name": n, "status": status} for n in IB.REQUIRED_HOST_CHECKS]}
    # as check-host does: exit 0 only when no check failed
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(report)}'\nexit {exit_code}\n")
    fake.chmod(0o755)
    script = (
        script.replace(IB.venv_bin(profile, "trading-service"), str(fake))
        .replace(IB.venv_bin(profile, "python"), sys.executable)
        .replace(IB.CHECK_HOST_OUTPUT, str(tmp_path / "out.json"))
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert f"check-host hugepages: {'pass' if exit_code == 0 else 'FAIL'}" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("ami.check") is None, reason="ami.check missing")
@pytest.mark.parametrize(("failing", "exit_code"), [(None, 0), ("isolated", 1), ("thp", 1)])
def test_check_script_reads_the_real_report_format(tmp_path, failing, exit_code):
    """check-host's own JSON: every check that applies gates the image, required or not."""
    from ami.check import FAIL, NA, PASS, Check, Report

    names = [*IB.REQUIRED_HOST_CHECKS, "thp", "governor"]
    checks = [
        Check(n, FAIL if n == failing else NA if n == "governor" else PASS, "x", "y") for n in names
    ]
    report = Report(checks)
    result = _run_check(tmp_path, report.to_json(), 0 if report.ok else 1)
    assert result.returncode == exit_code, result.stdout + result.stderr


KERNEL = "6.8.0-1012-aws"


def _nohz_full_step(profile: TuningProfile) -> str:
    (step,) = [
        s for s in _steps(IB.component_data(profile), "build") if s["name"] == "RequireNoHzFull"
    ]
    (script,) = step["inputs"]["commands"]
    return script


@pytest.mark.parametrize(
    ("config", "where", "ok"),
    [
        ("CONFIG_NO_HZ_COMMON=y\nCONFIG_NO_HZ_FULL=y\n", "boot", True),
        ("CONFIG_NO_HZ_IDLE=y\n# CONFIG_NO_HZ_FULL is not set\n", "boot", False),
        ("CONFIG_NO_HZ_FULL=y\n", "proc", True),  # no /boot/config-*: the running kernel's own
        ("CONFIG_NO_HZ_FULLISH=y\n", "proc", False),  # the whole line, not a prefix
        (None, None, False),  # no config anywhere: cannot tell, so no image
    ],
)
def test_a_kernel_without_nohz_full_fails_the_build_in_one_line(
    profile, tmp_path, config, where, ok
):
    root = tmp_path / "root"
    if where == "boot":
        (root / "boot").mkdir(parents=True)
        (root / f"boot/config-{KERNEL}").write_text(config)
    elif where == "proc":
        (root / "proc").mkdir(parents=True)
        (root / "proc/config.gz").write_bytes(gzip.compress(config.encode()))
    run = rehearse(
        _nohz_full_step(profile),
        root,
        ("uname",),
        passthrough=("gzip",),
        effects={"uname": f"echo {KERNEL}"},
    )
    assert run.unexpected == []
    if ok:
        assert run.result.returncode == 0, run.result.stderr
        assert run.result.stdout.startswith(f"kernel {KERNEL}: CONFIG_NO_HZ_FULL=y")
        return
    assert run.result.returncode == 1
    (line,) = run.result.stderr.splitlines()  # one clear line, saying what to do
    assert line.startswith("lowlat: ") and "CONFIG_NO_HZ_FULL=y" in line and KERNEL in line
    assert ("parent image" in line) and ("without" in line or "cannot tell" in line)


_PATH = re.compile(r"(?:/usr/local/sbin|/etc/lowlat)/[A-Za-z0-9._-]+")


def _referenced_paths(doc: dict) -> set[str]:
    return {m for s in _steps(doc) for m in _PATH.findall(_text(s))}


def test_referenced_tuning_files_are_required_or_created(profile):
    doc = IB.component_data(profile)
    created = {e["path"] for s in _steps(doc) if s["action"] == "CreateFile" for e in s["inputs"]}
    assert _referenced_paths(doc) <= set(IB.REQUIRED_FILES) | created
    assert "/usr/local/sbin/lowlat-apply-kernel-args" in _referenced_paths(doc)


@pytest.mark.skipif(importlib.util.find_spec("ami.render") is None, reason="ami.render missing")
def test_required_files_are_installed_by_apply(profile):
    from ami.render import render

    rendered = {"/" + str(path).lstrip("/") for path in render(profile)}
    assert set(IB.REQUIRED_FILES) <= rendered


@pytest.mark.skipif(importlib.util.find_spec("ami.units") is None, reason="ami.units missing")
def test_release_layout_matches_the_units(profile):
    from ami import units

    if not hasattr(units, "venv_bin"):
        pytest.skip("ami.units has no venv_bin")
    assert IB.venv_bin(profile, "trading-service") == units.venv_bin(profile, "trading-service")
    assert units.TUNE_UNIT == IB.TUNE_UNIT


def test_document_fits_inline_in_the_component_resource(profile):
    """AWS::ImageBuilder::Component Data takes at most 16,000 characters inline."""
    assert len(IB.component_document(profile)) <= 16_000
