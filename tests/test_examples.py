"""Every example runs, on small inputs, and says what it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_engine import running_engine
from tests.support.paths import REPO

EXAMPLES = REPO / "examples"


def run(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def test_every_example_is_listed_and_tested():
    listed = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts and all(f"`{name}`" in listed for name in scripts)
    tested = Path(__file__).read_text()
    assert all(name in tested for name in scripts)


def test_ring_producer_consumer():
    result = run(EXAMPLES / "ring_producer_consumer.py", "--records", "200000")
    assert result.returncode == 0, result.stderr
    assert "200,000 records through the ring, 0 out of order" in result.stdout


@pytest.mark.slow
def test_lobster_replay():
    result = run(EXAMPLES / "lobster_replay.py", "--rows", "2000", "--speed", "100")
    assert result.returncode == 0, result.stderr
    assert "imported 2,000 messages: 0 mismatches" in result.stdout
    assert "at the recording's pace x100" in result.stdout


def test_train_and_backtest(tmp_path):
    out = tmp_path / "report"
    result = run(EXAMPLES / "train_and_backtest.py", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "1. imported 20,000 messages, 0 mismatches" in result.stdout
    assert "3. backtest: P&L" in result.stdout
    for name in ("equity.png", "summary.md", "stats.json", "model.toml"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_live_reader(tmp_path):
    nothing = tmp_path / "nothing.toml"
    nothing.write_text(f'[service]\nshm_dir = "{tmp_path}"\nshm_prefix = "nobody-here"\n')
    refused = run(EXAMPLES / "live_reader.py", "--config", nothing)
    assert refused.returncode == 1 and not refused.stdout
    assert refused.stderr.count("\n") == 1 and "no such segment" in refused.stderr
    with running_engine(tmp_path, "[feed]\nrate = 50000\n") as config:
        reader = (EXAMPLES / "live_reader.py", "--config", config)
        polled = run(*reader, "--count", "3", "--interval", "0.1", "--json")
        table = run(*reader, "--count", "1")
    assert polled.returncode == 0, polled.stderr
    docs = [json.loads(line) for line in polled.stdout.splitlines()]
    assert len(docs) == 3 and docs[0]["heartbeat_ns"] < docs[-1]["heartbeat_ns"]
    for doc in docs:
        assert [row["instrument"] for row in doc["instruments"]] == list(range(8))
        assert any(0 < row["bid_px"] < row["ask_px"] for row in doc["instruments"])
        assert {"imbalance", "score", "position"} <= set(doc["instruments"][0])
    assert table.returncode == 0, table.stderr
    assert "snapshot 1: 8 instruments" in table.stdout and "imbalance" in table.stdout
