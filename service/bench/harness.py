"""The two-process harness: each cross-process measurement as two pinned processes.

A measurement is a pair of sides, one function per side, each run in a spawned process pinned
to its own CPU. The parent only sleeps while they run, so no two busy-polling processes ever
share a core. The sides live here, apart from the parent's checks in ``measures``, so a spawned
child loads the kernels and segments it needs and not the pipeline runner, the telemetry API,
httpx or rich.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path

import numpy as np

from contracts.buckets import summary
from contracts.segments import HEADER_BYTES, KIND_BENCH
from service.bench import BenchError
from service.kernels.probes import (
    BENCH_WORDS,
    W_END_NS,
    W_ERRORS,
    W_HIST,
    W_START_NS,
    W_SUM,
    floor_initiator,
    floor_responder,
    floor_untimed_initiator,
    ready_and_wait,
    ring_consumer,
    ring_producer,
    ring_rtt_initiator,
    ring_rtt_responder,
)
from service.kernels.ring import Ring
from service.runtime.segments import attach_ring, create_ring
from service.runtime.shm import Segment


@dataclass(frozen=True)
class Child:
    """What one side gets in its process: the shared bench words and its counts."""

    shm_dir: Path
    prefix: str
    n: int  # rounds or items
    batch: int
    words: np.ndarray

    @property
    def hist(self) -> np.ndarray:
        return self.words[W_HIST:]

    def ring(self, name: str) -> Ring:
        _, r = attach_ring(self.shm_dir, f"{self.prefix}.{name}", np.int64)
        return r


Side = Callable[[Child], None]

# Each side runs its kernels once with nothing to do before the start barrier (ready_and_wait),
# so compiling them or loading them from the cache is never timed.


def floor_initiate(c: Child) -> None:
    floor_initiator(c.words, 0, c.hist)
    ready_and_wait(c.words, 0)
    floor_initiator(c.words, c.n, c.hist)


UNTIMED_BATCHES = 50  # the untimed floor: the median of this many batches' means (a batch that
# the OS preempted is an outlier the median ignores, where one long mean would carry it)


def floor_untimed_initiate(c: Child) -> None:
    """The untimed floor in ``UNTIMED_BATCHES`` batches; each batch's total ns is written to the
    histogram words the timed floor uses (``c.hist[:UNTIMED_BATCHES]``)."""
    floor_untimed_initiator(c.words, 0, 0)
    ready_and_wait(c.words, 0)
    per = c.n // UNTIMED_BATCHES
    for b in range(UNTIMED_BATCHES):
        c.hist[b] = floor_untimed_initiator(c.words, b * per, per)


def floor_respond(c: Child) -> None:
    floor_responder(c.words, 0)
    ready_and_wait(c.words, 1)
    floor_responder(c.words, c.n)


def ring_produce(c: Child) -> None:
    r = c.ring("ring")
    ring_producer(r, 0, c.batch)
    ready_and_wait(c.words, 0)
    c.words[W_START_NS] = time.monotonic_ns()
    ring_producer(r, c.n, c.batch)


def ring_consume(c: Child) -> None:
    r = c.ring("ring")
    scratch = np.zeros(1, dtype=np.int64)
    ring_consumer(r, 0, c.batch, scratch)
    ready_and_wait(c.words, 1)
    total, errors = ring_consumer(r, c.n, c.batch, scratch)
    c.words[W_END_NS] = time.monotonic_ns()
    c.words[W_SUM], c.words[W_ERRORS] = total, errors


def rtt_initiate(c: Child) -> None:
    ab, ba = c.ring("ab"), c.ring("ba")
    scratch = np.zeros(1, dtype=np.int64)
    ring_rtt_initiator(ab, ba, 0, c.hist, scratch)
    ready_and_wait(c.words, 0)
    ring_rtt_initiator(ab, ba, c.n, c.hist, scratch)


def rtt_respond(c: Child) -> None:
    ab, ba = c.ring("ab"), c.ring("ba")
    scratch = np.zeros(1, dtype=np.int64)
    ring_rtt_responder(ab, ba, 0, scratch)
    ready_and_wait(c.words, 1)
    ring_rtt_responder(ab, ba, c.n, scratch)


# the pairs, first side on the first CPU; each needs the rings named in its Pair
FLOOR: tuple[Side, Side] = (floor_initiate, floor_respond)  # no ring
FLOOR_UNTIMED: tuple[Side, Side] = (floor_untimed_initiate, floor_respond)  # n: batches x rounds
RING: tuple[Side, Side] = (ring_produce, ring_consume)  # "ring"
RTT: tuple[Side, Side] = (rtt_initiate, rtt_respond)  # "ab", "ba"


def _child(side: Side, cpu: int, shm_dir: Path, prefix: str, n: int, batch: int) -> None:
    """A spawned process's entry point: pin, attach the bench words, run ``side``."""
    os.sched_setaffinity(0, {cpu})
    segment = Segment.attach(shm_dir, f"{prefix}.words", KIND_BENCH)
    words = segment.array(np.int64, HEADER_BYTES, BENCH_WORDS)
    side(Child(shm_dir, prefix, n, batch, words))


class Pair:
    """Shared segments for one two-process measurement, removed afterwards."""

    def __init__(self, rings: tuple[str, ...] = (), capacity: int = 4096) -> None:
        self.shm_dir = Path("/dev/shm")
        self.prefix = f"lowlat-bench-{os.getpid()}"
        self.segments = [
            Segment.create(
                self.shm_dir, f"{self.prefix}.words", HEADER_BYTES + BENCH_WORDS * 8, KIND_BENCH
            )
        ]
        self.words = self.segments[0].array(np.int64, HEADER_BYTES, BENCH_WORDS)
        for name in rings:
            seg, _ = create_ring(self.shm_dir, f"{self.prefix}.{name}", np.int64, capacity)
            self.segments.append(seg)

    def run(
        self,
        sides: tuple[Side, Side],
        cpus: Sequence[int],
        n: int,
        batch: int = 0,
        timeout: float = 600.0,
    ) -> None:
        """Run the two sides, one per CPU, and wait for both."""
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_child, args=(side, cpu, self.shm_dir, self.prefix, n, batch))
            for side, cpu in zip(sides, cpus, strict=True)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        failed = [p for p in procs if p.exitcode != 0]
        for p in procs:
            if p.is_alive():
                p.kill()
        if failed:
            raise BenchError(f"benchmark process failed (exit codes {[p.exitcode for p in procs]})")

    def histogram(self) -> dict[str, float]:
        return summary(self.words[W_HIST:].copy())

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        for seg in self.segments:
            seg.unlink()


# multiprocessing.Queue in the ring's two shapes; the parent is the other side


def mpq_produce(cpu: int, q: Queue[int], items: int) -> None:
    os.sched_setaffinity(0, {cpu})
    for i in range(1, items + 1):
        q.put(i)


def mpq_echo(cpu: int, q_in: Queue[int], q_out: Queue[int], rounds: int) -> None:
    os.sched_setaffinity(0, {cpu})
    for _ in range(rounds):
        q_out.put(q_in.get())
