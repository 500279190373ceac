"""A hiccup probe: how often, and for how long, a core is taken away from a busy-polling loop.

A numba loop pinned to the core reads the clock as fast as it can; any gap between two reads
longer than the loop's own cost is time the core spent elsewhere (interrupts, timer ticks, other
tasks, a hypervisor). This is the floor under every tail latency the service can show on that
core: a stage on it can do no better. Probes on several cores run at the same time, so each
sees the machine as the pipeline sees it with every worker core busy.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contracts.buckets import HIST_WORDS, summary
from contracts.segments import HEADER_BYTES, KIND_JITTER
from service.bench.figures import Hiccups
from service.kernels.probes import jitter_probe
from service.runtime.shm import Segment

_WORDS_PER_CPU = HIST_WORDS + 2  # histogram, then gaps over threshold, then ns lost in them


def _probe_process(cpu: int, index: int, path: str, duration_ns: int, threshold_ns: int) -> None:
    os.sched_setaffinity(0, {cpu})
    segment = Segment.attach(Path(path).parent, Path(path).name, KIND_JITTER)
    out = segment.array(np.int64, HEADER_BYTES, _WORDS_PER_CPU * (index + 1))
    jitter_probe(1000, threshold_ns, np.zeros(_WORDS_PER_CPU, dtype=np.int64), 0)  # compile first
    jitter_probe(duration_ns, threshold_ns, out, index * _WORDS_PER_CPU)


def measure_jitter(
    cpus: Sequence[int],
    duration_s: float,
    threshold_ns: int = 1000,
    shm_dir: Path = Path("/dev/shm"),
) -> dict[str, Hiccups]:
    """Per CPU: gap percentiles (ns), gaps over ``threshold_ns`` per second, % of time lost."""
    name = f"lowlat-jitter-{os.getpid()}"
    segment = Segment.create(
        shm_dir, name, HEADER_BYTES + 8 * _WORDS_PER_CPU * len(cpus), KIND_JITTER
    )
    try:
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_probe_process,
                args=(cpu, i, str(shm_dir / name), int(duration_s * 1e9), threshold_ns),
            )
            for i, cpu in enumerate(cpus)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(duration_s + 120)
            if p.exitcode != 0:
                raise RuntimeError(f"jitter probe on cpu list {list(cpus)} failed ({p.exitcode})")
        words = segment.array(np.int64, HEADER_BYTES, _WORDS_PER_CPU * len(cpus)).copy()
    finally:
        segment.unlink()
    result: dict[str, Hiccups] = {}
    for i, cpu in enumerate(cpus):
        block = words[i * _WORDS_PER_CPU : (i + 1) * _WORDS_PER_CPU]
        s = summary(block[:HIST_WORDS])
        result[str(cpu)] = {
            "p50": s["p50"],
            "p99": s["p99"],
            "p999": s["p999"],
            "max": s["max"],
            "gaps_over_threshold_per_s": float(block[HIST_WORDS]) / duration_s,
            "time_lost_pct": 100.0 * float(block[HIST_WORDS + 1]) / (duration_s * 1e9),
        }
    return result
