"""The stats block: seqlocked sections, snapshots and ``describe``, and the layout's invariants.

A writer caught mid-publish is simulated by leaving a section's sequence word odd; everything
here runs in one process (the cross-process ordering is the atomics' job, tested by reading
their arm64 code in test_atomics_arm64.py).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from contracts import stats_layout as L
from contracts.buckets import HIST_MAX, HIST_SUM, HIST_WORDS, N_BUCKETS
from contracts.stages import S_DRAINING, S_RUNNING, STAGES, STATE_NAMES
from service.kernels.histogram import hist_record
from service.kernels.seqlock import publish_section, read_section, set_state
from service.runtime.segments import attach_stats, create_stats
from service.runtime.stats import describe, snapshot

SECTIONS = list(zip(STAGES, L.SECTION_START, L.SECTION_END, strict=True))
NOW = 1_234_567_890_123


@pytest.fixture
def block(tmp_path):
    """(writer's shared view, reader's shared view) of a fresh stats segment."""
    _, shared = create_stats(tmp_path, "stats")
    _, reader = attach_stats(tmp_path, "stats", writable=False)
    return shared, reader


def _filled_local(seed: int = 0) -> np.ndarray:
    """A stage's private block with distinct non-zero values in every section word."""
    rng = np.random.default_rng(seed)
    local = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for _, start, end in SECTIONS:
        local[start + 1 : end] = rng.integers(1, 2**62, end - start - 1)
    return local


# --------------------------------------------------------------------------- seqlock


@pytest.mark.parametrize(("stage", "start", "end"), SECTIONS)
def test_publish_then_read_round_trip(block, stage, start, end):
    shared, reader = block
    local = _filled_local()
    publish_section(shared, local, start, end, NOW)
    assert local[start + L.HEARTBEAT_NS] == NOW
    assert shared[start] == 2  # even: no update in progress, one update done
    np.testing.assert_array_equal(shared[start + 1 : end], local[start + 1 : end])
    others = np.ones(L.STATS_WORDS, dtype=bool)
    others[start:end] = False
    assert not shared[others].any()  # nothing outside the section was written

    out = np.zeros(L.STATS_WORDS, dtype=np.int64)
    assert read_section(reader, out, start, end, 3)
    np.testing.assert_array_equal(out[start + 1 : end], local[start + 1 : end])
    assert out[start] == 2 and not out[others].any()

    local[end - 1] += 1
    publish_section(shared, local, start, end, NOW + 1)
    assert shared[start] == 4 and shared[start + L.HEARTBEAT_NS] == NOW + 1
    assert read_section(reader, out, start, end, 3)
    assert out[end - 1] == local[end - 1]


def test_read_fails_while_a_writer_is_mid_publish_and_succeeds_after(block):
    shared, reader = block
    start, end = L.ENGINE_SECTION, L.ENGINE_END
    local = _filled_local()
    publish_section(shared, local, start, end, NOW)
    shared[start] = 3  # a writer has begun the next update
    shared[start + 5] = -1  # and is halfway through the data
    out = np.full(L.STATS_WORDS, 7, dtype=np.int64)
    assert not read_section(reader, out, start, end, 1000)
    assert (out == 7).all()  # a failed read leaves the copy as it was
    shared[start + 5] = local[start + 5]
    shared[start] = 4  # the writer finished
    assert read_section(reader, out, start, end, 1)
    np.testing.assert_array_equal(out[start + 1 : end], local[start + 1 : end])
    assert out[start] == 4


def test_a_section_left_mid_publish_by_a_killed_writer_is_repaired_by_the_next_publish(block):
    shared, reader = block
    start, end = L.GATEWAY_SECTION, L.GATEWAY_END
    shared[start] = 7  # the previous writer died between its two sequence stores
    out = np.zeros(L.STATS_WORDS, dtype=np.int64)
    assert not read_section(reader, out, start, end, 10)
    local = _filled_local(3)
    publish_section(shared, local, start, end, NOW)
    assert read_section(reader, out, start, end, 1)
    assert shared[start] % 2 == 0
    np.testing.assert_array_equal(out[start + 2 : end], local[start + 2 : end])
    set_state(shared, local, start, S_RUNNING)
    assert read_section(reader, out, start, end, 1) and out[start + L.STATE] == S_RUNNING


def test_set_state_publishes_only_the_state(block):
    shared, reader = block
    start = L.GATEWAY_SECTION
    local = _filled_local()
    publish_section(shared, local, start, L.GATEWAY_END, NOW)
    counters = shared[start + 4 : L.GATEWAY_END].copy()
    local[start + 4 :] = 0  # unpublished counter changes must not leak out with the state
    set_state(shared, local, start, S_DRAINING)
    assert local[start + L.STATE] == S_DRAINING
    assert shared[start] == 4 and shared[start + L.STATE] == S_DRAINING
    np.testing.assert_array_equal(shared[start + 4 : L.GATEWAY_END], counters)
    assert describe(snapshot(reader))["stages"]["gateway"]["state"] == "draining"


# --------------------------------------------------------------------------- snapshot, describe


def _published_block(shared: np.ndarray) -> np.ndarray:
    local = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for stage, (_, start, end) in enumerate(SECTIONS):
        local[start + L.STATE] = S_RUNNING
        local[start + L.PID] = 1000 + stage
        local[start + 4 : end] = np.arange(4, end - start) * 10 + stage
        publish_section(shared, local, start, end, NOW + stage)
    for k, metric in enumerate(m for m in L.CATALOG if m.kind == "histogram"):
        for value in (100 * (k + 1), 200 * (k + 1), 5000 * (k + 1)):
            hist_record(shared, metric.offset, value)
    return local


def test_snapshot_copies_sections_and_histograms(block):
    shared, reader = block
    _published_block(shared)
    snap = snapshot(reader)
    np.testing.assert_array_equal(snap, shared)
    shared[L.FEED_SECTION] += 1  # the feed's writer is stuck mid-publish
    snap = snapshot(reader)
    feed = slice(L.FEED_SECTION, L.FEED_END)
    engine = slice(L.ENGINE_SECTION, L.STATS_WORDS)
    np.testing.assert_array_equal(snap[engine], shared[engine])  # the others are unaffected
    assert not snap[feed].any()  # and a half-written section is never shown


def test_describe_names_every_metric_with_its_labels(block):
    shared, reader = block
    _published_block(shared)
    d = describe(snapshot(reader), n_instruments=5)
    assert set(d) == {"stages"} | {m.name for m in L.CATALOG}
    assert list(d["stages"]) == list(STAGES)
    for stage, name in enumerate(STAGES):
        assert d["stages"][name] == {
            "state": "running",
            "heartbeat_ns": NOW + stage,
            "pid": 1000 + stage,
        }
    for metric in L.CATALOG:
        value = d[metric.name]
        start = L.SECTION_START[metric.stage]
        if metric.kind == "histogram":
            assert set(value) == {"count", "mean", "p50", "p90", "p99", "p999", "max"}
            assert value["count"] == 3 and value["max"] == shared[metric.offset + HIST_MAX]
        elif metric.words > 1:
            labels = list(value)
            if metric.label == "reason":
                assert labels == list(L.REJECT_REASONS)
            else:
                assert metric.label == "instrument" and labels == ["0", "1", "2", "3", "4"]
            for i, label in enumerate(labels):
                assert value[label] == (metric.offset + i - start) * 10 + metric.stage
        else:
            assert value == (metric.offset - start) * 10 + metric.stage


def test_describe_of_an_empty_block():
    d = describe(np.zeros(L.STATS_WORDS, dtype=np.int64))
    assert all(s["state"] == "absent" for s in d["stages"].values())
    assert len(d["position"]) == L.MAX_INSTRUMENTS
    assert d["orders_rejected"] == dict.fromkeys(L.REJECT_REASONS, 0)
    assert d["feed_lag"]["count"] == 0


@pytest.mark.parametrize("state", range(len(STATE_NAMES)))
def test_set_state_shows_in_describe(block, state):
    shared, reader = block
    local = np.zeros(L.STATS_WORDS, dtype=np.int64)
    set_state(shared, local, L.ENGINE_SECTION, state)
    stages = describe(snapshot(reader))["stages"]
    assert stages["engine"]["state"] == STATE_NAMES[state]
    assert stages["feed"]["state"] == stages["gateway"]["state"] == "absent"


# --------------------------------------------------------------------------- layout


def _metric_words(metric: L.Metric) -> range:
    size = HIST_WORDS if metric.kind == "histogram" else metric.words
    return range(metric.offset, metric.offset + size)


def test_sections_start_on_lines_and_do_not_overlap():
    assert L.SECTION_START[0] == 0
    for start, end in zip(L.SECTION_START, L.SECTION_END, strict=True):
        assert start % L.LINE_WORDS == 0 and end > start + L.PID
    for end, next_start in zip(L.SECTION_END, L.SECTION_START[1:], strict=False):
        assert end <= next_start
    assert L.STATS_WORDS % L.LINE_WORDS == 0


def test_every_metric_word_is_owned_once_and_in_bounds():
    owner: dict[int, str] = {}
    for metric in L.CATALOG:
        for word in _metric_words(metric):
            assert word not in owner, (metric.name, owner.get(word))
            owner[word] = metric.name
    assert max(owner) < L.STATS_WORDS and min(owner) >= 0
    last_section_end = max(L.SECTION_END)
    for metric in L.CATALOG:
        start, end = L.SECTION_START[metric.stage], L.SECTION_END[metric.stage]
        if metric.kind == "histogram":
            assert metric.offset >= last_section_end
            assert metric.offset % L.LINE_WORDS == 0
        else:
            assert start + L.PID < metric.offset and metric.offset + metric.words <= end
    # every counter and gauge word of a section has a name (nothing published unexplained)
    for start, end in zip(L.SECTION_START, L.SECTION_END, strict=True):
        assert all(word in owner for word in range(start + L.PID + 1, end))


def test_metric_names_and_kinds():
    names = [m.name for m in L.CATALOG]
    assert len(names) == len(set(names))
    for metric in L.CATALOG:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", metric.name), metric.name
        assert metric.kind in ("counter", "gauge", "histogram")
        parts = metric.name.split("_")
        assert all(a != b for a, b in itertools.pairwise(parts)), metric.name
        # the exporter appends the unit: counters get _total, histograms their time unit
        assert not metric.name.endswith("_total"), metric.name
        if metric.kind == "histogram":
            assert not re.search(r"_(ns|us|ms|s|seconds|nanoseconds)$", metric.name)
        assert metric.help.strip() and "\n" not in metric.help
        assert (metric.words > 1) == bool(metric.label)
        assert metric.label in ("", "reason", "instrument")
    labelled = {m.label: m.words for m in L.CATALOG if m.label}
    assert labelled == {"reason": len(L.REJECT_REASONS), "instrument": L.MAX_INSTRUMENTS}


def test_histogram_words_hold_buckets_sum_and_max():
    assert HIST_SUM == N_BUCKETS and HIST_MAX == N_BUCKETS + 1 and HIST_WORDS == N_BUCKETS + 2
