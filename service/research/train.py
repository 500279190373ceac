"""Fit the engine's model on recorded data: its own features against the future mid move.

``feature_rows`` runs the live engine's book and feature kernels (``book_set_level``,
``update_book_features``, ``update_trade_flow``, with the config's EWMA alpha and book
window) over a recording and keeps, after every level update with valid features, the
feature row, the instrument, the recorded time and the mid. The target is the mid's move
over ``horizon_ns`` of recorded time, in ticks (the last mid at or before ``t + horizon``).

``fit`` splits the rows in time order (the test rows all come after the training rows, so
nothing of the future leaks into the fit), standardises the features, and fits

- ``linear``: least squares of the move in ticks (numpy's ``lstsq``);
- ``logistic``: P(up) by iteratively reweighted least squares (Newton's method on the
  log-likelihood, a small ridge for stability), on rows whose mid moved;

then maps the weights back to raw feature units, since the engine scores raw features.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.features import FEATURE_NAMES, N_FEATURES
from contracts.records import LEVEL, TRADE
from service.config import Config
from service.kernels.book import book_set_level
from service.kernels.jit import kernel
from service.kernels.signals import update_book_features, update_trade_flow
from service.runtime.model import load_model
from service.runtime.recording import Recording
from service.runtime.state import new_engine_state

RIDGE = 1e-6
MAX_ITERATIONS = 50


class TrainError(ValueError):
    """Data that cannot fit a model (too few rows, no movement)."""


@kernel
def _feature_kernel(book, features, alpha, md, rows, meta):
    """Fill ``rows[k]`` with the features after each level update; ``meta[k]``: time, inst,
    mid. Returns the number of rows."""
    k = 0
    for j in range(md.shape[0]):
        msg = md[j]
        inst = np.int64(msg.instrument)
        if msg.kind == LEVEL:
            book_set_level(book, inst, np.int64(msg.side), msg.price, np.int64(msg.qty))
            if update_book_features(features, book, inst, alpha) and k < rows.shape[0]:
                for f in range(rows.shape[1]):
                    rows[k, f] = features.values[inst, f]
                meta[k, 0] = msg.send_ns
                meta[k, 1] = inst
                meta[k, 2] = features.mid[inst]
                k += 1
        elif msg.kind == TRADE:
            update_trade_flow(features, inst, np.int64(msg.side), np.int64(msg.qty), alpha)
    return k


def feature_rows(recording: Recording, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, N_FEATURES], meta [n, 3]: time ns, instrument, mid ticks)."""
    engine = new_engine_state(config, recording.n_instruments)
    md = np.ascontiguousarray(recording.records)
    rows = np.zeros((len(md), N_FEATURES), np.float64)
    meta = np.zeros((len(md), 3), np.float64)
    n = _feature_kernel(engine.book, engine.features, config.engine.ewma_alpha, md, rows, meta)
    return rows[:n], meta[:n]


def future_moves(meta: np.ndarray, horizon_ns: int) -> np.ndarray:
    """Mid move over ``horizon_ns`` per row, within its instrument: the last mid at or before
    ``t + horizon_ns`` minus this one (NaN when that lies past the recording's end)."""
    moves = np.full(len(meta), np.nan)
    end = meta[:, 0].max() if len(meta) else 0  # the recording's last known moment
    for inst in np.unique(meta[:, 1]):
        idx = np.flatnonzero(meta[:, 1] == inst)
        t, mid = meta[idx, 0], meta[idx, 2]
        later = np.searchsorted(t, t + horizon_ns, side="right") - 1
        valid = t + horizon_ns <= end
        moves[idx[valid]] = mid[later[valid]] - mid[valid]
    return moves


@dataclass
class Fit:
    kind: str
    weights: np.ndarray  # raw feature units, FEATURE_NAMES order
    bias: float
    metrics: dict


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0  # a constant feature gets weight 0 from the fit anyway
    return (x - mean) / sd, mean, sd


def _irls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logistic regression coefficients (intercept first) by Newton's method."""
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(design.shape[1])
    for _ in range(MAX_ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        w = np.clip(p * (1 - p), 1e-9, None)
        hessian = design.T @ (design * w[:, None]) + RIDGE * np.eye(len(beta))
        step = np.linalg.solve(hessian, design.T @ (y - p) - RIDGE * beta)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def fit(features: np.ndarray, moves: np.ndarray, kind: str, test_fraction: float) -> Fit:
    """Fit ``kind`` on the earlier rows, measure on the later ones."""
    usable = np.isfinite(moves) & np.isfinite(features).all(axis=1)
    if kind == "logistic":
        usable &= moves != 0
    x, move = features[usable], moves[usable]
    if len(x) < 50:
        needs = "features valid, a known future" + (", a move" if kind == "logistic" else "")
        raise TrainError(
            f"{len(x)} usable rows ({needs}); at least 50 are needed: give a longer recording "
            "or a shorter --horizon"
        )
    split = int(len(x) * (1 - test_fraction))
    xs, mean, sd = _standardise(x[:split])
    xt = (x[split:] - mean) / sd
    started = time.perf_counter()
    if kind == "linear":
        design = np.column_stack([np.ones(len(xs)), xs])
        beta = np.linalg.lstsq(design, move[:split], rcond=None)[0]
        predicted = beta[0] + xt @ beta[1:]
        actual = move[split:]
        ss = ((actual - actual.mean()) ** 2).sum()
        moved = actual != 0
        metrics = {
            "test_r2": float(1 - ((actual - predicted) ** 2).sum() / ss) if ss > 0 else 0.0,
            "test_correlation": float(np.corrcoef(predicted, actual)[0, 1])
            if predicted.std() > 0 and actual.std() > 0
            else 0.0,
            "test_sign_hit_rate": float(
                (np.sign(predicted[moved]) == np.sign(actual[moved])).mean()
            )
            if moved.any()
            else 0.0,
        }
    else:
        y = (move > 0).astype(np.float64)
        beta = _irls(xs, y[:split])
        p = 1.0 / (1.0 + np.exp(-(beta[0] + xt @ beta[1:])))
        actual = y[split:]
        eps = 1e-12
        metrics = {
            "test_accuracy": float(((p > 0.5) == (actual > 0.5)).mean()),
            "test_base_rate": float(max(actual.mean(), 1 - actual.mean())),
            "test_log_loss": float(
                -(actual * np.log(p + eps) + (1 - actual) * np.log(1 - p + eps)).mean()
            ),
        }
    metrics["fit_s"] = round(time.perf_counter() - started, 4)
    metrics["train_rows"] = split
    metrics["test_rows"] = len(x) - split
    weights = beta[1:] / sd
    bias = float(beta[0] - (beta[1:] * mean / sd).sum())
    return Fit(kind, weights, bias, metrics)


def model_toml(result: Fit, source: str, horizon_ns: int) -> str:
    """The fitted model in the format ``[engine] model_file`` loads."""
    lines = [
        f"# Fitted by `trading-service train` on {source}: {result.kind} model of the mid's",
        f"# move over {horizon_ns / 1e6:g} ms of recorded time, on the engine's own features.",
        "# Out of sample (the last rows in time): "
        + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in result.metrics.items()
        ),
        "",
        f'kind = "{result.kind}"',
        f"bias = {result.bias!r}",
        "",
        "[weights]",
    ]
    lines += [
        f"{name} = {float(w)!r}" for name, w in zip(FEATURE_NAMES, result.weights, strict=True)
    ]
    return "\n".join(lines) + "\n"


def write_model(path: Path, text: str) -> None:
    """Write atomically and read back through the engine's own loader."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    try:
        load_model(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
