"""``bench --compare OLD.json``: each figure's change since an earlier run of the same bench.

A figure is compared when both documents have it. Its direction (higher or lower is better)
comes from its goal where it has one (``report.TARGETS``), else from its name (rates and "vs"
another implementation: higher; latencies and "vs floor": lower). A change is flagged as a
regression only where both runs measured a spread (``ratio_spread``: the turns of the
alternating runs) and the two spreads do not overlap, the new one on the worse side: a
one-off figure moves run to run by more than most real regressions, and flagging it would
teach people to ignore the flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from rich.table import Table

from contracts.errors import LowlatError
from service.bench.report import TARGETS

# headline figures beyond the ratios: (label, path into the document)
HEADLINES = (
    ("floor_rtt_ns.untimed_mean", ("floor_rtt_ns", "untimed_mean")),
    ("clock_read_ns", ("clock_read_ns",)),
    ("ring_items_per_s", ("ring_items_per_s",)),
    ("ring_batch_items_per_s", ("ring_batch_items_per_s",)),
    ("ring_rtt_ns.p50", ("ring_rtt_ns", "p50")),
    ("e2e.1000000.p50", ("e2e", "1000000", "p50")),
    ("e2e.1000000.p99", ("e2e", "1000000", "p99")),
    ("max_sustained_rate_msgs_per_s.replay", ("max_sustained_rate_msgs_per_s", "replay")),
    ("max_sustained_rate_msgs_per_s.simulator", ("max_sustained_rate_msgs_per_s", "simulator")),
    ("stage_cost_ns.fused_replay", ("stage_cost_ns", "fused_replay")),
    ("stage_cost_ns.fused_simulator", ("stage_cost_ns", "fused_simulator")),
)
HIGHER_WORDS = ("_per_s", "vs_mpqueue", "vs_cpp", "million", "sustained_rate")


class CompareError(LowlatError, ValueError):
    """The earlier run cannot be read as a bench document; the message says why, in a line."""


class Change(TypedDict):
    figure: str
    old: float
    new: float
    change: float  # new / old - 1
    better: str  # "higher" or "lower"
    verdict: str  # "better", "worse", "same", or "REGRESSION" (beyond both spreads)


def load_document(path: Path) -> dict[str, Any]:
    """An earlier ``bench --json`` document; CompareError (one line) when it is not one."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise CompareError(f"--compare {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise CompareError(f"--compare {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ratios"), dict):
        raise CompareError(
            f"--compare {path}: not a document `trading-service bench --json` wrote (no ratios)"
        )
    return doc


def higher_is_better(name: str) -> bool:
    goal = TARGETS.get(name)
    if goal is not None:
        return goal[1] == "min"
    return any(word in name for word in HIGHER_WORDS)


def _at(doc: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _figures(doc: dict[str, Any]) -> dict[str, float]:
    out = {label: v for label, path in HEADLINES if (v := _at(doc, path)) is not None}
    for name, value in doc["ratios"].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every figure both documents have, old and new, and what became of it."""
    before, after = _figures(old), _figures(new)
    spreads_old, spreads_new = old.get("ratio_spread", {}), new.get("ratio_spread", {})
    changes: list[Change] = []
    for name in (n for n in after if n in before):
        a, b = before[name], after[name]
        higher = higher_is_better(name)
        if a == b or (a != 0 and abs(b / a - 1) < 0.005):
            verdict = "same"
        else:
            verdict = "better" if (b > a) == higher else "worse"
        lo_hi_old, lo_hi_new = spreads_old.get(name), spreads_new.get(name)
        if verdict == "worse" and lo_hi_old and lo_hi_new:
            apart = lo_hi_new[1] < lo_hi_old[0] if higher else lo_hi_new[0] > lo_hi_old[1]
            verdict = "REGRESSION" if apart else verdict
        changes.append(
            {
                "figure": name,
                "old": a,
                "new": b,
                "change": b / a - 1 if a else float("inf"),
                "better": "higher" if higher else "lower",
                "verdict": verdict,
            }
        )
    return changes


def comparison_table(changes: list[Change]) -> Table:
    table = Table(title="each figure's change")
    for column in ("figure", "old", "new", "change", ""):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for c in changes:
        mark = {"REGRESSION": "[bold red]REGRESSION[/]", "worse": "worse", "better": "better"}
        table.add_row(
            c["figure"],
            f"{c['old']:,.4g}",
            f"{c['new']:,.4g}",
            f"{c['change']:+.1%}",
            mark.get(c["verdict"], ""),
        )
    return table
