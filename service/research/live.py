"""A running engine's top of book, features, model score and positions, read from Python.

::

    from service.research.live import LiveMarket

    with LiveMarket("service.toml") as market:  # the running engine's config (or a Config)
        rows = market.snapshot()  # numpy structured array: one row per instrument
        df = market.frame()  # the same as a pandas DataFrame, if pandas is installed

Each row holds the instrument, ``bid_px``, ``bid_qty``, ``ask_px``, ``ask_qty`` (ticks; a side
without levels has price -1 and size 0), ``mid`` (NaN before the first two-sided book), one
float field per feature, named as the engine names them (``FEATURE_NAMES``), the model's
``score`` of that feature row, the ``position`` in lots, and ``heartbeat_ns``: when the engine
published what the row shows (CLOCK_MONOTONIC, comparable with ``time.monotonic_ns()``; the
engine publishes every ``[service] stats_interval_us``).

The engine publishes these in the market section of its stats block
(``contracts.stats_layout``, ``MARKET_*``; ``service.kernels.market``). Reading it disturbs
nothing: the stats segment is mapped read-only and copied under the section's seqlock
(``read_section``), retried if the engine was mid-publish; the engine never waits for a reader,
and no ring is touched. Book, features and score of one snapshot are from the same moment of the
engine; the positions come from the engine's own section, published just before it.

Like the telemetry API, a reader follows the engine across restarts: each snapshot checks that
the segment it holds is still the live one and attaches anew if not. With no engine running,
or a segment of another build, ``snapshot()`` raises the segments' one-line error
(``SegmentError``, a ``CannotRunNow``); so does the constructor.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from contracts import stats_layout as L
from contracts.errors import CannotRunNow
from contracts.features import FEATURE_NAMES, N_FEATURES
from service.config import Config, load
from service.kernels.seqlock import read_section
from service.runtime.segments import attach_stats
from service.runtime.shm import Segment, SegmentError

ATTEMPTS = 1000  # seqlock reads per try (each retries only if it met the engine mid-publish)
RETRY_S = 1.0  # a snapshot gives up after this long of meeting the engine mid-publish

ROW = np.dtype(  # one instrument of a snapshot: the fields the module docstring lists
    [
        ("instrument", np.int64),
        ("bid_px", np.int64),
        ("bid_qty", np.int64),
        ("ask_px", np.int64),
        ("ask_qty", np.int64),
        ("mid", np.float64),
        *((name, np.float64) for name in FEATURE_NAMES),
        ("score", np.float64),
        ("position", np.int64),
        ("heartbeat_ns", np.int64),
    ]
)


class NotPublished(CannotRunNow):
    """The engine runs but has not published its market section yet (it is warming up)."""


def _config(config: Config | str | Path | None) -> Config:
    return config if isinstance(config, Config) else load(Path(config) if config else None)


class LiveMarket:
    """The market section of the engine that ``config`` names (its ``shm_dir`` and
    ``shm_prefix``), attached read-only; raises ``SegmentError`` when no engine runs."""

    def __init__(self, config: Config | str | Path | None = None):
        cfg = _config(config)
        self.path = Path(cfg.service.shm_dir) / f"{cfg.service.shm_prefix}.stats"
        self._copy = np.zeros(L.STATS_WORDS, dtype=np.int64)  # read_section's destination
        self._segment: Segment | None = None
        self._shared: np.ndarray | None = None
        self._attach()

    def _attach(self) -> np.ndarray:
        """The stats words of the live engine, attaching anew if the run we held has ended."""
        if self._shared is not None and self._current():
            return self._shared
        self.close()
        segment, shared = attach_stats(self.path.parent, self.path.name, writable=False)
        if not segment.owner_alive():
            pid = segment.owner_pid
            del shared
            segment.close()
            raise SegmentError(
                f"{self.path}: left by a run that has ended (pid {pid}): is the service running?"
            )
        self._segment, self._shared = segment, shared
        return shared

    def _current(self) -> bool:
        return self._segment is not None and self._segment.current()

    def _read(self, shared: np.ndarray, start: int, end: int) -> None:
        """Copy words [start, end) of a section into ``self._copy`` under its seqlock."""
        deadline = time.monotonic() + RETRY_S
        while not read_section(shared, self._copy, start, end, ATTEMPTS):
            if time.monotonic() > deadline:
                raise CannotRunNow(
                    f"{self.path}: the engine was mid-publish on every read for {RETRY_S} s"
                )
            time.sleep(0)  # let the engine's core (if shared) finish its publish

    def snapshot(self) -> np.ndarray:
        """One consistent reading: a row per instrument of the engine (dtype ``ROW``)."""
        shared = self._attach()
        copy = self._copy
        self._read(shared, L.MARKET_SECTION, L.MARKET_END)
        heartbeat = int(copy[L.MARKET_SECTION + L.HEARTBEAT_NS])
        if heartbeat == 0:
            raise NotPublished(
                f"{self.path}: the engine has not published its market yet (warming up): "
                "try again in a moment"
            )
        n = int(copy[L.MARKET_INSTRUMENTS])
        features = int(copy[L.MARKET_FEATURE_COUNT])
        if features != N_FEATURES or not 0 < n <= L.MAX_INSTRUMENTS:
            raise SegmentError(
                f"{self.path}: the engine publishes {n} instruments with {features} features, "
                f"this build reads up to {L.MAX_INSTRUMENTS} with {N_FEATURES}: written by "
                "another build of lowlat (read it with that one)"
            )
        words = L.MARKET_RECORDS + n * L.MARKET_RECORD_WORDS
        records = copy[L.MARKET_RECORDS : words].reshape(n, L.MARKET_RECORD_WORDS).copy()
        self._read(shared, L.ENGINE_SECTION, L.ENGINE_END)
        floats = records.view(np.float64)
        rows = np.zeros(n, dtype=ROW)
        rows["instrument"] = np.arange(n)
        rows["bid_px"] = records[:, L.MARKET_BID_PX]
        rows["bid_qty"] = records[:, L.MARKET_BID_QTY]
        rows["ask_px"] = records[:, L.MARKET_ASK_PX]
        rows["ask_qty"] = records[:, L.MARKET_ASK_QTY]
        rows["mid"] = floats[:, L.MARKET_MID]
        for k, name in enumerate(FEATURE_NAMES):
            rows[name] = floats[:, L.MARKET_FEATURE_WORDS + k]
        rows["score"] = floats[:, L.MARKET_SCORE]
        rows["position"] = copy[L.POSITIONS : L.POSITIONS + n]
        rows["heartbeat_ns"] = heartbeat
        return rows

    def frame(self):
        """``snapshot()`` as a pandas DataFrame indexed by instrument; needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("LiveMarket.frame needs pandas: pip install pandas") from None
        return pd.DataFrame(self.snapshot()).set_index("instrument")

    def close(self) -> None:
        """Let go of the segment (a snapshot afterwards attaches again)."""
        self._shared = None  # the view first: the mapping closes only once no view is left
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def __enter__(self) -> LiveMarket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_market(config: Config | str | Path | None = None) -> np.ndarray:
    """One ``LiveMarket(config).snapshot()``, attached and let go."""
    with LiveMarket(config) as market:
        return market.snapshot()
