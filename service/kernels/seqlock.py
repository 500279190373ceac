"""The seqlock over the stats block: stages publish into it, readers copy it lock-free.

Layout and meaning of every word: ``contracts.stats_layout``. A stage keeps a private copy of
the whole block (``local``), updates its own section's counters there with plain stores, and
every few hundred microseconds copies that section out under its seqlock
(``publish_section``). A reader copies each section under the seqlock (``read_section``) and
retries only if the owner was mid-publish; the writer never waits for a reader, so a scrape
can never stall a stage.
"""

from __future__ import annotations

from contracts import stats_layout as L
from service.kernels.atomics import (
    fence_acquire,
    fence_release,
    load_acquire,
    load_relaxed,
    store_relaxed,
    store_release,
)
from service.kernels.jit import kernel


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
