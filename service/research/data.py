"""The research path from Python: recordings and LOBSTER files as arrays, books and features.

::

    from service.research import data

    events = data.events("day.lmd")             # MARKET_EVENT records (numpy structured)
    frame = data.frame("day.lmd")               # the same as a pandas DataFrame, if installed
    book = data.book("day.lmd", levels=5)       # top 5 levels after every message (LOBSTER order)
    feats = data.features("day.lmd")            # the engine's features after every level update
    msgs = data.lobster_messages("MSG.csv")     # a LOBSTER message file, checked, as events

Everything here runs the service's own kernels (the order-level book, the engine's book and
feature kernels), so what a notebook sees is what the engine would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.features import FEATURE_NAMES
from service.config import Config, load
from service.research.lobster import book_rows, read_messages
from service.research.train import feature_rows
from service.runtime.recording import open_recording


def events(path: str | Path) -> np.ndarray:
    """A version-2 recording's MARKET_EVENT records, or a version-1 recording's MARKET_DATA
    records, mapped read-only (validated when opened)."""
    recording = open_recording(path)
    return recording.events if recording.events is not None else recording.records


def frame(path: str | Path):
    """``events(path)`` as a pandas DataFrame (a time column in pandas' time of day when the
    recording has times); needs pandas."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("data.frame needs pandas: pip install pandas") from None
    records = np.asarray(events(path))
    columns = {name: records[name] for name in records.dtype.names or () if name != "reserved"}
    df = pd.DataFrame(columns)
    if "time_ns" in df:
        df["time"] = pd.to_timedelta(df["time_ns"], unit="ns")
    return df


def book(path: str | Path, levels: int = 10) -> np.ndarray:
    """The top ``levels`` after every message of an imported recording, as LOBSTER's
    orderbook file has them: ask price, ask size, bid price, bid size per level (dollars x
    10000; a missing level as 9999999999 / -9999999999, size 0)."""
    rows, _ = book_rows(Path(path), levels)
    return rows


def features(path: str | Path, config: Config | str | Path | None = None) -> np.ndarray:
    """The engine's features after every level update with valid features: a structured
    array with the time (ns), instrument, mid (ticks) and one field per feature."""
    cfg = config if isinstance(config, Config) else load(Path(config) if config else None)
    values, meta = feature_rows(open_recording(path), cfg)
    out = np.zeros(
        len(values),
        dtype=[("time_ns", np.int64), ("instrument", np.int64), ("mid", np.float64)]
        + [(name, np.float64) for name in FEATURE_NAMES],
    )
    out["time_ns"] = meta[:, 0]
    out["instrument"] = meta[:, 1]
    out["mid"] = meta[:, 2]
    for k, name in enumerate(FEATURE_NAMES):
        out[name] = values[:, k]
    return out


def lobster_messages(path: str | Path, tick: float = 0.01) -> np.ndarray:
    """A LOBSTER message file (csv or csv.gz) as MARKET_EVENT records, checked row by row
    as ``trading-service import`` does (a bad row raises LobsterError with file:line)."""
    units = round(tick * 10_000)
    records, _ = read_messages(Path(path), units)
    return records
