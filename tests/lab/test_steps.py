"""The lab's verdicts on what it read from the host: the kernel after the reboot against the
profile, and ``fab bench`` under emulation (ran to the end and says it was emulated)."""

from __future__ import annotations

import pytest

from contracts.profile import TuningProfile
from lab import steps

PROFILE = TuningProfile.for_vcpus(2)  # the lab's c6g.large shape: cpu1 isolated


def booted(**changes: object) -> dict[str, object]:
    cmdline = "BOOT_IMAGE=/vmlinuz root=LABEL=lowlat-root ro " + " ".join(PROFILE.kernel_args())
    return {"ok": True, "cmdline": cmdline, "isolated": "1", "nohz_full": "1",
            "hugepages": PROFILE.hugepages, **changes}  # fmt: skip


def test_a_kernel_with_the_profiles_arguments_passes():
    assert steps.check_boot(booted(), PROFILE)["ok"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"cmdline": "BOOT_IMAGE=/vmlinuz ro quiet"}, "missing from /proc/cmdline: "),
        ({"isolated": ""}, "isolated CPUs '', the profile's '1'"),
        ({"nohz_full": "(null)"}, "nohz_full CPUs '(null)'"),
        ({"hugepages": 0}, f"0 hugepages, the profile's {PROFILE.hugepages}"),
    ],
)
def test_each_difference_from_the_profile_is_named(changes, problem):
    result = steps.check_boot(booted(**changes), PROFILE)
    assert not result["ok"]
    assert any(p.startswith(problem) for p in result["problems"]), result["problems"]


def report(**doc: object) -> dict[str, object]:
    run = {"offered_rate": 10_000, "achieved_rate": 9_800.0,
           "latency_ns": {"p50": 80_000, "p99": 900_000, "count": 49_000}}  # fmt: skip
    base = {"virtualization": "qemu", "emulated": True, "problems": [], "slo_missed": True,
            "engine": {"restarted": True}, "runs": {"10k": run}}  # fmt: skip
    first = "**EMULATED HOST (QEMU software emulation): these figures say nothing about a real host"
    return {"doc": {**base, **doc}, "first_line": first}


def test_an_emulated_bench_that_ran_to_the_end_passes_whatever_its_slo_verdict():
    result = steps.bench(report(), fab_exit=1, output=["SLO missed at 10k"])
    assert result["ok"] and result["slo_missed"] and result["runs"]["10k"]["count"] == 49_000


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"emulated": False, "virtualization": "kvm"}, "not recognised as emulated"),
        ({"engine": {"restarted": False}}, "the engine did not start again"),
        ({"problems": ["10k: run failed"]}, "10k: run failed"),
        ({"runs": {}}, "a run measured no message"),
    ],
)
def test_a_bench_that_did_not_run_to_the_end_fails(doc, problem):
    result = steps.bench(report(**doc), fab_exit=1, output=[])
    assert not result["ok"] and problem in " ".join(result["problems"])


def test_a_bench_without_a_report_fails_with_fabs_last_line():
    result = steps.bench(None, fab_exit=1, output=["lowlat-lab  bench: FAILED no release"])
    error = "no bench.json written: lowlat-lab  bench: FAILED no release"
    assert result == {"ok": False, "fab_exit": 1, "error": error}
