"""Single-producer/single-consumer rings of fixed-size records in shared memory.

Layout of a ring segment (byte offsets)::

    0    segment header (service.runtime.shm): kind RING, capacity, record size, dtype hash
    128  head  (written only by the producer, release store)     own 128-byte line
    256  tail  (written only by the consumer, release store)     own 128-byte line
    384  records[capacity]                                        capacity is a power of two

Head and tail count records ever written / read; the slot of record ``k`` is ``k & mask``.
Each side keeps its own index and a cached copy of the other side's index in ``local``, a
small array private to its process, and re-reads the shared one (acquire load) only when the
ring looks full (producer) or empty (consumer): while data flows, a side touches only its own
line and the records. Publishing is a release store after the records are written, so a
consumer that acquires ``head`` sees the records. This is correct on arm64's weak ordering by
construction, not by x86's.

Two ways to move records, both allocation-free:

- in place: ``n = ring_claim(r, want)``; write ``r.data[ring_write_slot(r, k)]`` for k < n;
  ``ring_publish(r, n)``. Reading: ``n = ring_readable(r, want)``; read
  ``r.data[ring_read_slot(r, k)]``; ``ring_release(r, n)``.
- by copy: ``ring_try_push`` / ``ring_try_pop`` (one record, one publish) and
  ``ring_push_batch`` / ``ring_pop_batch`` (up to n records, one publish).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.constants import CACHE_LINE_BYTES
from contracts.segments import HEADER_BYTES
from service.kernels.atomics import load_acquire, load_relaxed, store_release
from service.kernels.jit import kernel

HEAD = HEADER_BYTES // 8  # int64 word of head in the control view
TAIL = (HEADER_BYTES + CACHE_LINE_BYTES) // 8
DATA_OFFSET = HEADER_BYTES + 2 * CACHE_LINE_BYTES
CONTROL_WORDS = DATA_OFFSET // 8

# local[] words: the producer's and the consumer's private indices, never shared with the
# other process. When both ends live in one fused process a single thread uses both halves,
# so nothing here can be falsely shared.
L_HEAD, L_CACHED_TAIL, L_TAIL, L_CACHED_HEAD = 0, 1, 2, 3
LOCAL_WORDS = 4

Ring = namedtuple("Ring", "ctrl data local mask")
Ring.__doc__ = "One process's handle on a ring: shared control words and records, private indices."


def new_local(ctrl: np.ndarray) -> np.ndarray:
    """A side's private indices, starting from where the ring is now (a restarted stage
    attaches to a ring that already moved)."""
    local = np.zeros(LOCAL_WORDS, dtype=np.int64)
    local[L_HEAD] = local[L_CACHED_HEAD] = ctrl[HEAD]
    local[L_TAIL] = local[L_CACHED_TAIL] = ctrl[TAIL]
    return local


# ---------------------------------------------------------------------------- producer side


@kernel
def ring_claim(r, want):
    """How many records (up to ``want``) the producer may write now."""
    capacity = r.mask + 1
    head = r.local[L_HEAD]
    free = capacity - (head - r.local[L_CACHED_TAIL])
    if free < want:  # looks too full: learn how far the consumer really is
        r.local[L_CACHED_TAIL] = load_acquire(r.ctrl, TAIL)
        free = capacity - (head - r.local[L_CACHED_TAIL])
    return min(free, want)


@kernel
def ring_write_slot(r, k):
    """Slot of the k-th record of the claimed space."""
    return (r.local[L_HEAD] + k) & r.mask


@kernel
def ring_publish(r, n):
    """Make the next ``n`` written records visible to the consumer (one release store)."""
    head = r.local[L_HEAD] + n
    r.local[L_HEAD] = head
    store_release(r.ctrl, HEAD, head)


@kernel
def ring_try_push(r, value):
    """Copy one record in and publish it; False when the ring is full."""
    if ring_claim(r, 1) == 0:
        return False
    r.data[r.local[L_HEAD] & r.mask] = value
    ring_publish(r, 1)
    return True


@kernel
def ring_push_batch(r, src, n):
    """Copy up to ``n`` records from ``src`` and publish them at once; returns how many."""
    count = ring_claim(r, n)
    head = r.local[L_HEAD]
    for k in range(count):
        r.data[(head + k) & r.mask] = src[k]
    if count > 0:
        ring_publish(r, count)
    return count


# ---------------------------------------------------------------------------- consumer side


@kernel
def ring_readable(r, want):
    """How many records (up to ``want``) the consumer may read now."""
    tail = r.local[L_TAIL]
    available = r.local[L_CACHED_HEAD] - tail
    if available == 0:  # looks empty: learn how far the producer really is
        r.local[L_CACHED_HEAD] = load_acquire(r.ctrl, HEAD)
        available = r.local[L_CACHED_HEAD] - tail
    return min(available, want)


@kernel
def ring_read_slot(r, k):
    return (r.local[L_TAIL] + k) & r.mask


@kernel
def ring_release(r, n):
    """Give ``n`` read records' slots back to the producer (one release store)."""
    tail = r.local[L_TAIL] + n
    r.local[L_TAIL] = tail
    store_release(r.ctrl, TAIL, tail)


@kernel
def ring_try_pop(r, dst, i):
    """Copy one record into ``dst[i]`` and release it; False when the ring is empty."""
    if ring_readable(r, 1) == 0:
        return False
    dst[i] = r.data[r.local[L_TAIL] & r.mask]
    ring_release(r, 1)
    return True


@kernel
def ring_pop_batch(r, dst, n):
    """Copy up to ``n`` records into ``dst`` and release them at once; returns how many."""
    count = ring_readable(r, n)
    tail = r.local[L_TAIL]
    for k in range(count):
        dst[k] = r.data[(tail + k) & r.mask]
    if count > 0:
        ring_release(r, count)
    return count


# ---------------------------------------------------------------------------- observers


@kernel
def ring_occupancy(r):
    """Records in flight, as seen from any process (never blocks either side)."""
    tail = load_relaxed(r.ctrl, TAIL)
    head = load_relaxed(r.ctrl, HEAD)
    return max(head - tail, 0)
