"""A stats block this process owns and fills by hand: an engine as the read side sees it.

``create_segments`` in a private directory makes real segments, so ``EngineView`` attaches to
them as to a live engine without any stage process running; the tests write the words and
latencies they then expect to read back.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import numpy as np

from contracts import stats_layout as L
from service.config import Config
from service.kernels.histogram import hist_record
from service.kernels.seqlock import publish_section, set_state
from service.runtime.segments import Segments, create_segments
from service.telemetry import exposition as M

HISTOGRAMS = [m for m in L.CATALOG if m.kind == "histogram"]


class SyntheticEngine:
    """A stats block owned by this process, published like the stages do; no stage runs."""

    def __init__(self, tmp_path: Path, config: Config | None = None):
        config = config or Config()
        prefix = f"lltest-metrics-{uuid.uuid4().hex[:12]}"
        service_config = dataclasses.replace(
            config.service, shm_dir=str(tmp_path), shm_prefix=prefix
        )
        self.config = dataclasses.replace(config, service=service_config)
        self.segments: Segments = create_segments(self.config)
        self.stats = self.segments.stats  # the shared words EngineView reads
        self.local = np.zeros(L.STATS_WORDS, dtype=np.int64)  # the stages' private copy

    def set_states(self, state: int) -> None:
        for start in L.SECTION_START:
            set_state(self.stats, self.local, start, state)

    def publish(self, now_ns: int | None = None) -> None:
        """Copy every section of ``local`` to the block under its seqlock, heartbeat ``now_ns``."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        for start, end in zip(L.SECTION_START, L.SECTION_END, strict=True):
            publish_section(self.stats, self.local, start, end, now_ns)

    def close(self) -> None:
        self.segments.unlink()


def latencies(rng: np.random.Generator, n: int, median_ns: float) -> np.ndarray:
    """Log-normal latencies around ``median_ns`` plus every edge case at exported boundaries."""
    body = np.exp(rng.normal(np.log(median_ns), 1.5, n)).astype(np.int64)
    edges = np.array(M.LADDER_NS, dtype=np.int64)
    return np.concatenate([body, edges, edges + 1, edges - 1, [0, 1, 2**40]])


def record(engine: SyntheticEngine, metric: L.Metric, values: np.ndarray) -> None:
    for v in values:
        hist_record(engine.stats, metric.offset, int(v))


def write_slo_counts(engine: SyntheticEngine, values: np.ndarray) -> np.ndarray:
    """Exact within-counts at the block's thresholds, as the gateway keeps them; the thresholds."""
    thresholds = engine.stats[L.SLO_THRESHOLDS_NS : L.SLO_THRESHOLDS_NS + L.MAX_SLO_THRESHOLDS]
    for j, threshold in enumerate(thresholds):
        within = int(np.count_nonzero(values <= threshold)) if threshold > 0 else 0
        engine.stats[L.SLO_TICK_TO_ORDER_WITHIN + j] = within
    return thresholds[thresholds > 0].copy()
