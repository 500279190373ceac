"""Fitting the engine's model: known weights come back, the split keeps the future out,
the file loads into the engine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from contracts.features import FEATURE_NAMES, N_FEATURES
from service.research.train import TrainError, fit, future_moves, model_toml, write_model
from service.runtime.model import load_model
from tests.support.lobster import imported_day
from tests.support.paths import REPO


def synthetic(n, rng):
    """Features with offsets and scales unlike each other, as the engine's are."""
    scale = np.array([0.05, 0.5, 2.0, 0.4, 0.3, 0.6])[:N_FEATURES]
    offset = np.array([0.0, 0.1, 1.5, 0.0, 0.5, -0.1])[:N_FEATURES]
    return offset + scale * rng.standard_normal((n, N_FEATURES))


def test_least_squares_recovers_weights_in_raw_units():
    rng = np.random.default_rng(1)
    x = synthetic(20_000, rng)
    w = np.array([4.0, -1.0, 0.0, 2.0, 0.5, -3.0])
    y = 0.25 + x @ w + 0.01 * rng.standard_normal(len(x))
    result = fit(x, y, "linear", test_fraction=0.3)
    assert np.allclose(result.weights, w, atol=0.05)
    assert result.bias == pytest.approx(0.25, abs=0.05)
    assert result.metrics["test_r2"] > 0.99
    assert result.metrics["train_rows"] == 14_000 and result.metrics["test_rows"] == 6_000


def test_irls_recovers_a_logistic_model():
    rng = np.random.default_rng(2)
    x = synthetic(60_000, rng)
    w = np.array([10.0, 0.0, -0.5, 2.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-(-0.3 + x @ w)))
    moves = np.where(rng.random(len(x)) < p, 1.0, -1.0)
    result = fit(x, moves, "logistic", test_fraction=0.25)
    assert np.allclose(result.weights, w, atol=0.25 * np.abs(w).max() * 0.2 + 0.1)
    assert result.metrics["test_accuracy"] > result.metrics["test_base_rate"]


def test_the_test_rows_are_the_latest_so_a_changed_market_shows():
    """The relation flips in the last third: a time-ordered split must see it out of sample
    (a shuffled split would not)."""
    rng = np.random.default_rng(3)
    x = synthetic(9_000, rng)
    y = x[:, 0] * 10
    y[6_000:] *= -1
    result = fit(x, y, "linear", test_fraction=1 / 3)
    assert result.metrics["test_r2"] < 0


def test_future_moves_use_recorded_time_within_each_instrument():
    meta = np.array(
        [[0, 0, 100.0], [50, 1, 7.0], [60, 0, 101.0], [100, 0, 103.0], [120, 1, 9.0], [250, 0, 99]]
    )
    moves = future_moves(meta, 100)
    assert moves[0] == 3.0  # instrument 0 at t=100
    assert moves[2] == pytest.approx(2.0)  # t=60 -> last at or before 160: 103
    assert moves[1] == 2.0  # instrument 1 at 120 (within 150)
    assert moves[4] == 0.0  # nothing of instrument 1 changed by 220, and 250 is recorded
    assert np.isnan(moves[5])  # 350 is past the recording's end


def test_too_few_rows_is_one_clear_error():
    with pytest.raises(TrainError, match="at least 50 are needed"):
        fit(np.zeros((10, N_FEATURES)), np.ones(10), "linear", 0.3)


def test_the_written_model_loads_into_the_engine(tmp_path):
    rng = np.random.default_rng(4)
    x = synthetic(1000, rng)
    result = fit(x, x[:, 3] - x[:, 1], "linear", 0.3)
    path = tmp_path / "m.toml"
    write_model(path, model_toml(result, "synthetic", 100_000_000))
    model = load_model(path)
    assert not model.logistic
    assert np.allclose(model.weights, result.weights)
    assert "test_r2" in path.read_text()
    assert set(FEATURE_NAMES) <= set(path.read_text().split())


def test_train_then_backtest_from_the_command_line(tmp_path):
    day = imported_day(tmp_path, 8000)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )

    trained = cli("train", "--data", day, "--horizon", "500ms", "--out", tmp_path / "m.toml")
    assert trained.returncode == 0, trained.stderr
    assert "test_accuracy" in trained.stdout
    (tmp_path / "c.toml").write_text(f'[engine]\nmodel_file = "{tmp_path / "m.toml"}"\n')
    backtest = cli(
        "backtest", "--data", day, "--config", tmp_path / "c.toml", "--report", tmp_path / "r"
    )
    assert backtest.returncode == 0, backtest.stderr
    assert (tmp_path / "r" / "stats.json").exists()
    bad = cli("train", "--data", day, "--horizon", "soon", "--out", tmp_path / "x.toml")
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
    v1 = tmp_path / "v1.lmd"
    assert cli("record", "--out", v1, "--messages", "100").returncode == 0
    old = cli("train", "--data", v1, "--out", tmp_path / "x.toml")
    assert old.returncode == 2 and "no recorded times" in old.stderr
    assert not (tmp_path / "x.toml").exists()
