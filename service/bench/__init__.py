"""``trading-service bench`` and the hiccup probe: figures measured side by side in one run.

``run`` orders the steps, ``harness`` starts the pinned processes they measure with,
``measures`` holds the floor, rings, multiprocessing.Queue and kernels (``order_events`` makes
the order book's input), ``e2e`` the pipeline end to end (with ``http_load`` beside it),
``figures`` the shape of the document, ``report`` its ratios and tables; ``jitter`` is the
hiccup probe and ``baseline`` the C++ ring.
"""

from contracts.errors import CannotRunNow


class BenchError(CannotRunNow, RuntimeError):
    """The benchmark cannot run here as asked (the message says why)."""
