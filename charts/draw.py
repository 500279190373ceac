"""The charts both reports draw, one function per kind, each onto a matplotlib ``Axes``.

- ``histograms``: latency histograms from the service's log-linear buckets (log-log, counts per
  bucket as recorded, not a density);
- ``percentiles``: latency at p50 ... max, one line per series, log-scale y;
- ``throughput``: rates over time (or over the offered rate), with the offered rate as a dashed
  line and further rates on a right-hand axis.

``save_chart`` makes one figure of ``FIGSIZE`` at ``DPI`` (``PIXELS``, 1000 x 600) and saves it
at exactly that size, so scripts and tests can rely on it. matplotlib (Agg: files only, no
display) is imported by ``pyplot()`` when the first chart is drawn, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from contracts.errors import LowlatError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIGSIZE = (10, 6)  # inches
DPI = 100
PIXELS = (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)  # (width, height)
DASHBOARD_FIGSIZE = (16, 10)  # the one-page dashboard (charts.local_report)
DASHBOARD_PIXELS = (DASHBOARD_FIGSIZE[0] * DPI, DASHBOARD_FIGSIZE[1] * DPI)

# the percentiles a latency figure may carry, with the label a chart shows for each
PERCENTILES: tuple[tuple[str, str], ...] = (
    ("p50", "p50"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("p9999", "p99.99"),
    ("max", "max"),
)


@dataclass(frozen=True)
class HistogramSeries:
    """One latency histogram: its non-empty buckets as ``[index, lowest ns, highest ns, count]``
    (``service.telemetry.report.sparse_histogram``)."""

    label: str
    buckets: Sequence[Sequence[int]]


@dataclass(frozen=True)
class PercentileSeries:
    """One line of latency percentiles: ns by ``PERCENTILES`` key (None or absent: no data)."""

    label: str
    ns: Mapping[str, float | None]


@dataclass(frozen=True)
class RateSeries:
    """One line of rates: ``per_s`` at each ``x`` (seconds, or an offered rate); ``offered``
    draws a dashed horizontal line of the same colour."""

    label: str
    x: Sequence[float]
    per_s: Sequence[float | None]
    offered: float | None = None
    offered_label: str = ""
    color: str | None = None
    linestyle: str = "-"

    @classmethod
    def timeline(
        cls, label: str, points: Sequence[Mapping[str, Any]], offered: float | None
    ) -> RateSeries:
        """A run's per-second market-data rate (``t_s``, ``md_messages_per_s`` points) against
        the rate it was offered: how ``fab bench`` runs are drawn wherever they are."""
        return cls(
            f"{label}: achieved",
            [p["t_s"] for p in points],
            [p["md_messages_per_s"] for p in points],
            offered=offered,
            offered_label=f"{label}: offered",
        )


_NO_MATPLOTLIB = (
    "the report's charts need matplotlib, which is not installed here: "
    "pip install 'lowlat[ops]' (or matplotlib)"
)


def require_matplotlib() -> None:
    """LowlatError (one line) unless matplotlib can be imported; imports nothing itself."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise LowlatError(_NO_MATPLOTLIB)


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend; one line (LowlatError) when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise LowlatError(_NO_MATPLOTLIB) from None
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    from matplotlib import pyplot as plt

    return plt


def save_chart(path: Path, draw: Callable[[Axes], None]) -> None:
    """One chart of ``FIGSIZE`` at ``DPI``: ``draw(ax)``, a light grid, saved to ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        draw(ax)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": keep the pixel size
    finally:
        plt.close(fig)


def no_data(ax: Axes, text: str) -> None:
    """Say in the middle of the axes why there is nothing to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)


def histograms(ax: Axes, series: Sequence[HistogramSeries], empty: str) -> bool:
    """Each series' buckets as a step line, log-log; ``empty`` when none has a sample."""
    drawn = False
    for s in series:
        if not s.buckets:
            continue
        # a bucket's middle value against its count; buckets widen with the value, so counts
        # are per bucket, as recorded (not a density)
        mids = [max((row[1] + row[2]) / 2, 1) / 1000 for row in s.buckets]
        counts = [row[3] for row in s.buckets]
        ax.step(mids, counts, where="mid", label=s.label)
        drawn = True
    ax.set_xlabel("latency, µs (log scale)")
    ax.set_ylabel("messages per bucket (log scale)")
    if drawn:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    else:
        no_data(ax, empty)
    return drawn


def percentiles(
    ax: Axes,
    series: Sequence[PercentileSeries],
    empty: str,
    keys: Sequence[tuple[str, str]] = PERCENTILES,
) -> bool:
    """Latency at each of ``keys`` (µs, log-scale y), one line per series."""
    xs = list(range(len(keys)))
    drawn = False
    for s in series:
        ys = [s.ns.get(key) for key, _ in keys]
        points = [(x, y / 1000) for x, y in zip(xs, ys, strict=True) if y]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=s.label)
            drawn = True
    ax.set_xticks(xs, [shown for _, shown in keys])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency, µs (log scale)")
    if drawn:
        ax.set_yscale("log")
        ax.legend()
    else:
        no_data(ax, empty)
    return drawn


@dataclass(frozen=True)
class Throughput:
    """What a throughput chart draws: rates on the left axis, ``right`` on a second axis of
    its own scale, against ``xlabel`` (seconds, or the offered rate with ``log_x``)."""

    series: Sequence[RateSeries] = ()
    right: Sequence[RateSeries] = ()
    right_label: str = ""
    xlabel: str = "seconds since all stages ran"
    ylabel: str = "market-data messages / s"
    empty: str = "no per-second samples"
    log_x: bool = False


def throughput(ax: Axes, chart: Throughput) -> bool:
    """``chart``'s rates against x, and its right-hand rates on a second y axis; one legend."""
    drawn = _rate_lines(ax, chart.series)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if any(s.x for s in chart.right):
        twin = ax.twinx()
        _rate_lines(twin, chart.right)
        twin.set_ylabel(chart.right_label)
        twin.set_ylim(bottom=0)
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
        drawn = True
    if drawn:
        if chart.log_x:
            ax.set_xscale("log")
        else:
            ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(handles, labels, loc="lower right")
    else:
        no_data(ax, chart.empty)
    return drawn


def _rate_lines(ax: Axes, series: Sequence[RateSeries]) -> bool:
    drawn = False
    for s in series:
        points = [(x, y) for x, y in zip(s.x, s.per_s, strict=True) if y is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        line = ax.plot(xs, ys, marker=".", label=s.label, color=s.color, linestyle=s.linestyle)
        if s.offered is not None:
            ax.axhline(
                s.offered,
                linestyle="--",
                color=line[0].get_color(),
                alpha=0.6,
                label=s.offered_label or f"{s.label}: offered",
            )
        drawn = True
    return drawn
