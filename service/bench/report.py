"""The ratios a run is judged by, their goals, and the tables ``trading-service bench`` prints.

The machines this runs on are shared and noisy, so the figures that carry goals are ratios of
things measured in the same run: the ring against ``multiprocessing.Queue`` and against a C++
ring of the same shape, and latencies against this machine's floor (a cross-core ping-pong on
one cache line: no ring moves data between cores faster than that).
"""

from __future__ import annotations

import sys

import numpy as np
from rich.console import Console
from rich.table import Table

from service.bench.figures import E2ERun, Figures

NAN = float("nan")


# ratio -> (numerator, denominator) of the alternating runs: the ratio is the median of the
# turns' own ratios (each turn measures both within seconds), the spread their lowest and highest
PAIRED = {
    "ring_vs_mpqueue": ("ring", "mpqueue"),
    "ring_vs_cpp": ("ring", "cpp_ring"),
    "ring_batch_vs_cpp_batch": ("ring_batch", "cpp_ring_batch"),
    "cpp_ring_vs_mpqueue": ("cpp_ring", "mpqueue"),
}


def _turns(f: Figures, name: str) -> np.ndarray:
    """Each turn's ratio for ``name`` (empty when a side did not run)."""
    top, bottom = PAIRED[name]
    runs = f.get("alternating_runs", {})
    a, b = np.asarray(runs.get(top, []), float), np.asarray(runs.get(bottom, []), float)
    n = min(len(a), len(b))
    return a[:n] / b[:n]


def ratio_spreads(f: Figures) -> dict[str, list[float]]:
    """[lowest, highest] of each paired ratio over the turns."""
    return {
        name: [float(turns.min()), float(turns.max())]
        for name in PAIRED
        if (turns := _turns(f, name)).size
    }


def ratios(f: Figures) -> dict[str, float | None]:
    floor = f["floor_rtt_ns"]["untimed_mean"]
    e2e, split = f["e2e"]["1000000"], f["e2e_split"]["1000000"]
    paired = {name: float(np.median(t)) for name in PAIRED if (t := _turns(f, name)).size}
    r: dict[str, float | None] = {
        # what timing adds to the floor itself: two clock reads and a histogram sample
        "floor_timed_p50_vs_untimed": f["floor_rtt_ns"]["p50"] / floor,
        "ring_vs_mpqueue": paired.get("ring_vs_mpqueue"),
        "ring_rtt_p50_vs_floor": f["ring_rtt_ns"]["p50"] / floor,
        "e2e_1m_p50_vs_floor": (e2e["p50"] or NAN) / floor,
        "e2e_1m_p90_vs_floor": (e2e["p90"] or NAN) / floor,
        "e2e_1m_p99_vs_floor": (e2e["p99"] or NAN) / floor,
        "e2e_split_1m_p50_vs_floor": (split["p50"] or NAN) / floor,
        "e2e_split_1m_p99_vs_floor": (split["p99"] or NAN) / floor,
    }
    r["scrape_interference"] = f["scrape_interference"]
    r["dashboard_interference"] = f.get("dashboard_interference")
    r["metrics_p99_ms_20_clients"] = f["metrics_under_load"].get("p99_ms")
    r["metrics_render_cpu_us"] = f["metrics_render_cpu_us"]
    # an absolute rate, like the ms above: in millions, so that it reads like the others
    r["order_book_million_msgs_per_s"] = f["order_book_msgs_per_s"] / 1e6
    r["backtest_million_events_per_s"] = f["backtest_events_per_s"] / 1e6
    sustained = f["max_sustained_rate_msgs_per_s"]
    r["replay_million_msgs_per_s"] = sustained.get("replay", 0) / 1e6
    r["simulator_million_msgs_per_s"] = sustained.get("simulator", 0) / 1e6
    r["simulator_ns_per_msg"] = f["stage_cost_ns"].get("feed_simulator")
    if "ring_vs_cpp" in paired:
        r["ring_vs_cpp"] = paired["ring_vs_cpp"]
        r["ring_batch_vs_cpp_batch"] = paired["ring_batch_vs_cpp_batch"]
        r["cpp_ring_rtt_p50_vs_floor"] = f["cpp_ring_rtt_ns"]["p50"] / floor
        # what the same ring shape reaches in C++ against the same baseline: the ceiling for
        # ring_vs_mpqueue on this machine
        r["cpp_ring_vs_mpqueue"] = paired["cpp_ring_vs_mpqueue"]
    return r


# ratio -> (goal, "min" | "max"): the project's goals, checked in the printed table
# (docs/performance.md records how runs have fared against them)
TARGETS = {
    "ring_vs_mpqueue": (500.0, "min"),
    "ring_vs_cpp": (1.0, "min"),
    "ring_batch_vs_cpp_batch": (1.0, "min"),
    "ring_rtt_p50_vs_floor": (3.0, "max"),
    "e2e_1m_p50_vs_floor": (3.0, "max"),
    "e2e_1m_p99_vs_floor": (20.0, "max"),
    "scrape_interference": (1.05, "max"),
    "dashboard_interference": (1.05, "max"),  # ten open pages "do not move" p99: as scraping
    "metrics_p99_ms_20_clients": (5.0, "max"),
    "metrics_render_cpu_us": (100.0, "max"),
    "order_book_million_msgs_per_s": (20.0, "min"),
    "backtest_million_events_per_s": (10.0, "min"),
    "replay_million_msgs_per_s": (10.0, "min"),  # max_sustained_rate_msgs_per_s.replay
    "simulator_million_msgs_per_s": (5.0, "min"),
    "simulator_ns_per_msg": (20.0, "max"),
}


# stage_cost_ns keys as the table shows them ("cost per message, <label>" unless it says)
STAGE_COST_LABELS = {
    "feed_simulator": "feed (simulator)",
    "feed_replay": "feed (replay)",
    "batching": "batching (gateway)",
    "fused_replay": "whole fused loop, replay",
    "fused_simulator": "whole fused loop, simulator",
}


def _layout(cores: dict[str, int]) -> str:
    return ", ".join(f"{stage} cpu{cpu}" for stage, cpu in cores.items())


def _tick_to_order(e: E2ERun) -> str:
    vals = " / ".join(
        "-" if e[k] is None else f"{e[k]:,.0f}" for k in ("p50", "p90", "p99", "p999", "max")
    )
    return f"{vals} ns, drops {e['drops']:,}"


def print_bench_report(f: Figures, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    console.print(_figures_table(f))
    console.print(_ratios_table(f["ratios"], f.get("ratio_spread", {})))


def _figures_table(f: Figures) -> Table:
    m = f["machine"]
    t = Table(
        title=f"trading-service bench on {m['cpu_model']} ({m['cores']} cores, "
        f"{m['kernel']}), cpus {f['cpus']}{' --quick' if f['quick'] else ''}"
    )
    t.add_column("figure")
    t.add_column("value", justify="right")
    for cpu, h in f["hiccups_ns"].items():
        t.add_row(
            f"cpu{cpu} hiccups p99.9 / max, time lost",
            f"{h['p999']:,.0f} / {h['max']:,.0f} ns, {h['time_lost_pct']:.2f} %",
        )
    floor = f["floor_rtt_ns"]
    t.add_row("floor RTT, untimed mean (the ratios' floor)", f"{floor['untimed_mean']:.0f} ns")
    t.add_row("floor RTT timed p50 / p99", f"{floor['p50']:.0f} / {floor['p99']:.0f} ns")
    t.add_row("one clock read (a timed figure pays two)", f"{f['clock_read_ns']:.1f} ns")
    t.add_row("ring items/s (publish per item)", f"{f['ring_items_per_s']:,.0f}")
    t.add_row("ring items/s (batch)", f"{f['ring_batch_items_per_s']:,.0f}")
    rr = f["ring_rtt_ns"]
    t.add_row(
        "ring RTT p50 / p99 / p99.9 / max",
        f"{rr['p50']:.0f} / {rr['p99']:.0f} / {rr['p999']:.0f} / {rr['max']:.0f} ns",
    )
    t.add_row("mp.Queue items/s", f"{f['mpqueue_items_per_s']:,.0f}")
    t.add_row(
        "mp.Queue RTT p50 / p99",
        f"{f['mpqueue_rtt_ns']['p50']:,.0f} / {f['mpqueue_rtt_ns']['p99']:,.0f} ns",
    )
    if "cpp_ring_items_per_s" in f:
        t.add_row(
            "C++ ring items/s (single / batch)",
            f"{f['cpp_ring_items_per_s']:,.0f} / {f['cpp_ring_batch_items_per_s']:,.0f}",
        )
        t.add_row(
            "C++ ring RTT p50 / p99",
            f"{f['cpp_ring_rtt_ns']['p50']:.0f} / {f['cpp_ring_rtt_ns']['p99']:.0f} ns",
        )
    else:
        t.add_row("C++ ring", f.get("cpp_ring_error", "-"))
    t.add_row("book updates/s (1 core)", f"{f['book_updates_per_s']:,.0f}")
    t.add_row("inferences/s (1 core)", f"{f['inference_per_s']:,.0f}")
    t.add_row("order book messages/s (1 core)", f"{f['order_book_msgs_per_s']:,.0f}")
    t.add_row("backtest events/s (1 core)", f"{f['backtest_events_per_s']:,.0f}")
    t.add_row(
        "e2e layout (the service's own) / split",
        f"{_layout(f['e2e_layout'])} / {_layout(f['e2e_split_layout'])}",
    )
    for rate, e in f["e2e_split"].items():
        t.add_row(
            f"split: tick-to-order @ {int(rate):,}/s p50/p90/p99/p99.9/max", _tick_to_order(e)
        )
    for rate, e in f["e2e"].items():
        t.add_row(f"tick-to-order @ {int(rate):,}/s p50/p90/p99/p99.9/max", _tick_to_order(e))
    for name, ns in f["stage_cost_ns"].items():
        label = STAGE_COST_LABELS.get(name, name)
        what = "cost per order, batching (gateway)" if name == "batching_per_order" else None
        t.add_row(what or f"cost per message, {label}", f"{ns:.1f} ns")
    for source, runs in f["rate_sweep"].items():
        for rate, e in runs.items():
            t.add_row(f"{source} @ {int(rate):,}/s p50/p90/p99/p99.9/max", _tick_to_order(e))
    for source, sustained in f["max_sustained_rate_msgs_per_s"].items():
        t.add_row(f"max sustained rate, {source} (no drops, p99 <= 20 us)", f"{sustained:,} msgs/s")
    return t


def _ratios_table(ratios: dict[str, float | None], spread: dict[str, list[float]]) -> Table:
    r = Table(title="ratios measured in this run")
    r.add_column("ratio")
    r.add_column("value", justify="right")
    r.add_column("spread", justify="right")
    r.add_column("goal", justify="right")
    for name, value in ratios.items():
        goal = TARGETS.get(name)
        mark = ""
        if goal and value is not None:
            ok = value >= goal[0] if goal[1] == "min" else value <= goal[0]
            mark = f"{'>=' if goal[1] == 'min' else '<='} {goal[0]:g} {'ok' if ok else 'MISSED'}"
        lo_hi = spread.get(name)
        shown = "" if lo_hi is None else f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"
        r.add_row(name, "-" if value is None else f"{value:.2f}", shown, mark)
    return r
