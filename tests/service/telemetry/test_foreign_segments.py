"""Segments that are there but not this build's, or hold what no stage writes, are never served
as numbers: the sample says why, ``/ready`` shows it (503) and ``trading_up`` is 0."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from contracts import stats_layout as L
from contracts.stages import S_RUNNING
from service.telemetry import exposition as M
from service.telemetry.engine_view import EngineView
from tests.support.exposition import samples_of, value
from tests.support.synthetic_engine import SyntheticEngine

_H_LAYOUT, _H_VERSION = 7, 1  # header words (service.runtime.shm)


@pytest.fixture
def engine(tmp_path, request) -> SyntheticEngine:
    engine = SyntheticEngine(tmp_path)
    request.addfinalizer(engine.close)
    engine.set_states(S_RUNNING)
    engine.local[L.MD_SENT] = 1000
    engine.publish()
    assert EngineView(engine.config).sample().running  # whole, it is served
    return engine


def _header(engine) -> np.ndarray:
    path = engine.segments.shm_dir / f"{engine.segments.prefix}.stats"
    return np.memmap(path, dtype=np.int64, mode="r+", shape=(16,))


def _refused(engine, why: str) -> None:
    sample = EngineView(engine.config).sample()
    assert not sample.running and sample.block is None
    assert sample.problem and why in sample.problem, sample.problem
    samples = samples_of(M.render(sample, engine.config))
    assert value(samples, "trading_up") == 0.0
    assert "trading_md_messages_sent_total" not in samples  # no number from it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from service.telemetry.api import create_app

    response = TestClient(create_app(engine.config)).get("/ready")
    assert response.status_code == 503
    assert any(why in reason for reason in response.json()["reasons"]), response.json()


def test_a_stats_segment_of_another_layout_is_refused(engine):
    _header(engine)[_H_LAYOUT] ^= 0x5A5A
    _refused(engine, "another build of lowlat")


def test_a_stats_segment_of_another_header_version_is_refused(engine):
    _header(engine)[_H_VERSION] = 1
    _refused(engine, "header version 1")


def test_a_truncated_stats_segment_is_refused(engine):
    path = engine.segments.shm_dir / f"{engine.segments.prefix}.stats"
    os.truncate(path, path.stat().st_size - 4096)
    _refused(engine, "truncated or foreign")


def test_a_block_with_a_negative_counter_is_refused(engine):
    engine.local[L.MD_SENT] = -5
    engine.publish()
    _refused(engine, "negative counter (md_messages_sent)")


def test_a_block_with_an_unknown_stage_state_is_refused(engine):
    engine.stats[L.SECTION_START[1] + L.STATE] = 99
    _refused(engine, "stage state 99")
