"""``fab bench`` documents built from known latencies, for the report and publish tests.

The latencies are put into the service's own buckets, so the percentiles a report shows can be
checked against ``contracts.buckets`` computed on the same samples.
"""

from __future__ import annotations

import numpy as np

from contracts.buckets import HIST_MAX, HIST_SUM, HIST_WORDS, N_BUCKETS
from ops import bench as B
from service.telemetry.report import sparse_histogram

SLO = {"tick_to_order_p50_us": 5.0, "tick_to_order_p99_us": 50.0, "tick_to_order_p999_us": 500.0}


def bucket_of(value: int) -> int:
    """The log-linear bucket of ``value`` ns (contracts/buckets.py's layout)."""
    if value < 16:
        return value
    shift = value.bit_length() - 5
    return min((shift + 1) * 16 + (value >> shift) - 16, N_BUCKETS - 1)


def hist_of(values) -> np.ndarray:
    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    for v in values:
        hist[bucket_of(int(v))] += 1
    hist[HIST_SUM] = int(np.sum(values))
    hist[HIST_MAX] = int(np.max(values))
    return hist


def run_doc(rate: int, values, slo=SLO) -> dict:
    sparse = sparse_histogram(hist_of(values))
    latency = B.latency_figures(sparse)
    return {
        "offered_rate": rate,
        "achieved_rate": rate * 0.99,
        "latency_ns": latency,
        "histogram_ns": sparse,
        "timeline": [
            {"t_s": float(t), "md_messages_per_s": rate * (0.98 + 0.01 * t), "orders_per_s": 1.0}
            for t in range(3)
        ],
        "verdict": B.verdict(latency, slo),
        "exit_code": 0,
    }


def bench_doc() -> dict:
    rng = np.random.default_rng(7)
    fast = rng.integers(400, 3_000, 20_000)  # every objective met
    slow = np.concatenate([rng.integers(800, 4_000, 19_000), rng.integers(60_000, 900_000, 1000)])
    runs = {"100k": run_doc(100_000, fast), "1m": run_doc(1_000_000, slow)}
    return {
        "schema": 1,
        "host": "h1",
        "instance_id": "i-0123456789abcdef0",
        "virtualization": "amazon",
        "emulated": False,
        "started_at": "2026-11-22T00:00:00+00:00",
        "finished_at": "2026-11-22T00:02:10+00:00",
        "duration_s": 60.0,
        "rates": [{"label": k, "offered": r["offered_rate"]} for k, r in runs.items()],
        "profile": {"isolated": "1-3", "housekeeping": "0", "vcpus": 4},
        "cores": {"feed": 1, "engine": 2, "gateway": 3},
        "slo_us": SLO,
        "check_host": {
            "ok": False,
            "summary": {"passed": 5, "failed": 1, "not_applicable": 4},
            "checks": [
                {"name": "thp", "status": "fail", "expected": "[never]", "observed": "always"},
                {"name": "hugepages", "status": "pass", "expected": ">= 512", "observed": "512"},
            ],
        },
        "jitter": {
            "duration_s": 10.0,
            "threshold_ns": 1000,
            "cpus": {
                str(c): {
                    "p50": 40.0,
                    "p99": 80.0 + c,
                    "p999": 900.0 * c,
                    "max": 12_000.0 * c,
                    "gaps_over_threshold_per_s": 3.5 * c,
                    "time_lost_pct": 0.001 * c,
                }
                for c in (1, 2, 3)
            },
        },
        "engine": {"unit": "lowlat-engine.service", "was_active": True, "restarted": True},
        "runs": runs,
        "slo_missed": any(not r["verdict"]["pass"] for r in runs.values()),
        "problems": [],
        "ok": False,
    }
