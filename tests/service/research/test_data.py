"""The researcher's module reads what the commands write, through the same kernels."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.features import FEATURE_NAMES
from contracts.records import MARKET_EVENT
from service.research import data
from service.research.lobster import import_lobster
from tests.support.lobster import MESSAGES, ORDERBOOK


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "day.lmd"
    import_lobster(MESSAGES, out, orderbook=ORDERBOOK)
    return out


def test_events_book_and_features(day):
    ev = data.events(day)
    assert ev.dtype == MARKET_EVENT and len(ev) > 20_000
    top = data.book(day, levels=2)
    full = np.loadtxt(ORDERBOOK, delimiter=",", dtype=np.int64, max_rows=len(top))
    assert np.array_equal(top, full[:, :8])  # the first two levels of LOBSTER's own file
    feats = data.features(day)
    assert set(FEATURE_NAMES) <= set(feats.dtype.names)
    assert (np.diff(feats["time_ns"]) >= 0).all() and np.isfinite(feats["imbalance"]).all()
    assert np.all(np.abs(feats["imbalance"]) <= 1)
    messages = data.lobster_messages(MESSAGES)
    assert len(messages) == 20_000 and messages["time_ns"][0] == 34_200_015_105_074


def test_frame_when_pandas_is_there(day):
    import pandas as pd

    df = data.frame(day)
    assert isinstance(df, pd.DataFrame) and len(df) == len(data.events(day))
    assert df["time"].iloc[-1] > df["time"].iloc[0]
