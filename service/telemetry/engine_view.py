"""A read-only view of a running engine, for the telemetry API, the Prometheus collector and
``trading-service top``.

It attaches to the stats and control blocks named by the config without ever writing to them,
and follows the engine across restarts. Each run creates its segments anew under the same
names, so every ``sample()`` checks that the file it holds is still the one under that name
(same inode) and that its owner still runs. If not, it lets go and attaches to whatever is
there now. When nothing is there, the engine is not running and ``sample()`` says so; it never
raises for that. A segment that is there but not this build's (another layout, truncated,
foreign) or a block holding impossible values (a negative counter, a stage state no stage
writes) is not served as numbers: the sample says the engine is not running and why
(``problem``), which ``/ready`` shows and which makes ``trading_up`` 0.

A sample is a lock-free copy (``service.runtime.stats.snapshot``): reading never stalls a stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts import segments as C
from contracts import stats_layout as L
from contracts.buckets import HIST_MAX, HIST_SUM, HIST_WORDS, N_BUCKETS, bucket_bounds
from contracts.stages import STATE_NAMES
from service.config import Config
from service.kernels.control import get_word
from service.runtime.shm import Segment, SegmentError
from service.runtime.stats import snapshot

_BUCKET_HIGHS = bucket_bounds()[1]

# The counters /latest and /history show as rates: label, first word, words summed
RATES = (
    ("md_messages", L.MD_PROCESSED, 1),
    ("orders", L.ORDERS_SENT, 1),
    ("fills", L.FILLS, 1),
    ("rejects", L.REJECTS, len(L.REJECT_REASONS)),
    ("sequence_gaps", L.SEQUENCE_GAPS, 1),
    ("md_messages_dropped", L.MD_DROPPED, 1),  # the feed's: the md ring was full
    ("md_messages_lost", L.MD_LOST, 1),  # the engine's: the feed lapped it
)
# The rings /latest and /history show: name, occupancy word, highest-occupancy word
RINGS = (
    ("md", L.MD_RING_OCCUPANCY, L.MD_RING_OCCUPANCY_MAX),
    ("orders", L.ORDER_RING_OCCUPANCY, L.ORDER_RING_OCCUPANCY_MAX),
    ("fills", L.FILL_RING_OCCUPANCY, L.FILL_RING_OCCUPANCY_MAX),
)


@dataclass(frozen=True)
class Sample:
    """One consistent reading of the engine, or of its absence."""

    taken_ns: int  # CLOCK_MONOTONIC, comparable with the stages' heartbeats
    running: bool  # segments present and their owner (the supervisor) alive
    block: np.ndarray | None  # the stats words (contracts.stats_layout), None when not running
    kill_switch: bool
    owner_pid: int
    started_ns: int  # when the run's segments were created (monotonic), 0 when unknown
    problem: str | None = None  # why segments that are there are not served, if they are not

    @property
    def stats(self) -> np.ndarray:
        """The stats words of a running engine's sample (``block``, known to be there)."""
        if self.block is None:
            raise ValueError("the engine is not running: this sample holds no stats")
        return self.block

    def stage_state(self, stage: int) -> str:
        if self.block is None:
            return "absent"
        return STATE_NAMES[int(self.block[L.SECTION_START[stage] + L.STATE])]

    def stage_live(self, stage: int, bound_s: float) -> bool:
        """Running, with a heartbeat no older than ``bound_s``."""
        age = self.heartbeat_age_s(stage)
        return self.stage_state(stage) == "running" and age is not None and age <= bound_s

    def heartbeat_age_s(self, stage: int) -> float | None:
        if self.block is None:
            return None
        beat = int(self.block[L.SECTION_START[stage] + L.HEARTBEAT_NS])
        return None if beat == 0 else max(0.0, (self.taken_ns - beat) / 1e9)


class _Attached:
    """One run's segments, mapped read-only."""

    def __init__(self, shm_dir: Path, prefix: str):
        self.stats_path = shm_dir / f"{prefix}.stats"
        self.stats_seg = Segment.attach(shm_dir, self.stats_path.name, C.KIND_STATS, False)
        self.control_seg = Segment.attach(shm_dir, f"{prefix}.control", C.KIND_CONTROL, False)
        self.stats = self.stats_seg.array(np.int64, C.HEADER_BYTES, L.STATS_WORDS)
        self.control = self.control_seg.array(np.int64, C.HEADER_BYTES, C.CONTROL_WORDS)

    def current(self) -> bool:
        return self.stats_seg.current()


class EngineView:
    """The engine named by ``config``, as seen from another process."""

    def __init__(self, config: Config):
        self.config = config
        self._shm_dir = Path(config.service.shm_dir)
        self._prefix = config.service.shm_prefix
        self._attached: _Attached | None = None
        self.problem: str | None = None  # why the segments there are refused, if they are

    def _attach(self) -> _Attached | None:
        if self._attached is not None and self._attached.current():
            return self._attached
        self._attached = None  # dropped: its mapping goes once no view of it is left
        self.problem = None
        try:
            attached = _Attached(self._shm_dir, self._prefix)
        except FileNotFoundError:
            return None
        except SegmentError as exc:
            if "no such segment" not in str(exc):
                self.problem = str(exc)
            return None
        if not attached.stats_seg.owner_alive():
            return None  # segments a crashed run left: not an engine
        self._attached = attached
        return attached

    def sample(self) -> Sample:
        now = time.monotonic_ns()
        attached = self._attach()
        if attached is None:
            return Sample(now, False, None, False, 0, 0, self.problem)
        block = snapshot(attached.stats)
        problem = implausible(block)
        if problem:
            return Sample(now, False, None, False, 0, 0, f"{attached.stats_path} {problem}")
        return Sample(
            taken_ns=now,
            running=True,
            block=block,
            kill_switch=get_word(attached.control, C.KILL_SWITCH) != 0,
            owner_pid=attached.stats_seg.owner_pid,
            started_ns=attached.stats_seg.created_ns,
        )


_COUNTERS = [m for m in L.CATALOG if m.kind == "counter"]
# every counter word: one check per reading instead of two numpy calls per counter (~125 us of a
# reading's CPU, more than rendering /metrics from it)
_COUNTER_WORDS = np.concatenate([np.arange(m.offset, m.offset + m.words) for m in _COUNTERS])


def implausible(block: np.ndarray) -> str | None:
    """What in a stats block no stage of this build could have written, else None."""
    if block[_COUNTER_WORDS].min() < 0:
        for m in _COUNTERS:  # which one, for the reason
            if (block[m.offset : m.offset + m.words] < 0).any():
                return f"holds a negative counter ({m.name}): foreign or corrupt, not served"
    for stage, start in enumerate(L.SECTION_START):
        state = int(block[start + L.STATE])
        if not 0 <= state < len(STATE_NAMES):
            return f"holds stage state {state} for stage {stage}: foreign or corrupt, not served"
    return None


class Interval:
    """What changed between two samples of the same run, per second and per histogram.

    ``available`` is False for the first sample, after the engine (re)started or went away:
    counters of a new run start again from zero, so a delta across runs would mean nothing.
    """

    def __init__(self, previous: Sample | None, current: Sample):
        self.current = current
        self.previous = previous
        self.available = bool(
            previous is not None
            and previous.running
            and current.running
            and previous.owner_pid == current.owner_pid
            and previous.started_ns == current.started_ns
            and current.taken_ns > previous.taken_ns
        )
        self.interval_s = (
            (current.taken_ns - previous.taken_ns) / 1e9 if self.available and previous else 0.0
        )

    def delta(self, offset: int, words: int = 1) -> int | None:
        """Increase of the sum of ``words`` counters from ``offset``; None when unknown."""
        if not self.available or self.previous is None:
            return None
        now = int(self.current.stats[offset : offset + words].sum())
        before = int(self.previous.stats[offset : offset + words].sum())
        # a counter never decreases within a run; if it seems to, one reading is not whole
        return now - before if now >= before else None

    def per_second(self, offset: int, words: int = 1) -> float | None:
        delta = self.delta(offset, words)
        return None if delta is None else delta / self.interval_s

    def rates(self) -> dict[str, float | None]:
        """Every counter of ``RATES`` per second over the interval (None when unknown)."""
        return {label: self.per_second(offset, words) for label, offset, words in RATES}

    def histogram(self, offset: int) -> np.ndarray | None:
        """The histogram (buckets, sum, max) of only what was recorded between the samples.

        The block keeps one maximum for the whole run, so the interval's maximum is taken as
        the top of its highest non-empty bucket, capped by the run's maximum: like every
        percentile here it is never optimistic, and at most one bucket (6.25 %) high.
        """
        if not self.available or self.previous is None:
            return None
        now = self.current.stats[offset : offset + HIST_WORDS]
        before = self.previous.stats[offset : offset + HIST_WORDS]
        window = np.zeros(HIST_WORDS, dtype=np.int64)
        window[:N_BUCKETS] = np.maximum(now[:N_BUCKETS] - before[:N_BUCKETS], 0)
        window[HIST_SUM] = max(int(now[HIST_SUM] - before[HIST_SUM]), 0)
        filled = np.flatnonzero(window[:N_BUCKETS])
        if filled.size:
            window[HIST_MAX] = min(int(_BUCKET_HIGHS[filled[-1]]), int(now[HIST_MAX]))
        return window
