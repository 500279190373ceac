"""The pipeline end to end: tick-to-order at a steady offered rate, and the telemetry API
served, scraped or loaded beside it while it runs."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypedDict

import httpx

from service.bench import BenchError
from service.bench.figures import E2ERun, HttpLoad
from service.bench.http_load import hey_latency
from service.bench.pages import Pages
from service.config import Config, ServiceConfig
from service.runtime.pipeline import run_pipeline
from service.runtime.stats import describe
from service.telemetry.api import serve
from service.telemetry.engine_view import Interval, Sample
from service.telemetry.exposition import render


def bench_config(cores: dict[str, int], tag: str, **feed: object) -> Config:
    """The embedded config with the stages on ``cores``, ``feed`` settings replaced, and
    segments of its own (``lowlat-bench-<tag>-<pid>``)."""
    base, prefix = Config(), f"lowlat-bench-{tag}-{os.getpid()}"
    return dataclasses.replace(
        base,
        cores=dict(cores),
        feed=dataclasses.replace(base.feed, **feed),  # type: ignore[arg-type]
        service=dataclasses.replace(ServiceConfig(), shm_prefix=prefix),
        source="<bench>",
    )


def measure_e2e(  # noqa: PLR0913 -- each is one knob of a run, all but three defaulted
    cores: dict[str, int],
    rate: int,
    duration_s: float,
    scrape_hz: float = 0.0,
    load_requests: int = 0,
    replay: Path | None = None,
    pages: int = 0,
) -> E2ERun:
    """Tick-to-order through the whole pipeline at a steady offered rate, stages on ``cores``,
    from the simulator or, with ``replay``, from that recording replayed at the rate.

    The simulator's bursts are off here: a burst runs at 10x the offered rate, so with them
    the figure would describe the burst model, not the pipeline at the rate in its name.
    With ``scrape_hz`` a telemetry API serves the run and /metrics is scraped at that rate
    meanwhile; with ``load_requests``, ``hey`` sends that many /metrics requests from 20
    concurrent clients during the run and their latency percentiles are returned too. With
    ``pages``, that many dashboard pages poll the API as ``dashboard.js`` does, through ``hey``
    (``service.bench.pages``).
    """
    source = {} if replay is None else {"source": "replay", "replay_file": str(replay)}
    config = bench_config(cores, "e2e", rate=rate, burst_probability=0.0, **source)
    with _TelemetryDuring(config, scrape_hz, load_requests, (pages, duration_s)) as telemetry:
        result = run_pipeline(config, duration_s, log=telemetry.on_log, stop=telemetry.done)
    if result.exit_code != 0:
        raise BenchError(f"pipeline at {rate} msgs/s failed: {'; '.join(result.problems)}")
    d = describe(result.stats, result.n_instruments)
    t2o = d["tick_to_order"]
    return {
        "p50": t2o["p50"],
        "p90": t2o["p90"],
        "p99": t2o["p99"],
        "p999": t2o["p999"],
        "max": t2o["max"],
        "drops": d["md_messages_dropped"],
        "orders": t2o["count"],
        "messages": d["md_messages_processed"],
        "achieved_msgs_per_s": d["md_messages_processed"] / max(result.elapsed_s, 1e-9),
        **telemetry.figures(),
    }


class _TelemetryFigures(TypedDict, total=False):
    scrapes: int
    scrape_errors: int
    metrics_under_load: HttpLoad
    page_requests: int
    page_errors: int
    pages_error: str


class _TelemetryDuring:
    """A telemetry API beside a bench run, scraped at ``scrape_hz`` and/or loaded with hey.

    The scraping starts when the pipeline says it is ready (its log line), so it overlaps the
    measured window and not the warm-up.
    """

    def __init__(
        self, config: Config, scrape_hz: float, load_requests: int, pages: tuple[int, float]
    ) -> None:
        self.config, self.scrape_hz, self.load_requests = config, scrape_hz, load_requests
        self.pages, self._pages_s = pages  # how many, for how long
        self.active = scrape_hz > 0 or load_requests > 0 or self.pages > 0
        self.scrapes = self.scrape_errors = 0
        self._open: Pages | None = None
        self._page_counts = (0, 0)  # requests answered, failed: when the pages are closed
        self.load: HttpLoad = {}
        self.url = self.base = ""
        self.server: BaseProcess | None = None
        self._stop = threading.Event()
        self._hey_done = threading.Event()
        # the pipeline stops when hey has finished, else at the end of its duration
        self.done = self._hey_done if load_requests > 0 else None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> _TelemetryDuring:
        if not self.active:
            return self
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.config = dataclasses.replace(
            self.config, telemetry=dataclasses.replace(self.config.telemetry, port=port)
        )
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/metrics"
        self.server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(self.config, "127.0.0.1", port), daemon=True
        )
        self.server.start()
        return self

    def on_log(self, message: str) -> None:
        if not self.active or not message.startswith("ready"):
            return
        if self.scrape_hz > 0:
            self._threads.append(threading.Thread(target=self._scrape, daemon=True))
        if self.load_requests > 0:
            self._threads.append(threading.Thread(target=self._hey, daemon=True))
        if self.pages > 0:
            self._threads.append(threading.Thread(target=self._open_pages, daemon=True))
        for thread in self._threads:
            thread.start()

    def _scrape(self) -> None:
        self._warm()
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.wait(1.0 / self.scrape_hz):
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.scrapes += 1
                self.scrape_errors += not ok

    def _open_pages(self) -> None:
        self._warm()
        self._open = Pages(self.base, self.pages, self._pages_s)
        self._open.start()

    def _warm(self) -> None:
        """Wait until the API answers /metrics: its first reading loads the snapshot kernels."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def _hey(self) -> None:
        try:
            self._warm()
            self.load = hey_latency(self.url, self.load_requests, 20)
        finally:
            self._hey_done.set()

    def figures(self) -> _TelemetryFigures:
        out: _TelemetryFigures = {}
        if self.scrape_hz > 0:
            out["scrapes"], out["scrape_errors"] = self.scrapes, self.scrape_errors
        if self.load_requests > 0:
            out["metrics_under_load"] = self.load
        if self.pages > 0:
            out["page_requests"], out["page_errors"] = self._page_counts
            if self._open is not None and self._open.error:
                out["pages_error"] = self._open.error
        return out

    def __exit__(self, *exc: object) -> None:
        if self.server is None:  # not active: nothing was started
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self._page_counts = self._open.stop() if self._open is not None else (0, 0)
        self.server.terminate()
        self.server.join(10)


SCRAPE_INSTRUMENTS = 8
RENDERS = 200


def measure_metrics_render(cores: dict[str, int], renders: int = RENDERS) -> float:
    """CPU time (us) the telemetry API spends rendering one /metrics scrape for
    ``SCRAPE_INSTRUMENTS`` instruments: the exposition of a real run's stats block (a second
    of the pipeline at 100,000 msgs/s), with the recent window against an earlier reading,
    as the API renders it; the mean of ``renders`` after five that warm up."""
    config = bench_config(cores, "m", instruments=SCRAPE_INSTRUMENTS, rate=100_000)
    result = run_pipeline(config, 1.0, log=lambda _: None)
    if result.exit_code != 0:
        raise BenchError(f"the pipeline for /metrics failed: {'; '.join(result.problems)}")
    now = time.monotonic_ns()
    earlier = result.stats.copy()
    earlier[earlier > 0] = (earlier[earlier > 0] * 9) // 10  # a reading a second before
    first = Sample(now - 1_000_000_000, True, earlier, False, os.getpid(), now - 10**10)
    last = Sample(now, True, result.stats, False, os.getpid(), now - 10**10)
    window = Interval(first, last)
    for _ in range(5):
        render(last, config, window)
    start = time.process_time_ns()
    for _ in range(renders):
        render(last, config, window)
    return (time.process_time_ns() - start) / renders / 1000
