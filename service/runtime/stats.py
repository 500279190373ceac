"""Reading the stats block: a consistent copy of it, and that copy as plain data.

Layout and meaning of every word: ``contracts.stats_layout``; the seqlock that makes a copy
consistent: ``service.kernels.seqlock``. Used by the supervisor for a run's final figures and
by everything on the read side (telemetry API, top, bench).
"""

from __future__ import annotations

import numpy as np

from contracts import stats_layout as L
from contracts.buckets import HIST_WORDS, summary
from contracts.stages import STAGES, STATE_NAMES
from service.kernels.seqlock import read_section, read_words

_FIRST_HISTOGRAM = min(m.offset for m in L.CATALOG if m.kind == "histogram")


def snapshot(shared: np.ndarray) -> np.ndarray:
    """A consistent copy of the whole block: each section whole, histograms word by word."""
    out = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for start, end in zip(L.SECTION_START, L.SECTION_END, strict=True):
        read_section(shared, out, start, end, 1000)
    read_words(shared, out, _FIRST_HISTOGRAM, L.STATS_WORDS)
    return out


def histogram(block: np.ndarray, offset: int) -> np.ndarray:
    return block[offset : offset + HIST_WORDS]


def describe(block: np.ndarray, n_instruments: int = L.MAX_INSTRUMENTS) -> dict:
    """A snapshot as plain data: counters, gauges, labelled arrays, histogram summaries."""
    result: dict = {"stages": {}}
    for stage, name in enumerate(STAGES):
        start = L.SECTION_START[stage]
        result["stages"][name] = {
            "state": STATE_NAMES[int(block[start + L.STATE])],
            "heartbeat_ns": int(block[start + L.HEARTBEAT_NS]),
            "pid": int(block[start + L.PID]),
        }
    for metric in L.CATALOG:
        if metric.kind == "histogram":
            result[metric.name] = summary(histogram(block, metric.offset))
        elif metric.words > 1:
            labels = L.REJECT_REASONS if metric.label == "reason" else range(n_instruments)
            result[metric.name] = {
                str(label): int(block[metric.offset + i]) for i, label in enumerate(labels)
            }
        else:
            result[metric.name] = int(block[metric.offset])
    return result
