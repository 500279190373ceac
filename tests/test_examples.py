"""Every example runs, on small inputs, and says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
