"""Fuzzing helpers: a per-example time limit, so a parser that hangs fails instead of stalling."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def time_limit(seconds: float, what: str = "the body") -> Iterator[None]:
    """Fail (rather than hang) when the body runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"{what} ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
