"""``trading-service bench``: every figure that matters, measured side by side in one run.

The machines this runs on are shared and noisy, so the figures that carry targets are ratios
of things measured in the same run: the ring against ``multiprocessing.Queue`` and against a
C++ ring of the same shape, and latencies against this machine's floor (a cross-core
ping-pong on one cache line: no ring moves data between cores faster than that).

Cross-process measurements run two pinned processes on two distinct CPUs; the parent only
sleeps while they run, so no two busy-polling processes ever share a core.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from contracts.buckets import summary
from contracts.documents import finite_or_none
from contracts.segments import HEADER_BYTES, KIND_BENCH
from service.bench.jitter import measure_jitter
from service.config import default_cores
from service.kernels.probes import (
    BENCH_WORDS,
    W_END_NS,
    W_ERRORS,
    W_HIST,
    W_START_NS,
    W_SUM,
    floor_initiator,
    floor_responder,
    ready_and_wait,
    ring_consumer,
    ring_producer,
    ring_rtt_initiator,
    ring_rtt_responder,
)
from service.runtime.segments import attach_ring, create_ring
from service.runtime.shm import Segment

E2E_RATES = (100_000, 1_000_000)


class BenchError(RuntimeError):
    """The benchmark cannot run here as asked (the message says why)."""


def parse_cpus(text: str | None) -> tuple[int, int]:
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


# ------------------------------------------------------------------------------ processes


def _attach_words(shm_dir: str, name: str) -> np.ndarray:
    segment = Segment.attach(Path(shm_dir), name, KIND_BENCH)
    return segment.array(np.int64, HEADER_BYTES, BENCH_WORDS)


def _child(role: str, cpu: int, shm_dir: str, prefix: str, n: int, batch: int) -> None:
    os.sched_setaffinity(0, {cpu})
    words = _attach_words(shm_dir, f"{prefix}.words")
    hist = words[W_HIST:]
    scratch = np.zeros(1, dtype=np.int64)
    if role in ("floor-a", "floor-b"):
        if role == "floor-a":
            floor_initiator(words, 0, hist)  # compile / load before the barrier
            ready_and_wait(words, 0)
            floor_initiator(words, n, hist)
        else:
            floor_responder(words, 0)
            ready_and_wait(words, 1)
            floor_responder(words, n)
        return
    if role in ("ring-producer", "ring-consumer"):
        _, r = attach_ring(Path(shm_dir), f"{prefix}.ring", np.int64)
        if role == "ring-producer":
            ring_producer(r, 0, batch)
            ready_and_wait(words, 0)
            words[W_START_NS] = time.monotonic_ns()
            ring_producer(r, n, batch)
        else:
            ring_consumer(r, 0, batch, scratch)
            ready_and_wait(words, 1)
            total, errors = ring_consumer(r, n, batch, scratch)
            words[W_END_NS] = time.monotonic_ns()
            words[W_SUM], words[W_ERRORS] = total, errors
        return
    _, ab = attach_ring(Path(shm_dir), f"{prefix}.ab", np.int64)
    _, ba = attach_ring(Path(shm_dir), f"{prefix}.ba", np.int64)
    if role == "rtt-a":
        ring_rtt_initiator(ab, ba, 0, hist, scratch)
        ready_and_wait(words, 0)
        ring_rtt_initiator(ab, ba, n, hist, scratch)
    else:
        ring_rtt_responder(ab, ba, 0, scratch)
        ready_and_wait(words, 1)
        ring_rtt_responder(ab, ba, n, scratch)


class _Pair:
    """Shared segments for one two-process measurement, removed afterwards."""

    def __init__(self, rings: tuple[str, ...] = (), capacity: int = 4096):
        self.shm_dir = "/dev/shm"
        self.prefix = f"lowlat-bench-{os.getpid()}"
        self.segments = [
            Segment.create(
                Path(self.shm_dir),
                f"{self.prefix}.words",
                HEADER_BYTES + BENCH_WORDS * 8,
                KIND_BENCH,
            )
        ]
        self.words = self.segments[0].array(np.int64, HEADER_BYTES, BENCH_WORDS)
        for name in rings:
            seg, _ = create_ring(Path(self.shm_dir), f"{self.prefix}.{name}", np.int64, capacity)
            self.segments.append(seg)

    def run(self, roles, cpus, n, batch=0, timeout=600.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_child, args=(role, cpu, self.shm_dir, self.prefix, n, batch))
            for role, cpu in zip(roles, cpus, strict=True)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        failed = [p for p in procs if p.exitcode != 0]
        for p in procs:
            if p.is_alive():
                p.kill()
        if failed:
            raise BenchError(f"benchmark process failed (exit codes {[p.exitcode for p in procs]})")

    def histogram(self) -> dict:
        return summary(self.words[W_HIST:].copy())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for seg in self.segments:
            seg.unlink()


def measure_floor(cpus, rounds: int) -> dict:
    with _Pair() as pair:
        pair.run(("floor-a", "floor-b"), cpus, rounds)
        return pair.histogram()


def measure_ring_throughput(cpus, items: int, batch: int, capacity: int = 4096) -> float:
    with _Pair(("ring",), capacity) as pair:
        pair.run(("ring-producer", "ring-consumer"), cpus, items, batch)
        w = pair.words
        expected = items * (items + 1) // 2
        if int(w[W_ERRORS]) != 0 or int(w[W_SUM]) != expected:
            raise BenchError(
                f"ring checksum failed: sum {int(w[W_SUM])} != {expected}, "
                f"{int(w[W_ERRORS])} items out of order"
            )
        return items / ((int(w[W_END_NS]) - int(w[W_START_NS])) / 1e9)


def measure_ring_rtt(cpus, rounds: int, capacity: int = 4096) -> dict:
    with _Pair(("ab", "ba"), capacity) as pair:
        pair.run(("rtt-a", "rtt-b"), cpus, rounds)
        return pair.histogram()


# ------------------------------------------------------------------------------ mp.Queue


def _mpq_producer(cpu, q, items):
    os.sched_setaffinity(0, {cpu})
    for i in range(1, items + 1):
        q.put(i)


def _mpq_echo(cpu, q_in, q_out, rounds):
    os.sched_setaffinity(0, {cpu})
    for _ in range(rounds):
        q_out.put(q_in.get())


def measure_mpqueue(cpus, items: int, rounds: int) -> tuple[float, dict]:
    """multiprocessing.Queue in the same two shapes: throughput and ping-pong RTT."""
    ctx = multiprocessing.get_context("spawn")
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[1]})  # the parent is the consumer: pin it like the rings
    try:
        q = ctx.Queue()
        p = ctx.Process(target=_mpq_producer, args=(cpus[0], q, items))
        p.start()
        first = q.get()
        start = time.perf_counter()
        total = first
        for _ in range(items - 1):
            total += q.get()
        elapsed = time.perf_counter() - start
        p.join()
        if total != items * (items + 1) // 2:
            raise BenchError("multiprocessing.Queue checksum failed")
        q_ab, q_ba = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=_mpq_echo, args=(cpus[0], q_ab, q_ba, rounds + 100))
        p.start()
        samples = np.empty(rounds, dtype=np.int64)
        for i in range(rounds + 100):
            t0 = time.monotonic_ns()
            q_ab.put(i)
            q_ba.get()
            if i >= 100:
                samples[i - 100] = time.monotonic_ns() - t0
        p.join()
    finally:
        os.sched_setaffinity(0, allowed)
    p50, p99 = np.percentile(samples, [50, 99])
    return (items - 1) / elapsed, {"p50": float(p50), "p99": float(p99)}


# ------------------------------------------------------------------------------ kernels


def measure_kernels(repeats: int) -> tuple[float, float]:
    """Single-core book updates/s and model inferences/s on realistic simulated data."""
    from contracts.records import LEVEL, MARKET_DATA
    from service.config import Config
    from service.kernels.book import book_throughput_kernel, new_book
    from service.kernels.feed import new_simulator, sim_fill
    from service.kernels.signals import inference_throughput_kernel
    from service.runtime.model import default_model_path, load_model

    config = Config()
    sim = new_simulator(config.feed)
    stream = np.zeros(200_000, dtype=MARKET_DATA)
    sim_fill(sim, stream, stream.shape[0])
    levels = stream[stream["kind"] == LEVEL]
    insts = levels["instrument"].astype(np.int64)
    sides = levels["side"].astype(np.int64)
    prices = levels["price"].astype(np.int64)
    qtys = levels["qty"].astype(np.int64)
    book = new_book(config.feed.instruments, config.engine.book_window_ticks)
    book_throughput_kernel(book, insts, sides, prices, qtys, 1)  # compile, warm caches
    t = time.perf_counter()
    book_throughput_kernel(book, insts, sides, prices, qtys, repeats)
    book_rate = len(insts) * repeats / (time.perf_counter() - t)

    model = load_model(default_model_path())
    rng = np.random.default_rng(1)
    values = rng.standard_normal((4096, model.weights.shape[0]))
    inference_throughput_kernel(model.weights, model.bias, model.logistic, values, 1)
    reps = max(1, repeats * len(insts) // 4096)
    t = time.perf_counter()
    inference_throughput_kernel(model.weights, model.bias, model.logistic, values, reps)
    inference_rate = 4096 * reps / (time.perf_counter() - t)
    return book_rate, inference_rate


# ------------------------------------------------------------------------------ pipeline


def measure_e2e(
    cores: dict[str, int],
    rate: int,
    duration_s: float,
    scrape_hz: float = 0.0,
    load_requests: int = 0,
) -> dict:
    """Tick-to-order through the whole pipeline at a steady offered rate, stages on ``cores``.

    The simulator's bursts are off here: a burst runs at 10x the offered rate, so with them
    the figure would describe the burst model, not the pipeline at the rate in its name.
    With ``scrape_hz`` a telemetry API serves the run and /metrics is scraped at that rate
    meanwhile; with ``load_requests``, ``hey`` sends that many /metrics requests from 20
    concurrent clients during the run and their latency percentiles are returned too.
    """
    from service.config import Config, ServiceConfig
    from service.runtime.pipeline import run_pipeline
    from service.runtime.stats import describe

    base = Config()
    config = dataclasses.replace(
        base,
        cores=dict(cores),
        feed=dataclasses.replace(base.feed, rate=rate, burst_probability=0.0),
        service=dataclasses.replace(ServiceConfig(), shm_prefix=f"lowlat-bench-e2e-{os.getpid()}"),
        source="<bench>",
    )
    with _TelemetryDuring(config, scrape_hz, load_requests) as telemetry:
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


class _TelemetryDuring:
    """A telemetry API beside a bench run, scraped at ``scrape_hz`` and/or loaded with hey.

    The scraping starts when the pipeline says it is ready (its log line), so it overlaps the
    measured window and not the warm-up.
    """

    def __init__(self, config, scrape_hz: float, load_requests: int):
        import threading

        self.config, self.scrape_hz, self.load_requests = config, scrape_hz, load_requests
        self.active = scrape_hz > 0 or load_requests > 0
        self.scrapes = self.scrape_errors = 0
        self.load: dict = {}
        self._stop = threading.Event()
        self.done = threading.Event() if load_requests > 0 else None  # hey finished
        self._threads: list = []

    def __enter__(self):
        if not self.active:
            return self
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.config = dataclasses.replace(
            self.config, telemetry=dataclasses.replace(self.config.telemetry, port=port)
        )
        self.url = f"http://127.0.0.1:{port}/metrics"
        from service.telemetry.api import serve

        self.server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(self.config, "127.0.0.1", port), daemon=True
        )
        self.server.start()
        return self

    def on_log(self, message: str) -> None:
        if not self.active or not message.startswith("ready"):
            return
        import threading

        if self.scrape_hz > 0:
            self._threads.append(threading.Thread(target=self._scrape, daemon=True))
        if self.load_requests > 0:
            self._threads.append(threading.Thread(target=self._hey, daemon=True))
        for thread in self._threads:
            thread.start()

    def _scrape(self) -> None:
        import httpx

        self._warm()
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.wait(1.0 / self.scrape_hz):
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.scrapes += 1
                self.scrape_errors += not ok

    def _warm(self) -> None:
        """Wait until the API answers /metrics: its first reading loads the snapshot kernels."""
        import httpx

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
            self.done.set()

    def figures(self) -> dict:
        out: dict = {}
        if self.scrape_hz > 0:
            out.update(scrapes=self.scrapes, scrape_errors=self.scrape_errors)
        if self.load_requests > 0:
            out["metrics_under_load"] = self.load
        return out

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self.server.terminate()
        self.server.join(10)


def hey_latency(url: str, requests: int, concurrency: int) -> dict:
    """Latency of ``requests`` GETs from ``concurrency`` clients, measured by hey (ms)."""
    import shutil
    import subprocess

    if shutil.which("hey") is None:
        return {"error": "hey is not installed (Debian package hey)"}
    out = subprocess.run(
        ["hey", "-n", str(requests), "-c", str(concurrency), "-t", "10", url],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    figures: dict = {"requests": requests, "concurrency": concurrency}
    for line in out.splitlines():
        line = line.strip()
        for pct, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
            if line.startswith(f"{pct} in "):
                figures[key] = float(line.split()[2]) * 1000
        if line.startswith("[200]"):
            figures["ok"] = int(line.split()[1])
    figures["errors"] = requests - figures.get("ok", 0)
    return figures


def machine() -> dict:
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


def run_bench(quick: bool, cpus: tuple[int, int]) -> dict:
    from service.bench import baseline

    n_ring = 10_000_000
    n_rtt = 50_000 if quick else 500_000
    n_mpq, n_mpq_rtt = (100_000, 2_000) if quick else (300_000, 10_000)
    e2e_s = 2.0 if quick else 10.0
    sweep = (
        (2_000_000, 3_000_000, 5_000_000)
        if quick
        else (2_000_000, 3_000_000, 4_000_000, 5_000_000, 7_000_000, 10_000_000)
    )
    figures: dict = {"machine": machine(), "cpus": list(cpus), "quick": quick}
    steps = 12 + len(E2E_RATES) + len(sweep)
    with Progress(transient=True) as progress:
        task = progress.add_task("benchmark", total=steps)

        def step(label):
            progress.update(task, description=label)

        step("machine hiccups (both cores busy)")
        figures["hiccups_ns"] = measure_jitter(cpus, 1.0 if quick else 3.0)
        progress.advance(task)
        step("floor: cache-line ping-pong")
        figures["floor_rtt_ns"] = _pick(measure_floor(cpus, n_rtt), "p50", "p99")
        progress.advance(task)
        step("ring throughput (one publish per item)")
        figures["ring_items_per_s"] = measure_ring_throughput(cpus, n_ring, 0)
        progress.advance(task)
        step("ring throughput (batch API)")
        figures["ring_batch_items_per_s"] = measure_ring_throughput(cpus, n_ring, 256)
        progress.advance(task)
        step("ring round trip")
        figures["ring_rtt_ns"] = _pick(measure_ring_rtt(cpus, n_rtt), "p50", "p99", "p999", "max")
        progress.advance(task)
        step("multiprocessing.Queue")
        rate, rtt = measure_mpqueue(cpus, n_mpq, n_mpq_rtt)
        figures["mpqueue_items_per_s"], figures["mpqueue_rtt_ns"] = rate, rtt
        progress.advance(task)
        step("C++ ring of the same shape")
        if baseline.cpp_ring_available():
            try:
                single = baseline.measure_cpp_ring_throughput(n_ring, 4096, False, cpus)
                batch = baseline.measure_cpp_ring_throughput(n_ring, 4096, True, cpus)
                rtt = baseline.measure_cpp_ring_rtt(n_rtt, 4096, cpus)["rtt_ns"]
                figures["cpp_ring_items_per_s"] = single["items_per_s"]
                figures["cpp_ring_batch_items_per_s"] = batch["items_per_s"]
                figures["cpp_ring_rtt_ns"] = _pick(rtt, "p50", "p99", "p999", "max")
            except baseline.BaselineError as exc:
                figures["cpp_ring_error"] = str(exc)
        else:
            figures["cpp_ring_error"] = "no C++ compiler on PATH"
        progress.advance(task)
        step("kernels (single core)")
        figures["book_updates_per_s"], figures["inference_per_s"] = measure_kernels(
            5 if quick else 20
        )
        progress.advance(task)
        # the service's own layout (what `run` uses here: on a host, one core per stage and a
        # housekeeping core; on 2 CPUs, all stages fused with the first CPU left to the OS),
        # and the split one that always crosses cores (feed | engine + gateway)
        layout = default_cores()
        split = {"feed": cpus[0], "engine": cpus[1], "gateway": cpus[1]}
        figures["e2e_layout"], figures["e2e_split_layout"] = layout, split
        figures["e2e_split"] = {}
        for rate in E2E_RATES:
            step(f"pipeline at {rate:,} msgs/s, split across cpus {cpus}")
            figures["e2e_split"][str(rate)] = measure_e2e(split, rate, e2e_s)
            progress.advance(task)
        figures["e2e"] = {}
        for rate in E2E_RATES:
            step(f"pipeline at {rate:,} msgs/s")
            figures["e2e"][str(rate)] = measure_e2e(layout, rate, e2e_s)
            progress.advance(task)
        # p99 moves run to run by more than the effect sought, so scraped and unscraped runs
        # alternate and their medians are compared
        pairs = 2 if quick else 3
        unscraped_p99, scraped_p99, scraped = [], [], {}
        for i in range(pairs):
            step(f"scrape interference {i + 1}/{pairs}: 1M msgs/s, /metrics at 10 Hz or not")
            run_s = e2e_s if quick else 5.0  # 5 s runs: about 500 scrapes over the pairs
            plain = measure_e2e(layout, 1_000_000, run_s)
            scraped = measure_e2e(layout, 1_000_000, run_s, scrape_hz=10.0)
            unscraped_p99.append(plain["p99"] or float("nan"))
            scraped_p99.append(scraped["p99"] or float("nan"))
        figures["scrape_interference"] = float(np.median(scraped_p99) / np.median(unscraped_p99))
        figures["scrape_interference_runs"] = {
            "p99_unscraped_ns": unscraped_p99,
            "p99_scraped_ns": scraped_p99,
            "scrapes_last_run": scraped["scrapes"],
            "scrape_errors_last_run": scraped["scrape_errors"],
        }
        progress.advance(task)
        step("/metrics under 20 concurrent clients")
        # the run lasts as long as hey takes (the duration is only a ceiling)
        loaded = measure_e2e(layout, 100_000, 300.0, load_requests=2_000 if quick else 10_000)
        figures["metrics_under_load"] = loaded["metrics_under_load"]
        progress.advance(task)
        floor = figures["floor_rtt_ns"]["p50"]
        best = sustained = 0
        figures["rate_sweep"] = {}
        # the sweep starts from the highest e2e rate, already measured, and goes up
        sweep_results = [(E2E_RATES[-1], figures["e2e"][str(E2E_RATES[-1])])]
        for rate in sweep:
            step(f"sweep at {rate:,} msgs/s")
            result = measure_e2e(layout, rate, 1.0 if quick else 3.0)
            figures["rate_sweep"][str(rate)] = result
            sweep_results.append((rate, result))
            progress.advance(task)
            if result["drops"] > 0:
                break  # past the pipeline's capacity: higher rates only drop more
        for rate, result in sweep_results:
            if result["drops"] > 0:
                break
            if result["p99"] is not None and result["p99"] <= 40 * floor:
                best = rate
            # p90 is not yet set by the machine's hiccups (see hiccups_ns) but still shows a
            # pipeline that has stopped keeping up and lives off its ring's backlog
            if result["p90"] is not None and result["p90"] <= 40 * floor:
                sustained = rate
        figures["max_sustained_rate_msgs_per_s"] = sustained
        figures["max_rate_msgs_per_s"] = best
        progress.advance(task)
    figures["ratios"] = ratios(figures)
    return finite_or_none(figures)


def _layout(cores: dict) -> str:
    return ", ".join(f"{stage} cpu{cpu}" for stage, cpu in cores.items())


def _pick(d: dict, *keys) -> dict:
    return {k: float(d[k]) for k in keys}


def ratios(f: dict) -> dict:
    floor = f["floor_rtt_ns"]["p50"]
    r = {
        "ring_vs_mpqueue": f["ring_items_per_s"] / f["mpqueue_items_per_s"],
        "ring_rtt_p50_vs_floor": f["ring_rtt_ns"]["p50"] / floor,
        "e2e_1m_p50_vs_floor": (f["e2e"]["1000000"]["p50"] or float("nan")) / floor,
        "e2e_1m_p90_vs_floor": (f["e2e"]["1000000"]["p90"] or float("nan")) / floor,
        "e2e_1m_p99_vs_floor": (f["e2e"]["1000000"]["p99"] or float("nan")) / floor,
        "e2e_split_1m_p50_vs_floor": (f["e2e_split"]["1000000"]["p50"] or float("nan")) / floor,
        "e2e_split_1m_p99_vs_floor": (f["e2e_split"]["1000000"]["p99"] or float("nan")) / floor,
    }
    r["scrape_interference"] = f["scrape_interference"]
    r["metrics_p99_ms_20_clients"] = f["metrics_under_load"].get("p99_ms")
    if "cpp_ring_items_per_s" in f:
        r["ring_vs_cpp"] = f["ring_items_per_s"] / f["cpp_ring_items_per_s"]
        r["ring_batch_vs_cpp_batch"] = f["ring_batch_items_per_s"] / f["cpp_ring_batch_items_per_s"]
        r["cpp_ring_rtt_p50_vs_floor"] = f["cpp_ring_rtt_ns"]["p50"] / floor
        # what the same ring shape reaches in C++ against the same baseline: the ceiling for
        # ring_vs_mpqueue on this machine
        r["cpp_ring_vs_mpqueue"] = f["cpp_ring_items_per_s"] / f["mpqueue_items_per_s"]
    return r


TARGETS = {  # figure -> (goal, "min" | "max"), from the issues; checked in the printed table
    "ring_vs_mpqueue": (500.0, "min"),
    "ring_vs_cpp": (0.8, "min"),
    "ring_rtt_p50_vs_floor": (4.0, "max"),
    "e2e_1m_p50_vs_floor": (10.0, "max"),
    "e2e_1m_p99_vs_floor": (40.0, "max"),
    "scrape_interference": (1.05, "max"),
    "metrics_p99_ms_20_clients": (5.0, "max"),
}


def print_bench_report(f: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
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
    t.add_row(
        "floor RTT p50 / p99", f"{f['floor_rtt_ns']['p50']:.0f} / {f['floor_rtt_ns']['p99']:.0f} ns"
    )
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
    t.add_row(
        "e2e layout (the service's own) / split",
        f"{_layout(f['e2e_layout'])} / {_layout(f['e2e_split_layout'])}",
    )
    for rate, e in f["e2e_split"].items():
        vals = " / ".join(
            "-" if e[k] is None else f"{e[k]:,.0f}" for k in ("p50", "p90", "p99", "p999", "max")
        )
        t.add_row(
            f"split: tick-to-order @ {int(rate):,}/s p50/p90/p99/p99.9/max",
            f"{vals} ns, drops {e['drops']:,}",
        )
    for rate, e in {**f["e2e"], **f["rate_sweep"]}.items():
        vals = " / ".join(
            "-" if e[k] is None else f"{e[k]:,.0f}" for k in ("p50", "p90", "p99", "p999", "max")
        )
        t.add_row(
            f"tick-to-order @ {int(rate):,}/s p50/p90/p99/p99.9/max",
            f"{vals} ns, drops {e['drops']:,}",
        )
    t.add_row("max rate (no drops, p99 <= 40x floor)", f"{f['max_rate_msgs_per_s']:,} msgs/s")
    t.add_row(
        "max sustained rate (no drops, p90 <= 40x floor)",
        f"{f['max_sustained_rate_msgs_per_s']:,} msgs/s",
    )
    console.print(t)
    r = Table(title="ratios measured in this run")
    r.add_column("ratio")
    r.add_column("value", justify="right")
    r.add_column("goal", justify="right")
    for name, value in f["ratios"].items():
        goal = TARGETS.get(name)
        mark = ""
        if goal and value is not None:
            ok = value >= goal[0] if goal[1] == "min" else value <= goal[0]
            mark = f"{'>=' if goal[1] == 'min' else '<='} {goal[0]:g} {'ok' if ok else 'MISSED'}"
        r.add_row(name, "-" if value is None else f"{value:.2f}", mark)
    console.print(r)
