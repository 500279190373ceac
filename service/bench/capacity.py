"""Capacity on one core: what each step of the fused pipeline costs per message
(``stage_cost_ns``), and a replay recording for the capacity sweep of the replay source.

The step costs come from ``service.kernels.cost_probes``, which drives the production kernels
over a stream from the simulator, timed around whole batches. Each figure is the median of
``repeats`` runs, in ns per market-data message; ``batching`` is the gateway's cost per order
spread over the messages (the strategy's orders per message on the same stream), and
``batching_per_order`` the same per order. ``fused_replay`` and ``fused_simulator`` are the
whole fused loop (every stage on one core, as ``run`` runs it here) per message, flat out: their
inverse is the most a core could carry at 100 % busy, the ceiling of
``max_sustained_rate_msgs_per_s``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from contracts import stats_layout as L
from contracts.records import MARKET_DATA
from service.config import Config, ServiceConfig
from service.kernels import stages as S
from service.kernels.cost_probes import (
    ENGINE_STEPS,
    READ,
    RISK,
    engine_steps_cost,
    feed_cost,
    gateway_cost,
)
from service.kernels.feed import new_simulator, sim_fill
from service.runtime.pipeline import ALL_STAGES
from service.runtime.recording import write_recording
from service.runtime.segments import create_segments
from service.runtime.state import new_engine_state, new_feed_state, new_gateway_state

STREAM = 400_000  # messages each probe runs over
ORDERS = 200_000  # orders through the gateway
FLAT_OUT = 100_000_000  # msgs/s: the fixed-rate path with every message already due


def simulated_stream(config: Config, n: int) -> np.ndarray:
    """``n`` messages from the simulator of ``config``, sequenced 1..n as the feed stamps them."""
    stream = np.zeros(n, dtype=MARKET_DATA)
    sim_fill(new_simulator(config.feed), stream, n)
    stream["seq"] = np.arange(1, n + 1)
    return stream


def write_replay(path: Path, n: int) -> Path:
    """A recording of ``n`` messages of the embedded config's simulator at ``path``, for the
    capacity sweep of the replay source."""
    config = Config()
    return write_recording(path, simulated_stream(config, n), config.feed.instruments)


@contextlib.contextmanager
def _on_cpu(cpu: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _config(rate: int) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        feed=dataclasses.replace(base.feed, rate=rate, burst_probability=0.0),
        service=dataclasses.replace(ServiceConfig(), shm_prefix=f"lowlat-bench-cost-{os.getpid()}"),
        source="<bench>",
    )


def _median(runs: int, once: Callable[[], float]) -> float:
    once()  # compile or load, warm the caches
    return float(np.median([once() for _ in range(runs)]))


class _Pipeline:
    """Fresh stage states over fresh segments, in this process: what each probe runs on."""

    def __init__(self, config: Config, replay: np.ndarray | None) -> None:
        self.config, self.replay = config, replay

    def __enter__(self) -> _Pipeline:
        self.segments = create_segments(self.config)
        seg = self.segments
        self.rings = S.Rings(seg.rings["md"], seg.rings["orders"], seg.rings["fills"])
        self.feed = new_feed_state(self.config, self.replay, float(time.monotonic_ns()))
        self.engine = new_engine_state(self.config, self.config.feed.instruments)
        self.gateway = new_gateway_state(self.config)
        self.local = np.zeros(L.STATS_WORDS, dtype=np.int64)
        return self

    def __exit__(self, *exc: object) -> None:
        self.segments.unlink()

    def feed_ns(self, messages: int) -> float:
        seg = self.segments
        ns, sent = feed_cost(self.feed, self.rings.md, seg.control, seg.stats, self.local, messages)
        return ns / max(sent, 1)

    def fused_ns(self) -> float:
        """The whole loop over every stage until the replay ends, or for ``STREAM`` messages
        of the simulator; ns per message."""
        seg = self.segments
        iterations = -1 if self.replay is not None else STREAM // S.BATCH
        start = time.perf_counter_ns()
        S.run_loop(
            ALL_STAGES, self.rings, self.feed, self.engine, self.gateway, seg.control,
            seg.stats, self.local, 1_000_000, iterations,
        )  # fmt: skip
        return (time.perf_counter_ns() - start) / max(self.local[L.MD_PROCESSED], 1)

    def gateway_ns(self) -> float:
        seg = self.segments
        ns, orders = gateway_cost(
            self.gateway, self.rings, seg.control, seg.stats, self.local, ORDERS
        )
        return ns / max(orders, 1)


def measure_stage_costs(cpu: int, repeats: int) -> dict[str, float]:
    """ns per message of each step on ``cpu`` (see the module docstring)."""
    config = _config(FLAT_OUT)
    stream = simulated_stream(config, STREAM)
    costs: dict[str, float] = {}
    with _on_cpu(cpu):

        def feed(replay: np.ndarray | None) -> float:
            with _Pipeline(config, replay) as p:
                return p.feed_ns(STREAM)

        costs["feed_simulator"] = _median(repeats, lambda: feed(None))
        costs["feed_replay"] = _median(repeats, lambda: feed(stream))

        cuts = []
        for upto in range(READ, RISK + 1):
            engine = new_engine_state(config, config.feed.instruments)

            def chain(engine=engine, upto=upto) -> float:
                ns, _ = engine_steps_cost(engine, stream, upto, time.monotonic_ns())
                return ns / len(stream)

            cuts.append(_median(repeats, chain))
        for step, name in enumerate(ENGINE_STEPS):
            costs[name] = max(cuts[step + 1] - cuts[step], 0.0)

        orders_per_message = []

        def fused(replay: np.ndarray | None) -> float:
            with _Pipeline(config, replay) as p:
                ns = p.fused_ns()
                orders_per_message.append(p.local[L.ORDERS_SENT] / max(p.local[L.MD_PROCESSED], 1))
                return ns

        costs["fused_replay"] = _median(repeats, lambda: fused(stream))
        costs["fused_simulator"] = _median(repeats, lambda: fused(None))

        def batching() -> float:
            with _Pipeline(config, None) as p:
                return p.gateway_ns()

        per_order = _median(repeats, batching)
        # the gateway works per order: spread over the messages as the live loop sent them
        costs["batching"] = per_order * float(np.median(orders_per_message))
        costs["batching_per_order"] = per_order
    return costs
