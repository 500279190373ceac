"""``trading-service run --json`` documents with known figures, made by ``run_figures`` itself
from a stats block that holds them (no pipeline run)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from contracts import stats_layout as L
from service.config import Config
from service.telemetry.report import run_figures
from tests.support.bench_docs import hist_of

BY_NAME = {m.name: m for m in L.CATALOG}


def run_doc() -> dict:
    """``run --json``'s document for a 3 s run with known counters, latencies and timeline."""
    stats = np.zeros(L.STATS_WORDS, dtype=np.int64)
    counters = {"md_messages_processed": 600_000, "md_messages_dropped": 123, "orders_sent": 900,
                "orders_received": 900, "fills": 600, "cancels": 300}  # fmt: skip
    for name, value in counters.items():
        stats[BY_NAME[name].offset] = value
    stats[BY_NAME["orders_rejected"].offset + 2] = 7
    values = np.random.default_rng(1).integers(300, 80_000, 900)
    t2o = BY_NAME["tick_to_order"].offset
    stats[t2o : t2o + len(hist_of(values))] = hist_of(values)
    result = SimpleNamespace(exit_code=0, stats=stats, elapsed_s=3.0, problems=[], n_instruments=8)
    timeline = [
        {
            "t_s": float(t),
            "interval_s": 1.0,
            "md_messages_per_s": 199_000.0 + t,
            "md_dropped_per_s": 41.0,
            "orders_per_s": 300.0,
            "fills_per_s": 200.0,
            "rejects_per_s": 2.0,
        }
        for t in (1, 2, 3)
    ]
    figures = run_figures(result, Config(), timeline, "2026-01-02T03:04:05+00:00")
    return json.loads(json.dumps(figures))  # as a reader of the file sees it
