"""``trading-service bench``: every figure that matters, measured side by side in one run.

A run is a list of steps (a label for the progress bar and what to measure), built before any
of them runs, so the bar's length is the number of steps by construction. Each step writes its
figures into the document; the figures derived from several steps are computed once all have
run. What each step calls comes in a ``Measures``, so the order of a run can be tested with
cheap fakes in place of the real measures.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, cast

import numpy as np
from rich.progress import Progress

from contracts.documents import finite_or_none
from contracts.records import MARKET_DATA
from service.bench import BenchError
from service.bench.baseline import BaselineError
from service.bench.capacity import measure_stage_costs, write_replay
from service.bench.e2e import measure_e2e, measure_metrics_render
from service.bench.figures import E2ERun, Figures, Hiccups, Machine, Percentiles, percentiles, tail
from service.bench.jitter import measure_jitter
from service.bench.measures import (
    CppRing,
    measure_backtest,
    measure_clock_read,
    measure_cpp_ring,
    measure_floor,
    measure_kernels,
    measure_mpqueue,
    measure_order_book,
    measure_ring_rtt,
    measure_ring_throughput,
)
from service.bench.report import ratio_spreads, ratios
from service.config import default_cores

E2E_RATES = (100_000, 1_000_000)


def parse_cpus(text: str | None) -> tuple[int, int]:
    """The two CPUs of ``--cpus A,B``; by default the last two this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if text is None:
        if len(allowed) < 2:
            raise BenchError(f"the benchmark needs two CPUs; this process may use only {allowed}")
        return allowed[-2], allowed[-1]
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise BenchError(f"--cpus {text!r}: give two CPU numbers like 0,1") from None
    if a == b or a not in allowed or b not in allowed:
        raise BenchError(f"--cpus {text!r}: need two different CPUs from {allowed}")
    return a, b


def machine() -> Machine:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu part")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


@dataclass(frozen=True)
class Sizes:
    """How much each step measures; ``--quick`` trades precision for minutes."""

    jitter_s: float
    ring_items: int
    rtt_rounds: int
    mpq_items: int
    mpq_rounds: int
    kernel_repeats: int
    e2e_s: float
    alternations: int  # runs of the ring, the C++ ring and mp.Queue, in turn
    scrape_pairs: int
    scrape_run_s: float
    load_requests: int
    sweep: tuple[int, ...]  # offered rates of the capacity sweep of each source, msgs/s
    sweep_s: float
    cost_repeats: int  # runs of each stage-cost probe (the median is kept)


QUICK = Sizes(
    jitter_s=1.0,
    ring_items=10_000_000,
    rtt_rounds=50_000,
    mpq_items=100_000,
    mpq_rounds=2_000,
    kernel_repeats=5,
    e2e_s=2.0,
    alternations=3,
    scrape_pairs=2,
    scrape_run_s=2.0,
    load_requests=2_000,
    sweep=(1_000_000, 2_000_000, 5_000_000, 10_000_000),
    sweep_s=1.0,
    cost_repeats=3,
)
FULL = Sizes(
    jitter_s=3.0,
    ring_items=10_000_000,
    rtt_rounds=500_000,
    mpq_items=300_000,
    mpq_rounds=10_000,
    kernel_repeats=20,
    e2e_s=10.0,
    alternations=5,
    scrape_pairs=3,
    scrape_run_s=5.0,  # 5 s runs at 10 Hz: about 50 scrapes a run, 150 over three pairs
    load_requests=10_000,
    sweep=(1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000, 7_000_000, 10_000_000,
           12_000_000),
    sweep_s=2.0,
    cost_repeats=7,
)  # fmt: skip
SOURCES = ("simulator", "replay")  # the feed sources the capacity sweep offers rates from


class E2EMeasure(Protocol):
    def __call__(  # noqa: PLR0913 -- the signature of e2e.measure_e2e
        self,
        cores: dict[str, int],
        rate: int,
        duration_s: float,
        scrape_hz: float = 0.0,
        load_requests: int = 0,
        replay: Path | None = None,
        pages: int = 0,
    ) -> E2ERun: ...


@dataclass(frozen=True)
class Measures:
    """What the steps call: the real measures unless a test passes fakes."""

    jitter: Callable[[Sequence[int], float], dict[str, Hiccups]] = measure_jitter
    floor: Callable[[Sequence[int], int], dict[str, float]] = measure_floor
    clock_read: Callable[[], float] = measure_clock_read
    ring_throughput: Callable[[Sequence[int], int, int], float] = measure_ring_throughput
    ring_rtt: Callable[[Sequence[int], int], dict[str, float]] = measure_ring_rtt
    mpqueue: Callable[[Sequence[int], int, int], tuple[float, Percentiles]] = measure_mpqueue
    cpp_ring: Callable[[Sequence[int], int, int], CppRing] = measure_cpp_ring
    kernels: Callable[[int], tuple[float, float]] = measure_kernels
    order_book: Callable[[int], float] = measure_order_book
    backtest: Callable[[int], float] = measure_backtest
    e2e: E2EMeasure = measure_e2e
    metrics_render: Callable[[dict[str, int]], float] = measure_metrics_render
    stage_costs: Callable[[int, int], dict[str, float]] = measure_stage_costs
    replay_recording: Callable[[Path, int], Path] = write_replay
    service_cores: Callable[[], dict[str, int]] = default_cores


@dataclass(frozen=True)
class Step:
    label: str  # shown on the progress bar while it runs
    run: Callable[[Figures], None]  # measures, and writes its figures into the document


class _Bench:
    """The steps of one run, over the same sizes, CPUs and measures."""

    def __init__(
        self, sizes: Sizes, cpus: tuple[int, int], measures: Measures, scratch: Path
    ) -> None:
        self.sizes, self.cpus, self.m = sizes, cpus, measures
        # the recording the replay source's sweep replays (written by its own step)
        self.recording = scratch / "replay.lmd"
        self.replay_messages = int(max(sizes.sweep) * sizes.sweep_s * 1.1) + 100_000
        # the service's own layout (what `run` uses here: on a host, one core per stage and a
        # housekeeping core; on 2 CPUs, all stages fused with the first CPU left to the OS),
        # and the split one that always crosses cores (feed | engine + gateway)
        self.layout = measures.service_cores()
        self.split = {"feed": cpus[0], "engine": cpus[1], "gateway": cpus[1]}

    def start(self, quick: bool) -> Figures:
        """The document before any step: the machine, the layouts, the tables steps fill in."""
        # complete only once every step has run: the steps write the keys missing here
        return cast(
            Figures,
            {
                "machine": machine(),
                "cpus": list(self.cpus),
                "quick": quick,
                "e2e_layout": self.layout,
                "e2e_split_layout": self.split,
                "e2e_split": {},
                "e2e": {},
                "scrape_interference_runs": {
                    "p99_unscraped_ns": [],
                    "p99_scraped_ns": [],
                    "p99_paged_ns": [],
                },
                "rate_sweep": {source: {} for source in SOURCES},
                "alternating_runs": {name: [] for name in ALTERNATING},
            },
        )

    def steps(self) -> list[Step]:
        cpus, pairs, turns = self.cpus, self.sizes.scrape_pairs, self.sizes.alternations
        return [
            Step("machine hiccups (both cores busy)", self.hiccups),
            Step("floor: cache-line ping-pong, timed and untimed", self.floor),
            Step("the clock read", self.clock_read),
            Step("ring round trip", self.ring_rtt),
            *(
                Step(
                    f"ring, C++ ring, multiprocessing.Queue in turn: {i + 1}/{turns}",
                    self.alternation,
                )
                for i in range(turns)
            ),
            Step("kernels (single core)", self.kernels),
            *(
                Step(
                    f"pipeline at {rate:,} msgs/s, split across cpus {cpus}",
                    partial(self.e2e_split, rate),
                )
                for rate in E2E_RATES
            ),
            *(Step(f"pipeline at {rate:,} msgs/s", partial(self.e2e, rate)) for rate in E2E_RATES),
            *(
                Step(
                    f"telemetry interference {i + 1}/{pairs}: 1M msgs/s; alone, /metrics at 10 Hz, "
                    f"{DASHBOARD_PAGES} dashboard pages",
                    self.scrape_pair,
                )
                for i in range(pairs)
            ),
            Step("/metrics under 20 concurrent clients", self.metrics_under_load),
            Step("/metrics: the CPU one scrape costs (8 instruments)", self.metrics_render),
            Step("what each step costs per message (one core)", self.stage_costs),
            Step(
                f"a recording of {self.replay_messages:,} messages to replay",
                self.write_recording,
            ),
            *(
                Step(f"capacity: {source} at {rate:,} msgs/s", partial(self.sweep, source, rate))
                for source in SOURCES
                for rate in self.sizes.sweep
            ),
        ]

    def hiccups(self, f: Figures) -> None:
        f["hiccups_ns"] = self.m.jitter(self.cpus, self.sizes.jitter_s)

    def floor(self, f: Figures) -> None:
        floor = self.m.floor(self.cpus, self.sizes.rtt_rounds)
        f["floor_rtt_ns"] = {"untimed_mean": float(floor["untimed_mean"]), **percentiles(floor)}

    def clock_read(self, f: Figures) -> None:
        f["clock_read_ns"] = self.m.clock_read()

    def ring_rtt(self, f: Figures) -> None:
        f["ring_rtt_ns"] = tail(self.m.ring_rtt(self.cpus, self.sizes.rtt_rounds))

    def alternation(self, f: Figures) -> None:
        """One turn of the implementations compared by ratio: the ring (one publish per item,
        then batches), the C++ ring of the same shape, multiprocessing.Queue. The machine's
        mood drifts over a run by more than the differences sought, so each ratio is the
        median of the turns' own ratios (``finish``), with their spread."""
        runs, items = f["alternating_runs"], self.sizes.ring_items
        runs["ring"].append(self.m.ring_throughput(self.cpus, items, 0))
        runs["ring_batch"].append(self.m.ring_throughput(self.cpus, items, 256))
        if "cpp_ring_error" not in f:
            try:
                cpp = self.m.cpp_ring(self.cpus, items, self.sizes.rtt_rounds)
            except BaselineError as exc:
                f["cpp_ring_error"] = str(exc)
            else:
                runs["cpp_ring"].append(cpp.items_per_s)
                runs["cpp_ring_batch"].append(cpp.batch_items_per_s)
                f["cpp_ring_rtt_ns"] = cpp.rtt_ns  # the last turn's
        rate, rtt = self.m.mpqueue(self.cpus, self.sizes.mpq_items, self.sizes.mpq_rounds)
        runs["mpqueue"].append(rate)
        f["mpqueue_rtt_ns"] = rtt  # the last turn's

    def kernels(self, f: Figures) -> None:
        books, inferences = self.m.kernels(self.sizes.kernel_repeats)
        f["book_updates_per_s"], f["inference_per_s"] = books, inferences
        f["order_book_msgs_per_s"] = self.m.order_book(self.sizes.kernel_repeats)
        f["backtest_events_per_s"] = self.m.backtest(self.sizes.kernel_repeats)

    def e2e_split(self, rate: int, f: Figures) -> None:
        f["e2e_split"][str(rate)] = self.m.e2e(self.split, rate, self.sizes.e2e_s)

    def e2e(self, rate: int, f: Figures) -> None:
        f["e2e"][str(rate)] = self.m.e2e(self.layout, rate, self.sizes.e2e_s)

    def scrape_pair(self, f: Figures) -> None:
        # p99 moves run to run by more than the effect sought, so scraped and unscraped runs
        # alternate and their medians are compared (in finish)
        run_s = self.sizes.scrape_run_s
        plain = self.m.e2e(self.layout, 1_000_000, run_s)
        scraped = self.m.e2e(self.layout, 1_000_000, run_s, scrape_hz=10.0)
        paged = self.m.e2e(self.layout, 1_000_000, run_s, pages=DASHBOARD_PAGES)
        runs = f["scrape_interference_runs"]
        runs["p99_unscraped_ns"].append(plain["p99"] or float("nan"))
        runs["p99_scraped_ns"].append(scraped["p99"] or float("nan"))
        # without pages (hey missing) the paged run is a plain one: it must not count as paged
        opened = paged.get("page_requests", 0) > 0
        runs["p99_paged_ns"].append((paged["p99"] if opened else None) or float("nan"))
        if "pages_error" in paged:
            runs["pages_error"] = paged["pages_error"]
        runs["scrapes_last_run"] = scraped["scrapes"]
        runs["scrape_errors_last_run"] = scraped["scrape_errors"]
        runs["page_requests_last_run"] = paged["page_requests"]
        runs["page_errors_last_run"] = paged["page_errors"]

    def metrics_under_load(self, f: Figures) -> None:
        # the run lasts as long as hey takes (the duration is only a ceiling)
        loaded = self.m.e2e(self.layout, 100_000, 300.0, load_requests=self.sizes.load_requests)
        f["metrics_under_load"] = loaded["metrics_under_load"]

    def metrics_render(self, f: Figures) -> None:
        f["metrics_render_cpu_us"] = self.m.metrics_render(self.layout)

    def stage_costs(self, f: Figures) -> None:
        f["stage_cost_ns"] = self.m.stage_costs(self.layout["engine"], self.sizes.cost_repeats)

    def write_recording(self, f: Figures) -> None:
        needed = self.replay_messages * MARKET_DATA.itemsize
        free = shutil.disk_usage(self.recording.parent).free
        if free < 2 * needed:
            raise BenchError(
                f"{self.recording.parent}: {free / 2**20:,.0f} MiB free; the replay recording "
                f"needs {needed / 2**20:,.0f} MiB (twice that free): set TMPDIR to a bigger disk"
            )
        self.m.replay_recording(self.recording, self.replay_messages)

    def sweep(self, source: str, rate: int, f: Figures) -> None:
        runs = f["rate_sweep"][source]
        if any(past_capacity(r) for r in runs.values()):
            return  # past the pipeline's capacity: higher rates only fall further behind
        replay = self.recording if source == "replay" else None
        runs[str(rate)] = self.m.e2e(self.layout, rate, self.sizes.sweep_s, replay=replay)


DASHBOARD_PAGES = 10  # open dashboard pages in the interference runs (issue 17's "ten")
P99_BOUND_NS = 20_000  # the tick-to-order p99 a rate must keep to count as carried


def past_capacity(run: E2ERun) -> bool:
    """Drops, or a p90 beyond the bound: p90 is not yet set by the machine's hiccups (see
    hiccups_ns), so it shows a pipeline that no longer keeps up and lives off its backlog."""
    return run["drops"] > 0 or run["p90"] is None or run["p90"] > P99_BOUND_NS


def max_sustained_rates(f: Figures) -> dict[str, int]:
    """By source, the highest offered rate of the sweep with no drops and tick-to-order p99
    within ``P99_BOUND_NS``, below the first rate that dropped (0: none)."""
    best = {}
    for source, runs in f["rate_sweep"].items():
        best[source] = 0
        for rate, run in runs.items():
            if run["drops"] > 0:
                break
            if run["p99"] is not None and run["p99"] <= P99_BOUND_NS:
                best[source] = int(rate)
    return best


# the alternating runs' names, and the figure each one's median becomes
ALTERNATING = {
    "ring": "ring_items_per_s",
    "ring_batch": "ring_batch_items_per_s",
    "cpp_ring": "cpp_ring_items_per_s",
    "cpp_ring_batch": "cpp_ring_batch_items_per_s",
    "mpqueue": "mpqueue_items_per_s",
}


def finish(f: Figures) -> Figures:
    """Add the figures derived from several steps; NaN and infinities become None.

    The keys come out in the order ``Figures`` declares them, the order ``--json`` has always
    written, whichever step wrote them first; a key it does not declare would go last.
    """
    doc = cast(dict, f)
    for name, figure in ALTERNATING.items():
        if f["alternating_runs"][name]:
            doc[figure] = float(np.median(f["alternating_runs"][name]))
    runs = f["scrape_interference_runs"]
    f["scrape_interference"] = float(
        np.median(runs["p99_scraped_ns"]) / np.median(runs["p99_unscraped_ns"])
    )
    f["dashboard_interference"] = float(
        np.median(runs["p99_paged_ns"]) / np.median(runs["p99_unscraped_ns"])
    )
    f["max_sustained_rate_msgs_per_s"] = max_sustained_rates(f)
    f["ratios"], f["ratio_spread"] = ratios(f), ratio_spreads(f)
    doc = dict(f)
    ordered = {**{key: doc[key] for key in Figures.__annotations__ if key in doc}, **doc}
    return cast(Figures, finite_or_none(ordered))


def bench_steps(
    quick: bool, cpus: tuple[int, int], measures: Measures, scratch: Path
) -> tuple[Figures, list[Step]]:
    """The document before any step, and the steps that fill it in, in order; files the steps
    write (the replay recording) go into ``scratch``."""
    bench = _Bench(QUICK if quick else FULL, cpus, measures, scratch)
    return bench.start(quick), bench.steps()


def run_bench(
    quick: bool,
    cpus: tuple[int, int],
    measures: Measures | None = None,
    progress: Progress | None = None,
) -> Figures:
    """Run every step on ``cpus`` under a progress bar; the finished figures document."""
    with tempfile.TemporaryDirectory(prefix="lowlat-bench-") as scratch:
        figures, steps = bench_steps(quick, cpus, measures or Measures(), Path(scratch))
        progress = progress or Progress(transient=True)
        with progress:
            task = progress.add_task("benchmark", total=len(steps))
            for step in steps:
                progress.update(task, description=step.label)
                step.run(figures)
                progress.advance(task)
    return finish(figures)
