"""`trading-service bench` as scripts consume it: every documented key, as numbers.

The figures themselves are not asserted against targets here (shared, noisy machines): the
benchmark prints them and docs/performance.md records them. What is checked is that a run
produces every figure, that the ones that must agree do, and that bad input is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "service.cli"]
pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
def test_quick_bench_writes_every_figure_as_numbers(tmp_path):
    out, earlier = tmp_path / "bench.json", tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"ratios": {"ring_vs_mpqueue": 1.0, "gone": 2.0}}))
    result = subprocess.run(
        [*CLI, "bench", "--quick", "--json", str(out), "--compare", str(earlier)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "ratios measured in this run" in result.stdout
    assert f"compared with {earlier}" in result.stdout
    f = json.loads(out.read_text())
    for key in ("floor_rtt_ns", "mpqueue_rtt_ns"):
        assert all(_number(f[key][p]) for p in ("p50", "p99")), key
    for p in ("p50", "p99", "p999", "max"):
        assert _number(f["ring_rtt_ns"][p])
    for key in (
        "ring_items_per_s",
        "ring_batch_items_per_s",
        "mpqueue_items_per_s",
        "book_updates_per_s",
        "inference_per_s",
    ):
        assert _number(f[key]) and f[key] >= 0, key
    assert _number(f["order_book_msgs_per_s"]) and f["order_book_msgs_per_s"] > 0
    assert _number(f["backtest_events_per_s"]) and f["backtest_events_per_s"] > 0
    for e in [f[key][rate] for key in ("e2e", "e2e_split") for rate in ("100000", "1000000")]:
        assert all(_number(e[k]) for k in ("p50", "p90", "p99", "p999", "max", "drops")), e
        assert e["p50"] <= e["p90"] <= e["p99"] <= e["p999"] <= e["max"]
        assert e["orders"] > 0 and e["messages"] > 0
    assert _number(f["scrape_interference"]) and f["scrape_interference"] > 0
    assert f["scrape_interference_runs"]["scrapes_last_run"] > 0
    assert f["scrape_interference_runs"]["scrape_errors_last_run"] == 0
    # ten dashboard pages polled the API through the paged runs, and it answered them all
    assert _number(f["dashboard_interference"]) and f["dashboard_interference"] > 0
    assert f["scrape_interference_runs"]["page_requests_last_run"] >= 10
    assert f["scrape_interference_runs"]["page_errors_last_run"] == 0
    assert _number(f["metrics_render_cpu_us"]) and f["metrics_render_cpu_us"] > 0
    load = f["metrics_under_load"]
    if "error" not in load:  # hey installed
        assert load["errors"] == 0 and load["ok"] == load["requests"]
        assert 0 < load["p50_ms"] <= load["p99_ms"]
    assert f["floor_rtt_ns"]["p50"] <= f["floor_rtt_ns"]["p99"]
    # the untimed floor has no clock read in its loop: below the timed one, which pays two
    assert 0 < f["floor_rtt_ns"]["untimed_mean"] < f["floor_rtt_ns"]["p50"]
    assert 0 < f["clock_read_ns"] < f["floor_rtt_ns"]["p50"]
    assert f["ring_items_per_s"] > f["mpqueue_items_per_s"]  # the whole point of the ring
    assert set(f["machine"]) >= {"cpu_model", "cores", "kernel"}
    assert set(f["e2e_layout"]) == set(f["e2e_split_layout"]) == {"feed", "engine", "gateway"}
    assert f["e2e_split_layout"]["feed"] != f["e2e_split_layout"]["engine"]
    # capacity: each source swept from 1M msgs/s, and what it sustained is a rate it carried
    for source in ("simulator", "replay"):
        runs = f["rate_sweep"][source]
        assert "1000000" in runs and runs["1000000"]["messages"] > 0, source
        sustained = f["max_sustained_rate_msgs_per_s"][source]
        assert sustained == 0 or runs[str(sustained)]["drops"] == 0
    costs = f["stage_cost_ns"]
    steps = ("feed_simulator", "feed_replay", "book", "features", "model", "strategy", "risk")
    assert all(_number(costs[k]) and costs[k] >= 0 for k in steps), costs
    # the whole loop costs more than its feed alone (it runs the engine and gateway too)
    assert costs["fused_replay"] > costs["feed_replay"] > 0
    assert costs["batching_per_order"] > costs["batching"] >= 0
    # each paired ratio is the median of its turns' own, within their spread
    lo, hi = f["ratio_spread"]["ring_vs_mpqueue"]
    assert lo <= f["ratios"]["ring_vs_mpqueue"] <= hi
    assert len(f["alternating_runs"]["ring"]) == len(f["alternating_runs"]["mpqueue"]) == 3
    (change,) = f["comparison"]["changes"]  # the one figure both runs have
    assert change["figure"] == "ring_vs_mpqueue" and change["old"] == 1.0
    assert f["ratios"]["order_book_million_msgs_per_s"] == pytest.approx(
        f["order_book_msgs_per_s"] / 1e6
    )
    assert f["ratios"]["backtest_million_events_per_s"] == pytest.approx(
        f["backtest_events_per_s"] / 1e6
    )


@pytest.mark.parametrize("cpus", ["0", "0,0", "a,b", "0,4096"])
def test_bad_cpus_are_refused_with_one_line(cpus):
    result = subprocess.run(
        [*CLI, "bench", "--cpus", cpus], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "--cpus" in result.stderr and "Traceback" not in result.stderr
