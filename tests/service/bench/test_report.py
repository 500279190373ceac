"""The printed tables: every row, in order, from a document as run_bench or --json gives it."""

from __future__ import annotations

import io
import json
from dataclasses import replace

from rich.console import Console
from rich.progress import Progress

from service.bench.report import TARGETS, print_bench_report
from service.bench.run import run_bench
from tests.support.bench_fakes import FakeMeasures

ROWS = [
    "cpu0 hiccups p99.9 / max, time lost",
    "cpu1 hiccups p99.9 / max, time lost",
    "floor RTT, untimed mean (the ratios' floor)",
    "floor RTT timed p50 / p99",
    "one clock read (a timed figure pays two)",
    "ring items/s (publish per item)",
    "ring items/s (batch)",
    "ring RTT p50 / p99 / p99.9 / max",
    "mp.Queue items/s",
    "mp.Queue RTT p50 / p99",
    "C++ ring items/s (single / batch)",
    "C++ ring RTT p50 / p99",
    "book updates/s (1 core)",
    "inferences/s (1 core)",
    "order book messages/s (1 core)",
    "backtest events/s (1 core)",
    "e2e layout (the service's own) / split",
    "split: tick-to-order @ 100,000/s p50/p90/p99/p99.9/max",
    "split: tick-to-order @ 1,000,000/s p50/p90/p99/p99.9/max",
    "tick-to-order @ 100,000/s p50/p90/p99/p99.9/max",
    "tick-to-order @ 1,000,000/s p50/p90/p99/p99.9/max",
    "cost per message, feed (simulator)",
    "cost per message, feed (replay)",
    "cost per message, book",
    "cost per message, features",
    "cost per message, model",
    "cost per message, strategy",
    "cost per message, risk",
    "cost per message, whole fused loop, replay",
    "cost per message, whole fused loop, simulator",
    "cost per message, batching (gateway)",
    "cost per order, batching (gateway)",
    *(
        f"{source} @ {rate:,}/s p50/p90/p99/p99.9/max"
        for source in ("simulator", "replay")
        for rate in (1_000_000, 2_000_000, 5_000_000, 10_000_000)
    ),
    "max sustained rate, simulator (no drops, p99 <= 20 us)",
    "max sustained rate, replay (no drops, p99 <= 20 us)",
]


def printed(figures) -> str:
    out = io.StringIO()
    print_bench_report(figures, Console(file=out, width=200))
    return out.getvalue()


def fake_figures(fake: FakeMeasures | None = None) -> dict:
    # FakeMeasures leaves the order book at the real measure: 25M/s here
    measures = replace((fake or FakeMeasures()).measures(), order_book=lambda repeats: 2.5e7)
    return run_bench(True, (0, 1), measures, Progress(disable=True))


def first_cells(text: str) -> list[str]:
    """The first column of every table row, top to bottom."""
    return [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│ ")]


def test_every_row_is_printed_in_order():
    figures = fake_figures()
    text = printed(figures)
    assert first_cells(text) == [*ROWS, *figures["ratios"]]
    assert "--quick" in text and "ratios measured in this run" in text


def test_the_json_document_prints_the_same():
    figures = fake_figures()
    assert printed(json.loads(json.dumps(figures, allow_nan=False))) == printed(figures)


def test_each_ratio_with_a_goal_is_marked():
    text = printed(fake_figures())
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ")}
    assert lines["ring_rtt_p50_vs_floor"].endswith("<= 3 ok │")  # 700 / 250, the untimed floor
    assert lines["e2e_1m_p99_vs_floor"].endswith("<= 20 ok │")  # 5000 / 250: just made
    assert lines["e2e_1m_p50_vs_floor"].endswith("<= 3 ok │")  # 500 / 250
    assert lines["ring_vs_mpqueue"].endswith(">= 500 ok │")  # exactly the goal
    assert lines["scrape_interference"].endswith("<= 1.05 MISSED │")  # the fakes give 1.1
    assert lines["order_book_million_msgs_per_s"].endswith(">= 20 ok │")  # 25M/s
    assert lines["backtest_million_events_per_s"].endswith(">= 10 MISSED │")  # the fakes: 8M/s
    assert lines["ring_batch_vs_cpp_batch"].endswith(">= 1 ok │")  # 4e8 / 4e8
    assert lines["ring_batch_vs_cpp_batch"].split("│")[3].strip() == "1.00-1.00"  # its spread
    cells = [cell.strip() for cell in lines["e2e_1m_p90_vs_floor"].split("│")[3:5]]
    assert cells == ["", ""]  # neither spread nor goal
    assert all(name in lines for name in TARGETS)


def test_a_missing_figure_prints_as_a_dash():
    fake = FakeMeasures(cpp=False)
    e2e = fake.e2e
    fake.e2e = lambda *a, **k: {**e2e(*a, **k), "p99": None}
    text = printed(fake_figures(fake))
    assert "C++ ring " in text and "no C++ compiler on PATH" in text
    assert "500 / 900 / - / 10,000 / 50,000 ns, drops 0" in text
