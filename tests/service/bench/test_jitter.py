"""`trading-service jitter`: a short real run, one-line errors for bad --cpus, the probe itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from service.bench.jitter import measure_jitter

CLI = [sys.executable, "-m", "service.cli", "jitter"]


def run(*args, timeout=180):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_short_run_on_one_cpu_gives_sane_figures():
    cpu = max(os.sched_getaffinity(0))
    result = run("--cpus", cpu, "--duration", "0.2", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["duration_s"] == 0.2 and doc["threshold_ns"] == 1000
    figures = doc["cpus"][str(cpu)]
    assert 0 < figures["p99"] <= figures["p999"] <= figures["max"]
    assert figures["p99"] < 1_000_000  # a clock read is far below a millisecond
    assert figures["max"] < 200_000_000  # no gap longer than the run itself
    assert figures["gaps_over_threshold_per_s"] >= 0
    assert 0 <= figures["time_lost_pct"] < 100


@pytest.mark.parametrize(
    ("cpus", "message"),
    [
        ("x-1", "not a cpulist"),
        ("3-1", "not a cpulist"),
        (",", "names no CPU"),
        ("4096", "not available to this process"),
    ],
)
def test_bad_cpus_is_one_line_and_exit_2(cpus, message):
    result = run("--cpus", cpus, "--duration", "0.2")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("trading-service jitter: --cpus")


def test_duration_must_be_positive():
    result = run("--cpus", "0", "--duration", "0")
    assert result.returncode == 2 and "must be a number of seconds > 0" in result.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_jitter_probe_reports_every_cpu():
    cpus = sorted(os.sched_getaffinity(0))[:2]
    figures = measure_jitter(cpus, 0.2)
    assert set(figures) == {str(c) for c in cpus}
    for h in figures.values():
        assert 0 < h["p50"] <= h["p99"] <= h["max"]
        assert 0 <= h["time_lost_pct"] < 100
