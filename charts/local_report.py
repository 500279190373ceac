"""The local report of one run (or one bench): four files, whatever document they come from.

``render_local_report(report, out)`` writes into ``out``:

- ``latency_histogram.png``: the latency histograms (``charts.draw.histograms``);
- ``throughput_timeline.png``: rates over the run, second by second (``charts.draw.throughput``);
- ``performance_summary.png``: a one-page dashboard of ``DASHBOARD_PIXELS``: percentiles,
  histogram, throughput and the key figures (counters, drops, orders) on one figure;
- ``statistics.txt``: every figure as plain-text tables (``report.statistics``, as given).

What goes in (``LocalReport``) is plain data: the service turns its run and bench documents
into it (``service.telemetry.local_report``), so the drawing knows nothing of the service.
The files are drawn in a hidden directory beside ``out`` and moved in when all are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from charts.draw import (
    DASHBOARD_FIGSIZE,
    DPI,
    PERCENTILES,
    HistogramSeries,
    PercentileSeries,
    Throughput,
    histograms,
    percentiles,
    pyplot,
    save_chart,
    throughput,
)
from charts.staging import write_staged

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FILES = (
    "latency_histogram.png",
    "throughput_timeline.png",
    "performance_summary.png",
    "statistics.txt",
)


@dataclass(frozen=True)
class LocalReport:
    """Everything the four files show, as plain data."""

    title: str  # one line: what ran, for how long, where
    statistics: str  # statistics.txt, whole
    histograms: Sequence[HistogramSeries] = ()
    histogram_empty: str = "no latency recorded"
    percentiles: Sequence[PercentileSeries] = ()
    percentile_keys: Sequence[tuple[str, str]] = PERCENTILES
    throughput: Throughput = field(default_factory=Throughput)
    key_figures: Sequence[tuple[str, str]] = ()  # the dashboard's text panel


def render_local_report(report: LocalReport, out: Path) -> list[Path]:
    """Write the four files of ``report`` into ``out`` (created); the paths written."""
    return write_staged(out, lambda staging: _draw(report, staging))


def _draw(report: LocalReport, out: Path) -> list[str]:
    def histogram_chart(ax: Axes) -> None:
        ax.set_title(f"latency histogram — {report.title}")
        histograms(ax, report.histograms, report.histogram_empty)

    def throughput_chart(ax: Axes) -> None:
        ax.set_title(f"throughput — {report.title}")
        throughput(ax, report.throughput)

    save_chart(out / "latency_histogram.png", histogram_chart)
    save_chart(out / "throughput_timeline.png", throughput_chart)
    _dashboard(report, out / "performance_summary.png")
    (out / "statistics.txt").write_text(report.statistics)
    return list(FILES)


def _dashboard(report: LocalReport, path: Path) -> None:
    """Percentiles, histogram, throughput and the key figures on one page."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=DASHBOARD_FIGSIZE, dpi=DPI)
    try:
        (lat, hist), (rate, text) = axes
        fig.suptitle(report.title, fontsize=13)
        lat.set_title("latency percentiles")
        percentiles(lat, report.percentiles, "no latency recorded", report.percentile_keys)
        hist.set_title("latency histogram")
        histograms(hist, report.histograms, report.histogram_empty)
        rate.set_title("throughput")
        throughput(rate, report.throughput)
        for ax in (lat, hist, rate):
            ax.grid(True, which="both", alpha=0.3)
        text.set_title("key figures")
        text.axis("off")
        width = max((len(label) for label, _ in report.key_figures), default=0)
        lines = [f"{label.ljust(width)}  {value}" for label, value in report.key_figures]
        text.text(
            0.0,
            1.0,
            "\n".join(lines) or "no figures",
            family="monospace",
            fontsize=10,
            va="top",
            ha="left",
            transform=text.transAxes,
        )
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": keep the pixel size
    finally:
        plt.close(fig)
