"""The shared drawing: pixel sizes, staging all or nothing, number formats and text tables."""

from __future__ import annotations

import pytest

from charts.draw import (
    DASHBOARD_PIXELS,
    PIXELS,
    HistogramSeries,
    PercentileSeries,
    RateSeries,
    Throughput,
    histograms,
    percentiles,
    save_chart,
    throughput,
)
from charts.local_report import FILES, LocalReport, render_local_report
from charts.staging import write_staged
from charts.text import fmt_ns, fmt_rate, fmt_us, table
from tests.support.images import png_size


def test_formats():
    assert fmt_us(None) == fmt_rate(None) == fmt_ns(None) == "-"
    assert fmt_us(1234.5) == "1.23"
    assert fmt_rate(1_234_567.4) == "1,234,567"
    assert (fmt_ns(999), fmt_ns(1500), fmt_ns(2_500_000)) == ("999 ns", "1.50 µs", "2.50 ms")


def test_table_aligns_columns_and_refuses_ragged_rows():
    text = table(("name", "value"), [("a", "1"), ("longer", "1,000")], title="t")
    assert text.splitlines() == [
        "t",
        "name    value",
        "------  -----",
        "a           1",
        "longer  1,000",
    ]
    with pytest.raises(ValueError, match="2 cells under 3 columns"):
        table(("a", "b", "c"), [("1", "2")])


def test_each_chart_draws_at_the_documented_size_with_and_without_data(tmp_path):
    rows = [[10, 100, 110, 5], [20, 1000, 1100, 7]]
    charts = {
        "hist": lambda ax: histograms(ax, [HistogramSeries("x", rows)], "none"),
        "hist_empty": lambda ax: histograms(ax, [HistogramSeries("x", [])], "none"),
        "pct": lambda ax: percentiles(ax, [PercentileSeries("x", {"p50": 900, "max": 5e4})], "-"),
        "rate": lambda ax: throughput(
            ax,
            Throughput(
                [RateSeries("md", [1, 2], [10.0, None], offered=12)],
                right=[RateSeries("orders", [1, 2], [1.0, 2.0])],
            ),
        ),
        "rate_empty": lambda ax: throughput(ax, Throughput()),
    }
    for name, draw in charts.items():
        save_chart(tmp_path / f"{name}.png", draw)
        assert png_size(tmp_path / f"{name}.png") == PIXELS, name


def test_the_local_report_is_four_files_at_their_sizes(tmp_path):
    report = LocalReport(
        title="t",
        statistics="figures\n",
        histograms=[HistogramSeries("tick_to_order", [[10, 100, 110, 5]])],
        percentiles=[PercentileSeries("tick_to_order", {"p50": 100.0, "p99": 2000.0})],
        key_figures=[("orders", "5")],
    )
    written = render_local_report(report, tmp_path / "out")
    assert [p.name for p in written] == list(FILES)
    assert png_size(tmp_path / "out/latency_histogram.png") == PIXELS
    assert png_size(tmp_path / "out/throughput_timeline.png") == PIXELS
    assert png_size(tmp_path / "out/performance_summary.png") == DASHBOARD_PIXELS
    assert (tmp_path / "out/statistics.txt").read_text() == "figures\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left


def test_staging_moves_in_all_or_nothing(tmp_path):
    out = tmp_path / "out"

    def half(staging):
        (staging / "a.txt").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_staged(out, half)
    assert list(tmp_path.iterdir()) == []

    def whole(staging):
        (staging / "a.txt").write_text("a")
        return ["a.txt"]

    assert write_staged(out, whole) == [out / "a.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
