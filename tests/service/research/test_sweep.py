"""Sweeps: the grid, the checks before any worker starts, and a real run on a LocalCluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import load
from service.research.sweep import SweepError, apply, grid, parse_sweep
from tests.support.lobster import imported_day
from tests.support.paths import REPO


def test_the_grid_is_every_combination_on_every_day():
    dims = parse_sweep(["engine.signal_threshold=0.1,0.2", "latency.order=0,1ms,5ms"])
    tasks = grid(dims, [Path("a.lmd"), Path("b.lmd")])
    assert len(tasks) == 12
    assert tasks[0] == ("a.lmd", {"engine.signal_threshold": "0.1", "latency.order": "0"})
    assert len({(day, tuple(c.items())) for day, c in tasks}) == 12


def test_values_become_config_and_latency():
    config, latency = apply(load(None), {"engine.signal_threshold": "0.3", "latency.order": "2ms"})
    assert config.engine.signal_threshold == 0.3
    assert latency.order_ns == 2_000_000 and latency.feed_ns == 0


@pytest.mark.parametrize(
    ("option", "overrides", "expected"),
    [
        ("threshold=0.1", None, "write section.key=v1,v2"),
        ("engine.signal_threshold=", None, "write section.key=v1,v2"),
        (None, {"engine.nope": "1"}, "engine.nope: no such config key"),
        (None, {"engine.order_qty": "many"}, "engine.order_qty=many: not a int"),
        (None, {"engine.signal_threshold": "-1"}, "[engine] signal_threshold"),
        (None, {"latency.order": "soon"}, "'soon' is not a duration"),
    ],
)
def test_bad_sweeps_are_refused_in_one_line(option, overrides, expected):
    with pytest.raises((SweepError, ValueError)) as caught:
        if option is not None:
            parse_sweep([option])
        else:
            apply(load(None), overrides)
    assert expected in str(caught.value)


def test_a_sweep_on_a_local_cluster(tmp_path):
    for n, rows in ((1, 3000), (2, 5000)):
        imported_day(tmp_path, rows, f"d{n}.lmd")
    report = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "backtest",
            "--data",
            str(tmp_path / "d*.lmd"),
            "--sweep",
            "engine.signal_threshold=0.1,0.2",
            "--sweep",
            "latency.order=0,5ms",
            "--report",
            str(report),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 8
    assert {Path(r["day"]).name for r in rows} == {"d1.lmd", "d2.lmd"}
    assert {(r["engine.signal_threshold"], r["latency.order"]) for r in rows} == {
        ("0.1", "0"),
        ("0.1", "5ms"),
        ("0.2", "0"),
        ("0.2", "5ms"),
    }
    assert (report / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((report / "sweep.json").read_text())["rows"] == rows
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "backtest",
            "--data",
            str(tmp_path / "d*.lmd"),
            "--sweep",
            "engine.signal_treshold=0.1",
            "--report",
            str(tmp_path / "r2"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 2 and "engine.signal_treshold: no such config key" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "r2").exists()
