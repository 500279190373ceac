"""A backtest's report directory: plots a desk would rather look at, and the figures as text.

``write_report(result, sensitivity, out)`` writes::

    equity.png               equity and drawdown over the day
    pnl_by_hour.png          P&L made in each hour of the session
    latency_sensitivity.png  P&L at each order latency tried (the desk's first question)
    summary.md               the figures as a table, with what they mean
    stats.json               the figures for scripts

Files are written under temporary names and renamed, so a failed report leaves none half
written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contracts.errors import LowlatError
from service.research.backtest import BacktestResult

HOUR_NS = 3_600 * 10**9


def _clock(ns_after_midnight: float) -> str:
    s = int(ns_after_midnight // 10**9)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    os.replace(tmp, path)


def pnl_by_hour(curve: np.ndarray) -> list[tuple[int, float]]:
    """(hour of day, equity change within it) for every hour the curve covers."""
    if len(curve) == 0:
        return []
    hours = (curve[:, 0] // HOUR_NS).astype(np.int64)
    out = []
    start_equity = 0.0
    for hour in np.unique(hours):
        last = curve[hours == hour][-1, 1]
        out.append((int(hour), float(last - start_equity)))
        start_equity = last
    return out


def write_report(
    result: BacktestResult, sensitivity: Sequence[tuple[int, float]], out: Path, title: str
) -> list[Path]:
    """Write the report into ``out`` (created); returns the files written."""
    try:
        import matplotlib
    except ImportError:
        raise LowlatError(
            "the report's plots need matplotlib, which is not installed here: "
            "pip install 'lowlat[research]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    curve = result.curve
    written = []

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=[3, 1])
    hours = curve[:, 0] / HOUR_NS
    equity = curve[:, 1]
    top.plot(hours, equity, color="#1f5fa8", linewidth=1.2, label="equity (P&L after fees)")
    top.plot(hours, curve[:, 3], color="#7a7a7a", linewidth=0.8, label="realized")
    top.axhline(0, color="black", linewidth=0.5)
    top.set_ylabel("$")
    top.legend(loc="upper left")
    top.set_title(title)
    bottom.fill_between(hours, -(np.maximum.accumulate(equity) - equity), color="#b03030")
    bottom.set_ylabel("drawdown $")
    bottom.set_xlabel("hour of day (recorded time)")
    _save(fig, out / "equity.png")
    plt.close(fig)
    written.append(out / "equity.png")

    by_hour = pnl_by_hour(curve)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(
        [f"{h:02d}:00" for h, _ in by_hour],
        [p for _, p in by_hour],
        color=["#2e7d32" if p >= 0 else "#b03030" for _, p in by_hour],
    )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("P&L $")
    ax.set_title("P&L by hour")
    _save(fig, out / "pnl_by_hour.png")
    plt.close(fig)
    written.append(out / "pnl_by_hour.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = [max(ns, 1) / 1000 for ns, _ in sensitivity]
    ax.plot(xs, [p for _, p in sensitivity], marker="o", color="#1f5fa8")
    ax.set_xscale("log")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("order latency, us (0 drawn at 0.001)")
    ax.set_ylabel("P&L $")
    ax.set_title("P&L against order latency")
    _save(fig, out / "latency_sensitivity.png")
    plt.close(fig)
    written.append(out / "latency_sensitivity.png")

    stats = dict(result.stats)
    stats["latency_sensitivity"] = [{"order_ns": ns, "pnl": round(p, 2)} for ns, p in sensitivity]
    stats["pnl_by_hour"] = [{"hour": h, "pnl": round(p, 2)} for h, p in by_hour]
    _write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    written.append(out / "stats.json")
    _write_text(out / "summary.md", _summary(stats, title, curve))
    written.append(out / "summary.md")
    return written


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _summary(stats: dict, title: str, curve: np.ndarray) -> str:
    span = f"{_clock(curve[0, 0])}-{_clock(curve[-1, 0])}" if len(curve) else "-"
    lat = stats["latency_ns"]
    rows = [
        ("P&L after fees", f"${stats['pnl']:,.2f}"),
        (
            "realized / unrealized",
            f"${stats['realized_pnl']:,.2f} / ${stats['unrealized_pnl']:,.2f}",
        ),
        (
            "fees",
            f"${stats['fees']:,.2f} (per share: taker {stats['taker_fee_per_share']}, "
            f"maker {stats['maker_fee_per_share']})",
        ),
        (
            "joined orders: rested / expired / qty filled resting",
            f"{stats['rested_orders']:,} / {stats['expired_orders']:,} / {stats['maker_qty']:,}",
        ),
        ("max drawdown", f"${stats['max_drawdown']:,.2f}"),
        ("Sharpe", f"{stats['sharpe']:.4f} per {stats['sharpe_period']}"),
        ("orders / trades (fills)", f"{stats['orders']:,} / {stats['trades']:,}"),
        ("fill ratio", f"{stats['fill_ratio']:.2%}"),
        ("rejected by risk", f"{stats['rejected_by_risk']:,}"),
        ("turnover", f"${stats['turnover']:,.0f}"),
        ("final position", ", ".join(f"#{k} {v:+d}" for k, v in stats["final_position"].items())),
        ("events replayed", f"{stats['events']:,} at {stats['events_per_s'] or 0:,.0f}/s"),
        ("latency", f"feed {lat['feed']:,} ns, order {lat['order']:,} ns"),
    ]
    sens = "\n".join(
        f"| {s['order_ns']:,} ns | ${s['pnl']:,.2f} |" for s in stats["latency_sensitivity"]
    )
    return (
        f"# {title}\n\nRecorded time {span}. The live engine's kernels (book, features, model, "
        "strategy, risk) decided; its immediate-or-cancel orders filled against the order "
        "book rebuilt from the recording, as recorded (no market impact).\n\n"
        "| figure | value |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in rows)
        + "\n\n## P&L at other order latencies\n\n| order latency | P&L |\n|---|---|\n"
        + sens
        + "\n\n![equity](equity.png)\n![P&L by hour](pnl_by_hour.png)\n"
        "![latency sensitivity](latency_sensitivity.png)\n"
    )
