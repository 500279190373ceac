"""``bench --compare``: each figure's change, a regression flagged only beyond both runs'
spreads and on the worse side, and an earlier run that is not a bench document refused in one
line before anything is measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.bench.compare import CompareError, compare, load_document


def doc(ring_vs_cpp: float, spread: list[float], rtt_vs_floor: float = 2.0) -> dict:
    return {
        "floor_rtt_ns": {"untimed_mean": 130.0, "p50": 300.0, "p99": 400.0},
        "ring_items_per_s": 5e7,
        "ratios": {"ring_vs_cpp": ring_vs_cpp, "ring_rtt_p50_vs_floor": rtt_vs_floor},
        "ratio_spread": {"ring_vs_cpp": spread},
    }


def verdicts(old: dict, new: dict) -> dict[str, str]:
    return {c["figure"]: c["verdict"] for c in compare(old, new)}


def test_a_drop_beyond_both_spreads_is_a_regression_and_within_them_only_worse():
    old = doc(1.2, [1.1, 1.3])
    assert verdicts(old, doc(0.8, [0.7, 0.9]))["ring_vs_cpp"] == "REGRESSION"
    assert verdicts(old, doc(1.0, [0.9, 1.15]))["ring_vs_cpp"] == "worse"  # spreads overlap
    assert verdicts(old, doc(1.5, [1.4, 1.6]))["ring_vs_cpp"] == "better"
    assert verdicts(old, doc(1.2, [1.0, 1.4]))["ring_vs_cpp"] == "same"


def test_lower_is_better_for_latencies_and_a_figure_without_spread_is_never_flagged():
    old, new = doc(1.2, [1.1, 1.3], rtt_vs_floor=2.0), doc(1.2, [1.1, 1.3], rtt_vs_floor=9.0)
    changes = {c["figure"]: c for c in compare(old, new)}
    assert changes["ring_rtt_p50_vs_floor"]["better"] == "lower"
    assert changes["ring_rtt_p50_vs_floor"]["verdict"] == "worse"  # 4.5x, but no spread
    assert changes["ring_rtt_p50_vs_floor"]["change"] == pytest.approx(3.5)
    assert changes["ring_items_per_s"]["better"] == "higher"
    assert changes["floor_rtt_ns.untimed_mean"]["verdict"] == "same"


def test_an_earlier_run_that_is_not_a_bench_document_is_one_line(tmp_path):
    bad = tmp_path / "old.json"
    bad.write_text('{"machine": {}}')
    with pytest.raises(CompareError, match="no ratios"):
        load_document(bad)
    bad.write_text("{not json")
    with pytest.raises(CompareError, match="not JSON"):
        load_document(bad)
    # the CLI refuses it before measuring anything: one line, exit 2
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "--compare", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"trading-service bench: --compare {bad}: not JSON")
    missing = tmp_path / "none.json"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "--compare", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "cannot read it" in result.stderr


def test_the_document_round_trips_through_json():
    old = doc(1.2, [1.1, 1.3])
    assert compare(json.loads(json.dumps(old)), old) == compare(old, old)
