"""The stats block in shared memory: stages publish into it, readers snapshot it lock-free.

Layout and meaning of every word: ``service.stats_layout``. A stage keeps a private copy of
the whole block (``local``), updates its own section's counters there with plain stores, and
every few hundred microseconds copies that section out under its seqlock
(``publish_section``). A reader copies each section under the seqlock (``read_section``) and
retries only if the owner was mid-publish; the writer never waits for a reader, so a scrape
can never stall a stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service import stats_layout as L
from service.atomics import (
    fence_acquire,
    fence_release,
    load_acquire,
    load_relaxed,
    store_relaxed,
    store_release,
)
from service.buckets import HIST_WORDS, summary
from service.jit import kernel
from service.shm import Segment

SEGMENT_KIND_STATS = 2
STATS_OFFSET = 128  # after the segment header


@kernel
def publish_section(shared, local, start, end, now_ns):
    """Copy ``local[start+1:end]`` to ``shared`` as one consistent update (seqlock writer)."""
    # always odd, even if a writer killed mid-publish left the sequence odd: that repairs it
    seq = load_relaxed(shared, start) | 1
    store_relaxed(shared, start, seq)  # odd: an update is in progress
    fence_release()  # the odd sequence is visible before any of the data below
    local[start + L.HEARTBEAT_NS] = now_ns
    for i in range(start + 1, end):
        store_relaxed(shared, i, local[i])
    store_release(shared, start, seq + 1)  # even again, after all the data


@kernel
def read_section(shared, out, start, end, attempts):
    """Copy a section published by another process; False if every attempt met a writer."""
    for _ in range(attempts):
        before = load_acquire(shared, start)
        if before & 1:
            continue
        for i in range(start + 1, end):
            out[i] = load_relaxed(shared, i)
        fence_acquire()  # the copies above complete before the sequence is read again
        if load_relaxed(shared, start) == before:
            out[start] = before
            return True
    return False


@kernel
def read_words(shared, out, start, end):
    """Copy words that have one writer each (histograms) with untorn atomic loads."""
    for i in range(start, end):
        out[i] = load_relaxed(shared, i)


@kernel
def set_state(shared, local, start, state):
    """Publish a stage's lifecycle state at once (outside the periodic publish)."""
    local[start + L.STATE] = state
    seq = load_relaxed(shared, start) | 1
    store_relaxed(shared, start, seq)
    fence_release()
    store_relaxed(shared, start + L.STATE, state)
    store_release(shared, start, seq + 1)


def create_stats(shm_dir: Path, name: str) -> tuple[Segment, np.ndarray]:
    segment = Segment.create(shm_dir, name, STATS_OFFSET + L.STATS_WORDS * 8, SEGMENT_KIND_STATS)
    return segment, segment.array(np.int64, STATS_OFFSET, L.STATS_WORDS)


def attach_stats(shm_dir: Path, name: str, writable: bool = True) -> tuple[Segment, np.ndarray]:
    segment = Segment.attach(shm_dir, name, SEGMENT_KIND_STATS, writable)
    return segment, segment.array(np.int64, STATS_OFFSET, L.STATS_WORDS)


def snapshot(shared: np.ndarray) -> np.ndarray:
    """A consistent copy of the whole block: each section whole, histograms word by word."""
    out = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for start, end in zip(L.SECTION_START, L.SECTION_END, strict=True):
        read_section(shared, out, start, end, 1000)
    first_histogram = min(m.offset for m in L.CATALOG if m.kind == "histogram")
    read_words(shared, out, first_histogram, L.STATS_WORDS)
    return out


def histogram(block: np.ndarray, offset: int) -> np.ndarray:
    return block[offset : offset + HIST_WORDS]


def describe(block: np.ndarray, n_instruments: int = L.MAX_INSTRUMENTS) -> dict:
    """A snapshot as plain data: counters, gauges, labelled arrays, histogram summaries."""
    result: dict = {"stages": {}}
    for stage, name in enumerate(L.STAGES):
        start = L.SECTION_START[stage]
        result["stages"][name] = {
            "state": L.STATE_NAMES[int(block[start + L.STATE])],
            "heartbeat_ns": int(block[start + L.HEARTBEAT_NS]),
            "pid": int(block[start + L.PID]),
        }
    for metric in L.CATALOG:
        if metric.kind == "histogram":
            result[metric.name] = summary(histogram(block, metric.offset))
        elif metric.count > 1:
            labels = L.REJECT_REASONS if metric.label == "reason" else range(n_instruments)
            result[metric.name] = {
                str(label): int(block[metric.offset + i]) for i, label in enumerate(labels)
            }
        else:
            result[metric.name] = int(block[metric.offset])
    return result
