"""Cheap stand-ins for the bench's measures: a whole run's orchestration in milliseconds.

The figures are made up but consistent (percentiles in order, checksums irrelevant), so the
document a fake run produces can be printed and checked like a real one.
"""

from __future__ import annotations

from service.bench.baseline import BaselineError
from service.bench.measures import CppRing
from service.bench.run import Measures

FLOOR_P50 = 400.0  # timed
FLOOR_UNTIMED = 250.0  # the ratios' floor
CLOCK_READ = 20.0
STAGE_COSTS = {
    "feed_simulator": 30.0,
    "feed_replay": 8.0,
    "book": 10.0,
    "features": 8.0,
    "model": 9.0,
    "strategy": 5.0,
    "risk": 0.5,
    "fused_replay": 60.0,
    "fused_simulator": 90.0,
    "batching": 0.3,
    "batching_per_order": 60.0,
}


def summary(p50: float) -> dict[str, float]:
    """Shaped like contracts.buckets.summary."""
    return {
        "count": 1000,
        "mean": p50 * 1.1,
        "p50": p50,
        "p90": p50 * 1.5,
        "p99": p50 * 2,
        "p999": p50 * 3,
        "max": p50 * 10,
    }


class FakeMeasures:
    """Every measure, recording the pipeline runs asked for; drops from ``drops_from`` msgs/s."""

    def __init__(self, drops_from: int = 10**12, cpp: bool = True):
        self.drops_from, self.cpp = drops_from, cpp
        self.e2e_calls: list[dict] = []
        self.recordings: list[tuple] = []

    def jitter(self, cpus, duration_s):
        return {
            str(c): {
                "p50": 50.0,
                "p99": 80.0,
                "p999": 2000.0,
                "max": 90000.0,
                "gaps_over_threshold_per_s": 3.0,
                "time_lost_pct": 0.5,
            }
            for c in cpus
        }

    def cpp_ring(self, cpus, items, rounds):
        if not self.cpp:
            raise BaselineError("no C++ compiler on PATH")
        return CppRing(3.0e7, 4.0e8, {"p50": 600.0, "p99": 900.0, "p999": 2e3, "max": 5e4})

    def e2e(  # noqa: PLR0913 -- e2e.measure_e2e's signature
        self, cores, rate, duration_s, scrape_hz=0.0, load_requests=0, replay=None, pages=0
    ):
        self.e2e_calls.append(
            {
                "cores": cores,
                "rate": rate,
                "scrape_hz": scrape_hz,
                "load_requests": load_requests,
                "replay": replay,
                "pages": pages,
            }
        )
        p99 = 5000.0 * (1.1 if scrape_hz else 1.2 if pages else 1.0)
        run = {
            "p50": 500.0,
            "p90": 900.0,
            "p99": p99,
            "p999": p99 * 2,
            "max": p99 * 10,
            "drops": 100 if rate >= self.drops_from else 0,
            "orders": 10,
            "messages": rate,
            "achieved_msgs_per_s": float(rate),
        }
        if scrape_hz:
            run.update(scrapes=20, scrape_errors=0)
        if pages:
            run.update(page_requests=22 * pages, page_errors=0)
        if load_requests:
            run["metrics_under_load"] = {
                "requests": load_requests,
                "concurrency": 20,
                "p50_ms": 1.0,
                "p99_ms": 3.0,
                "ok": load_requests,
                "errors": 0,
            }
        return run

    def replay_recording(self, path, n):
        self.recordings.append((path, n))
        path.write_bytes(b"a recording")  # the real one writes n messages
        return path

    def measures(self) -> Measures:
        return Measures(
            jitter=self.jitter,
            floor=lambda cpus, rounds: {**summary(FLOOR_P50), "untimed_mean": FLOOR_UNTIMED},
            clock_read=lambda: CLOCK_READ,
            ring_throughput=lambda cpus, items, batch: 4.0e8 if batch else 5.0e7,
            ring_rtt=lambda cpus, rounds: summary(700.0),
            mpqueue=lambda cpus, items, rounds: (1.0e5, {"p50": 70_000.0, "p99": 90_000.0}),
            cpp_ring=self.cpp_ring,
            kernels=lambda repeats: (5.0e7, 7.0e7),
            order_book=lambda repeats: 2.5e7,
            backtest=lambda repeats: 8e6,
            e2e=self.e2e,
            metrics_render=lambda cores: 80.0,
            service_cores=lambda: {"feed": 1, "engine": 1, "gateway": 1},
            stage_costs=lambda cpu, repeats: dict(STAGE_COSTS),
            replay_recording=self.replay_recording,
        )
