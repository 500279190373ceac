"""A ring in this process's memory, for kernels that write into a ring: the same Ring the stages
use, without a shared segment (market data by default, or fills)."""

from __future__ import annotations

import numpy as np

from contracts.records import MARKET_DATA
from service.kernels.ring import (
    CONTROL_WORDS,
    Ring,
    new_local,
    ring_read_slot,
    ring_readable,
    ring_release,
)


def local_ring(capacity: int, dtype: np.dtype = MARKET_DATA) -> Ring:
    ctrl = np.zeros(CONTROL_WORDS, np.int64)
    return Ring(ctrl, np.zeros(capacity, dtype), new_local(ctrl), capacity - 1)


def drain(ring: Ring) -> np.ndarray:
    """Every record waiting in ``ring``, in order, copied out; their slots given back."""
    n = ring_readable(ring, 1 << 30)
    out = np.array([ring.data[ring_read_slot(ring, k)] for k in range(n)], ring.data.dtype)
    ring_release(ring, n)
    return out
