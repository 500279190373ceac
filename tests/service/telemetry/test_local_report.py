"""The local report from each document it takes, without running the pipeline.

A run document is made by ``run_figures`` itself from a stats block holding known counters and
latencies, so what ``statistics.txt`` says can be checked against the document's numbers; the
bench documents are their writers' shapes (``service.bench.figures``, ``ops.bench_doc``).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from charts.draw import DASHBOARD_PIXELS, PIXELS
from charts.text import fmt_rate, fmt_us
from contracts import stats_layout as L
from service.telemetry.local_report import (
    FILES,
    ReportError,
    document_kind,
    load_document,
    local_report,
    write_local_report,
)
from service.telemetry.timeline import RATES, point
from tests.support.bench_docs import bench_doc
from tests.support.images import png_size
from tests.support.run_docs import run_doc

BY_NAME = {m.name: m for m in L.CATALOG}


def cells(text: str, first: str) -> list[str]:
    """The cells after ``first`` in the statistics.txt row that starts with it."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    return next(row[1:] for row in rows if row[0] == first)


def test_a_run_document_makes_four_files_whose_figures_are_the_documents(tmp_path):
    doc = run_doc()
    written = write_local_report(doc, tmp_path / "out", "run")
    assert [p.name for p in written] == list(FILES)
    assert png_size(tmp_path / "out/latency_histogram.png") == PIXELS
    assert png_size(tmp_path / "out/throughput_timeline.png") == PIXELS
    assert png_size(tmp_path / "out/performance_summary.png") == DASHBOARD_PIXELS
    text = (tmp_path / "out/statistics.txt").read_text()
    lat = doc["latency_ns"]["tick_to_order"]
    assert cells(text, "tick_to_order") == [
        f"{lat['count']:,}",
        *(fmt_us(lat[k]) for k in ("p50", "p90", "p99", "p999", "max")),
    ]
    assert lat["count"] == 900 and lat["max"] is not None
    assert cells(text, "md_messages_dropped") == ["123"]
    assert cells(text, "orders_sent") == ["900"]
    assert cells(text, "orders_rejected: max_notional") == ["7"]
    assert cells(text, "market data processed / s") == [fmt_rate(600_000 / 3.0)]
    assert cells(text, "fills / s") == [fmt_rate(600 / 3.0)]
    assert cells(text, "fills") == ["600"]
    assert cells(text, "3.0") == ["199,003", "41", "300", "200", "2"]  # the timeline's rows
    assert "per-second timeline: 3 samples" in text
    assert cells(text, "slo_us.tick_to_order_p99") == ["50.0"]
    assert "started 2026-01-02T03:04:05+00:00" in text


def test_a_bench_document_draws_what_it_has(tmp_path):
    e2e = {"p50": 500.0, "p90": 800.0, "p99": 4000.0, "p999": 9000.0, "max": 20000.0, "drops": 0,
           "orders": 5000, "messages": 1_000_000, "achieved_msgs_per_s": 999_000.0}  # fmt: skip
    doc = {
        "machine": {"cpu_model": "Neoverse-N1", "cores": 2, "kernel": "6.1", "arch": "aarch64"},
        "cpus": [0, 1],
        "quick": True,
        "floor_rtt_ns": {"untimed_mean": 130.0, "p50": 250.0, "p99": 400.0},
        "clock_read_ns": 30.0,
        "e2e": {"1000000": e2e, "100000": {**e2e, "achieved_msgs_per_s": 100_000.0}},
        "e2e_split": {},
        "rate_sweep": {"3000000": {**e2e, "drops": 12, "achieved_msgs_per_s": 2.9e6}},
        "max_sustained_rate_msgs_per_s": 1_000_000,
        "ratios": {"ring_vs_cpp": 1.1},
        "ratio_spread": {"ring_vs_cpp": [0.9, 1.3]},
    }
    assert document_kind(doc) == "bench"
    write_local_report(doc, tmp_path, "bench.json")
    text = (tmp_path / "statistics.txt").read_text()
    assert cells(text, "1,000,000")[:7] == ["999,000", "0.50", "0.80", "4.00", "9.00", "20.00", "0"]
    assert cells(text, "3,000,000")[-2:] == ["12", "5,000"]
    assert cells(text, "ring_vs_cpp") == ["1.100", "0.900-1.300"]
    assert png_size(tmp_path / "performance_summary.png") == DASHBOARD_PIXELS


def test_a_bench_document_draws_the_capacity_sweep_of_each_source(tmp_path):
    e2e = {"p50": 500.0, "p90": 800.0, "p99": 4000.0, "p999": 9000.0, "max": 20000.0, "drops": 0,
           "orders": 5000, "messages": 1_000_000, "achieved_msgs_per_s": 999_000.0}  # fmt: skip
    doc = {
        "machine": {"cpu_model": "Neoverse-N1", "cores": 2, "kernel": "6.1", "arch": "aarch64"},
        "cpus": [0, 1],
        "floor_rtt_ns": {"untimed_mean": 130.0, "p50": 250.0, "p99": 400.0},
        "e2e": {"1000000": e2e},
        "stage_cost_ns": {"feed_simulator": 61.5, "fused_replay": 67.25},
        "rate_sweep": {
            "simulator": {"2000000": {**e2e, "drops": 7, "achieved_msgs_per_s": 1.9e6}},
            "replay": {"5000000": {**e2e, "drops": 0, "achieved_msgs_per_s": 5.0e6}},
        },
        "max_sustained_rate_msgs_per_s": {"simulator": 0, "replay": 5_000_000},
    }
    write_local_report(doc, tmp_path, "bench.json")
    text = (tmp_path / "statistics.txt").read_text()
    assert "capacity sweep, simulator" in text and "capacity sweep, replay" in text
    assert cells(text, "2,000,000")[:1] == ["1,900,000"] and cells(text, "2,000,000")[-2] == "7"
    assert cells(text, "5,000,000")[:1] == ["5,000,000"]
    assert cells(text, "cost per message, fused_replay") == ["67.2 ns"]
    assert "simulator 0, replay 5,000,000" in text


def test_a_fab_bench_document_draws_each_rate(tmp_path):
    doc = bench_doc()
    assert document_kind(doc) == "fab-bench"
    write_local_report(doc, tmp_path, "bench.json")
    text = (tmp_path / "statistics.txt").read_text()
    for label, run in doc["runs"].items():
        row = cells(text, label)
        assert row[1] == fmt_rate(run["achieved_rate"])
        assert row[4] == fmt_us(run["latency_ns"]["p99"])
        assert row[-1] == ("PASS" if run["verdict"]["pass"] else "MISS")


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"hello": 1}, "neither a run nor a bench document (its keys: hello)"),
        ({"rtt_ns": {}, "tick_to_order_ns": {}}, "bench --transports"),
        ({"latency_histograms_ns": {}, "counters": {}, "rates_per_s": {}}, "without 'elapsed_s'"),
        ({"e2e": {"x": {}}, "rate_sweep": {}, "floor_rtt_ns": {}}, "bad value"),
    ],
)
def test_a_document_it_cannot_draw_is_one_line(doc, words):
    with pytest.raises(ReportError) as caught:
        local_report(doc, "doc.json")
    message = str(caught.value)
    assert message.startswith("doc.json: ") and words in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        ("{oops", "not JSON"),
        ("[1, 2]", "a JSON list"),
        (b"\xff\xfe", "not text"),
    ],
)
def test_a_file_that_is_not_a_document_is_one_line(tmp_path, content, words):
    path = tmp_path / "doc.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ReportError) as caught:
        load_document(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_a_timeline_point_is_the_change_per_second():
    stats = [np.zeros(L.STATS_WORDS, dtype=np.int64) for _ in range(2)]
    stats[1][BY_NAME["md_messages_processed"].offset] = 1000
    stats[1][BY_NAME["orders_rejected"].offset : BY_NAME["orders_rejected"].offset + 2] = 3
    samples = [
        SimpleNamespace(taken_ns=t, running=True, stats=s, owner_pid=1, started_ns=5)
        for t, s in zip((10**9, 3 * 10**9), stats, strict=True)
    ]
    from service.telemetry.engine_view import Interval

    p = point(samples[0], Interval(samples[0], samples[1]))
    assert p["t_s"] == 2.0 and p["interval_s"] == 2.0
    assert p["md_messages_per_s"] == 500.0 and p["rejects_per_s"] == 3.0
    assert p["orders_per_s"] == 0.0
    assert set(RATES) <= set(p)
