"""The order of a bench run, with fake measures: the progress bar, the sweep, the document.

No process is started and nothing is timed; the real measures run in test_cli_bench.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.progress import Progress

from service.bench.run import (
    DASHBOARD_PAGES,
    E2E_RATES,
    FULL,
    QUICK,
    SOURCES,
    Measures,
    bench_steps,
    run_bench,
)
from tests.support.bench_fakes import (
    CLOCK_READ,
    FLOOR_P50,
    FLOOR_UNTIMED,
    STAGE_COSTS,
    FakeMeasures,
)

CPUS = (0, 1)

# the document's keys in the order `--json` has always written them
KEYS = [
    "machine",
    "cpus",
    "quick",
    "hiccups_ns",
    "floor_rtt_ns",
    "clock_read_ns",
    "ring_items_per_s",
    "ring_batch_items_per_s",
    "ring_rtt_ns",
    "mpqueue_items_per_s",
    "mpqueue_rtt_ns",
    "cpp_ring_items_per_s",
    "cpp_ring_batch_items_per_s",
    "cpp_ring_rtt_ns",
    "book_updates_per_s",
    "inference_per_s",
    "order_book_msgs_per_s",
    "backtest_events_per_s",
    "e2e_layout",
    "e2e_split_layout",
    "e2e_split",
    "e2e",
    "scrape_interference",
    "dashboard_interference",
    "scrape_interference_runs",
    "metrics_under_load",
    "metrics_render_cpu_us",
    "stage_cost_ns",
    "rate_sweep",
    "max_sustained_rate_msgs_per_s",
    "alternating_runs",
    "ratios",
    "ratio_spread",
]


ORDER_BOOK_RATE = 2.5e7
BACKTEST_RATE = 8e6


def fake_measures(fake: FakeMeasures, repeats: list[int] | None = None) -> Measures:
    """``fake``'s measures, with the order book's and the backtest's calls appending their
    repeats to ``repeats``."""

    def order_book(n: int) -> float:
        if repeats is not None:
            repeats.append(n)
        return ORDER_BOOK_RATE

    def backtest(n: int) -> float:
        if repeats is not None:
            repeats.append(n)
        return BACKTEST_RATE

    return replace(fake.measures(), order_book=order_book, backtest=backtest)


def fake_run(fake: FakeMeasures, quick: bool = True) -> tuple[dict, Progress]:
    progress = Progress(disable=True)
    return run_bench(quick, CPUS, fake_measures(fake), progress), progress


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("drops_from", [10**12, 3_000_000, 1])
def test_the_bar_is_as_long_as_the_steps_it_advances(quick, drops_from, tmp_path):
    fake = FakeMeasures(drops_from)
    _, progress = fake_run(fake, quick)
    (task,) = progress.tasks
    _, steps = bench_steps(quick, CPUS, fake_measures(fake), tmp_path)
    assert task.total == task.completed == len(steps)
    assert task.finished


def test_every_step_of_a_run_is_a_step_of_the_list(tmp_path):
    fake = FakeMeasures()
    figures, steps = bench_steps(True, CPUS, fake_measures(fake), tmp_path)
    for step in steps:
        step.run(figures)
    sweeps = len(SOURCES) * len(QUICK.sweep)
    pipeline_runs = 2 * len(E2E_RATES) + 3 * QUICK.scrape_pairs + 1 + sweeps
    assert len(fake.e2e_calls) == pipeline_runs  # one step per run, three per interference step
    labels = [step.label for step in steps]
    assert len(set(labels)) == len(labels)


def test_each_source_is_swept_until_its_first_rate_that_drops():
    fake = FakeMeasures(drops_from=3_000_000)
    figures, _ = fake_run(fake)
    for source in SOURCES:
        assert list(figures["rate_sweep"][source]) == ["1000000", "2000000", "5000000"]
    (recording,) = fake.recordings
    rates = (1_000_000, 2_000_000, 5_000_000)  # 10M is never offered: 5M dropped
    swept = [(c["rate"], c["replay"]) for c in fake.e2e_calls[-2 * len(rates) :]]
    assert swept == [*((r, None) for r in rates), *((r, recording[0]) for r in rates)]
    assert figures["max_sustained_rate_msgs_per_s"] == {"simulator": 2_000_000, "replay": 2_000_000}


def test_the_recording_holds_the_messages_of_the_longest_run(tmp_path):
    fake = FakeMeasures()
    figures, steps = bench_steps(False, CPUS, fake_measures(fake), tmp_path)
    for step in steps:
        step.run(figures)
    ((path, n),) = fake.recordings
    assert path.parent == tmp_path
    assert n >= max(FULL.sweep) * FULL.sweep_s


def test_a_source_that_drops_at_once_sustains_nothing():
    figures, _ = fake_run(FakeMeasures(drops_from=1))
    assert figures["max_sustained_rate_msgs_per_s"] == {"simulator": 0, "replay": 0}


def test_stage_costs_reach_the_document_and_the_ratios():
    figures, _ = fake_run(FakeMeasures())
    assert figures["stage_cost_ns"] == STAGE_COSTS
    assert figures["ratios"]["simulator_ns_per_msg"] == STAGE_COSTS["feed_simulator"]
    assert figures["ratios"]["replay_million_msgs_per_s"] == 10.0  # the fakes never drop


def test_the_pipeline_runs_use_both_layouts_and_the_full_sizes():
    fake = FakeMeasures()
    figures, _ = fake_run(fake, quick=False)
    assert figures["e2e_split_layout"] == {"feed": 0, "engine": 1, "gateway": 1}
    split = [c for c in fake.e2e_calls if c["cores"] == figures["e2e_split_layout"]]
    assert [c["rate"] for c in split] == list(E2E_RATES)
    for source in SOURCES:
        assert list(figures["rate_sweep"][source]) == [str(r) for r in FULL.sweep]
    scraped = [c for c in fake.e2e_calls if c["scrape_hz"]]
    assert len(scraped) == FULL.scrape_pairs and all(c["scrape_hz"] == 10.0 for c in scraped)
    loaded = [c for c in fake.e2e_calls if c["load_requests"]]
    assert [c["load_requests"] for c in loaded] == [10_000]


def test_the_order_book_and_backtest_are_measured_with_the_kernels_fewer_times_when_quick():
    repeats: list[int] = []
    for quick in (True, False):
        figures = run_bench(
            quick, CPUS, fake_measures(FakeMeasures(), repeats), Progress(disable=True)
        )
        assert figures["order_book_msgs_per_s"] == ORDER_BOOK_RATE
        assert figures["ratios"]["order_book_million_msgs_per_s"] == pytest.approx(25.0)
        assert figures["backtest_events_per_s"] == BACKTEST_RATE
        assert figures["ratios"]["backtest_million_events_per_s"] == pytest.approx(8.0)
    assert repeats == [QUICK.kernel_repeats] * 2 + [FULL.kernel_repeats] * 2
    assert QUICK.kernel_repeats < FULL.kernel_repeats


def test_scrape_interference_is_the_ratio_of_the_alternating_runs_medians():
    figures, _ = fake_run(FakeMeasures())
    runs = figures["scrape_interference_runs"]
    assert runs["p99_unscraped_ns"] == [5000.0] * QUICK.scrape_pairs
    assert figures["scrape_interference"] == pytest.approx(1.1)
    assert runs["scrapes_last_run"] == 20 and runs["scrape_errors_last_run"] == 0


def test_dashboard_interference_is_ten_pages_against_the_same_unscraped_runs():
    fake = FakeMeasures()
    figures, _ = fake_run(fake)
    paged = [c for c in fake.e2e_calls if c["pages"]]
    assert [c["pages"] for c in paged] == [DASHBOARD_PAGES] * QUICK.scrape_pairs
    assert all(c["rate"] == 1_000_000 and not c["scrape_hz"] for c in paged)
    runs = figures["scrape_interference_runs"]
    assert runs["p99_paged_ns"] == [6000.0] * QUICK.scrape_pairs
    assert figures["dashboard_interference"] == pytest.approx(1.2)
    assert figures["ratios"]["dashboard_interference"] == pytest.approx(1.2)
    assert runs["page_requests_last_run"] == 220 and runs["page_errors_last_run"] == 0


def test_the_document_keeps_its_keys_and_their_order():
    figures, _ = fake_run(FakeMeasures())
    assert list(figures) == KEYS
    assert figures["floor_rtt_ns"] == {
        "untimed_mean": FLOOR_UNTIMED,
        "p50": FLOOR_P50,
        "p99": 2 * FLOOR_P50,
    }
    assert figures["clock_read_ns"] == CLOCK_READ
    # every "x floor" ratio is against the untimed floor; the timed one's excess is shown
    assert figures["ratios"]["ring_rtt_p50_vs_floor"] == pytest.approx(700.0 / FLOOR_UNTIMED)
    assert figures["ratios"]["floor_timed_p50_vs_untimed"] == pytest.approx(400 / 250)
    assert figures["ratios"]["ring_vs_mpqueue"] == pytest.approx(5.0e7 / 1.0e5)
    assert figures["ratios"]["ring_vs_cpp"] == pytest.approx(5.0e7 / 3.0e7)


def test_a_cpp_ring_that_cannot_run_is_a_figure_not_an_error():
    figures, _ = fake_run(FakeMeasures(cpp=False))
    assert figures["cpp_ring_error"] == "no C++ compiler on PATH"
    assert "cpp_ring_items_per_s" not in figures and "ring_vs_cpp" not in figures["ratios"]
    cpp_keys = {"cpp_ring_items_per_s", "cpp_ring_batch_items_per_s", "cpp_ring_rtt_ns"}
    expected = [k if k not in cpp_keys else "cpp_ring_error" for k in KEYS]
    assert list(figures) == list(dict.fromkeys(expected))


def test_nan_figures_come_out_as_none():
    fake = FakeMeasures()
    e2e = fake.e2e

    def no_orders(*args, **kwargs):
        return {**e2e(*args, **kwargs), "p50": None, "p90": None, "p99": None}

    fake.e2e = no_orders
    figures, _ = fake_run(fake)
    assert figures["scrape_interference"] is None
    assert figures["ratios"]["e2e_1m_p50_vs_floor"] is None


def test_paired_ratios_are_the_median_of_each_turns_own_ratio_with_their_spread():
    # the ring and the C++ ring drift together over the turns; mp.Queue stays put
    rings = iter([5e7, 4e8, 2e7, 3e8, 8e7, 5e8])  # (single, batch) per turn
    cpps = iter([(4e7, 4e8), (1e7, 2e8), (8e7, 5e8)])
    fake = FakeMeasures()

    def cpp_ring(cpus, items, rounds):
        single, batch = next(cpps)
        return replace(
            fake.cpp_ring(cpus, items, rounds), items_per_s=single, batch_items_per_s=batch
        )

    measures = replace(
        fake_measures(fake),
        ring_throughput=lambda cpus, items, batch: next(rings),
        cpp_ring=cpp_ring,
    )
    figures = run_bench(True, CPUS, measures, Progress(disable=True))
    assert QUICK.alternations == 3
    assert figures["alternating_runs"]["ring"] == [5e7, 2e7, 8e7]
    assert figures["ring_items_per_s"] == 5e7  # the median turn
    assert figures["cpp_ring_items_per_s"] == 4e7
    # the turns' own ratios are 1.25, 2.0 and 1.0: the median 1.25, not 5e7 / 4e7 by chance
    assert figures["ratios"]["ring_vs_cpp"] == pytest.approx(1.25)
    assert figures["ratio_spread"]["ring_vs_cpp"] == pytest.approx([1.0, 2.0])
    assert figures["ratios"]["ring_batch_vs_cpp_batch"] == pytest.approx(1.0)
    assert figures["ratio_spread"]["ring_batch_vs_cpp_batch"] == pytest.approx([1.0, 1.5])
    assert figures["ratios"]["ring_vs_mpqueue"] == pytest.approx(5e7 / 1e5)
