"""A market-data ring in this process's memory, for kernels that write into a ring: the same
Ring the stages use, without a shared segment."""

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


def local_ring(capacity: int) -> Ring:
    ctrl = np.zeros(CONTROL_WORDS, np.int64)
    return Ring(ctrl, np.zeros(capacity, MARKET_DATA), new_local(ctrl), capacity - 1)


def drain(md: Ring) -> np.ndarray:
    """Every record waiting in ``md``, in order, copied out; their slots given back."""
    n = ring_readable(md, 1 << 30)
    out = np.array([md.data[ring_read_slot(md, k)] for k in range(n)], MARKET_DATA)
    ring_release(md, n)
    return out
