"""The kernels the benchmark and the hiccup probe time: nothing here runs in production.

- the floor: a ping-pong on one cache line between two cores (no ring can move data between
  cores faster), timed per round trip and untimed (a batch's mean, no clock inside), and the
  cost of the clock read itself, so a reader sees what timing adds to every latency figure;
- the ring driven by one process per side, one publish per item or in batches, and a ring
  round trip;
- a two-party start barrier, so both sides start timing together;
- the hiccup probe: a clock-reading loop that records every gap between two reads.

The bench's scratch segment (``contracts.segments.KIND_BENCH``) holds the words below, each on
a line of its own, then a histogram.
"""

from __future__ import annotations

import numpy as np

from contracts.buckets import HIST_WORDS
from contracts.constants import LINE_WORDS
from service.kernels.atomics import load_acquire, monotonic_ns, store_release
from service.kernels.histogram import hist_record
from service.kernels.jit import kernel
from service.kernels.ring import (
    ring_claim,
    ring_publish,
    ring_read_slot,
    ring_readable,
    ring_release,
    ring_try_pop,
    ring_try_push,
    ring_write_slot,
)

# words of the bench segment (W_READY+1 and +2: the two parties' start flags)
W_READY, W_PING, W_START_NS, W_END_NS, W_SUM, W_ERRORS = (i * LINE_WORDS for i in range(6))
W_HIST = 6 * LINE_WORDS
BENCH_WORDS = W_HIST + HIST_WORDS


@kernel
def floor_initiator(words, rounds, hist):
    """Ping-pong on one cache line: write an odd value, wait for the next even one."""
    for i in range(rounds):
        t0 = monotonic_ns()
        store_release(words, W_PING, 2 * i + 1)
        while load_acquire(words, W_PING) != 2 * i + 2:
            pass
        hist_record(hist, 0, monotonic_ns() - t0)


@kernel
def floor_untimed_initiator(words, first, rounds):
    """The floor's round trips ``first``..``first + rounds - 1`` with no clock read inside the
    loop: their total time, read once before and once after (the mean is that over ``rounds``).
    The responder is ``floor_responder``, numbering from 0, as for the timed floor."""
    t0 = monotonic_ns()
    for i in range(first, first + rounds):
        store_release(words, W_PING, 2 * i + 1)
        while load_acquire(words, W_PING) != 2 * i + 2:
            pass
    return monotonic_ns() - t0


@kernel
def clock_read_cost(reads):
    """``reads`` back-to-back clock reads: (their total time, a sum of them that keeps the
    compiler from dropping the loop)."""
    t0 = monotonic_ns()
    total = 0
    for _ in range(reads):
        total += monotonic_ns()
    return monotonic_ns() - t0, total


@kernel
def floor_responder(words, rounds):
    for i in range(rounds):
        while load_acquire(words, W_PING) != 2 * i + 1:
            pass
        store_release(words, W_PING, 2 * i + 2)


@kernel
def ring_producer(r, items, batch):
    """Push 1..items; batch=0: one publish per item, else up to ``batch`` per publish."""
    from_value = 1
    if batch == 0:
        while from_value <= items:
            if ring_try_push(r, np.int64(from_value)):
                from_value += 1
    else:
        while from_value <= items:
            n = ring_claim(r, min(batch, items - from_value + 1))
            for k in range(n):
                r.data[ring_write_slot(r, k)] = from_value + k
            if n > 0:
                ring_publish(r, n)
                from_value += n


@kernel
def ring_consumer(r, items, batch, scratch):
    """Pop ``items`` values; returns (sum, order errors)."""
    expected = 1
    total = 0
    errors = 0
    while expected <= items:
        if batch == 0:
            if ring_try_pop(r, scratch, 0):
                v = scratch[0]
                errors += v != expected
                total += v
                expected += 1
        else:
            n = ring_readable(r, batch)
            for k in range(n):
                v = r.data[ring_read_slot(r, k)]
                errors += v != expected
                total += v
                expected += 1
            if n > 0:
                ring_release(r, n)
    return total, errors


@kernel
def ring_rtt_initiator(out_ring, in_ring, rounds, hist, scratch):
    for i in range(rounds):
        t0 = monotonic_ns()
        while not ring_try_push(out_ring, np.int64(i)):
            pass
        while not ring_try_pop(in_ring, scratch, 0):
            pass
        hist_record(hist, 0, monotonic_ns() - t0)


@kernel
def ring_rtt_responder(in_ring, out_ring, rounds, scratch):
    for _ in range(rounds):
        while not ring_try_pop(in_ring, scratch, 0):
            pass
        while not ring_try_push(out_ring, scratch[0]):
            pass


@kernel
def ready_and_wait(words, me):
    """Two-party start barrier: each side sets its bit, then waits for both."""
    store_release(words, W_READY + 1 + me, 1)
    while not (load_acquire(words, W_READY + 1) and load_acquire(words, W_READY + 2)):
        pass


@kernel
def jitter_probe(duration_ns, threshold_ns, out, base):
    """Spin for ``duration_ns`` recording every clock-to-clock gap into ``out[base:]``."""
    start = monotonic_ns()
    last = start
    over = 0
    lost = 0
    while last - start < duration_ns:
        now = monotonic_ns()
        gap = now - last
        hist_record(out, base, gap)
        if gap > threshold_ns:
            over += 1
            lost += gap
        last = now
    out[base + HIST_WORDS] = over
    out[base + HIST_WORDS + 1] = lost
