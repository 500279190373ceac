"""The measures under the pipeline: the floor, the ring, multiprocessing.Queue, the C++ ring of
the same shape, and the kernels on one core (the L2 book, inference, the order-level book).

The cross-process ones start their two sides with ``harness`` and check what they report; the
checks live here, in the parent, so a failed checksum is a ``BenchError`` with the numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.records import LEVEL, MARKET_DATA
from service.bench import BenchError, baseline
from service.bench.figures import Percentiles, Tail, tail
from service.bench.harness import (
    FLOOR,
    FLOOR_UNTIMED,
    RING,
    RTT,
    UNTIMED_BATCHES,
    Pair,
    mpq_echo,
    mpq_produce,
)
from service.bench.order_events import order_events
from service.config import Config, OrderBookConfig
from service.kernels.book import book_throughput_kernel, new_book
from service.kernels.feed import new_simulator, sim_fill
from service.kernels.order_book import (
    new_order_book,
    ob_replay,
    ob_reset,
    ob_throughput_kernel,
)
from service.kernels.probes import W_END_NS, W_ERRORS, W_HIST, W_START_NS, W_SUM, clock_read_cost
from service.kernels.signals import inference_throughput_kernel
from service.research.backtest import Latency, run_backtest
from service.runtime.model import default_model_path, load_model
from service.runtime.recording import EVENTS_VERSION, Recording, market_data_of


def measure_floor(cpus: Sequence[int], rounds: int) -> dict[str, float]:
    """This machine's floor: a ping-pong on one cache line. Timed (two clock reads and a
    histogram sample per round trip: the summary's p50, p99, ...) and untimed
    (``untimed_mean``: the median over ``UNTIMED_BATCHES`` batches of a batch's time over its
    round trips, no clock inside the loop), each between two fresh processes (ns)."""
    with Pair() as pair:
        pair.run(FLOOR, cpus, rounds)
        timed = pair.histogram()
    per = max(1, rounds // UNTIMED_BATCHES)
    with Pair() as pair:
        pair.run(FLOOR_UNTIMED, cpus, per * UNTIMED_BATCHES)
        means = pair.words[W_HIST : W_HIST + UNTIMED_BATCHES] / per
    return {**timed, "untimed_mean": float(np.median(means))}


CLOCK_READS = 1_000_000


def measure_clock_read(reads: int = CLOCK_READS) -> float:
    """What one clock read costs here (ns), as the latency figures read it: the mean of a
    million back to back, after a call that compiles."""
    clock_read_cost(10)
    elapsed, _ = clock_read_cost(reads)
    return elapsed / reads


def measure_ring_throughput(
    cpus: Sequence[int], items: int, batch: int, capacity: int = 4096
) -> float:
    """Items/s through the ring, one publish per item (``batch`` 0) or ``batch`` at a time."""
    with Pair(("ring",), capacity) as pair:
        pair.run(RING, cpus, items, batch)
        w = pair.words
        expected = items * (items + 1) // 2
        if int(w[W_ERRORS]) != 0 or int(w[W_SUM]) != expected:
            raise BenchError(
                f"ring checksum failed: sum {int(w[W_SUM])} != {expected}, "
                f"{int(w[W_ERRORS])} items out of order"
            )
        return items / ((int(w[W_END_NS]) - int(w[W_START_NS])) / 1e9)


def measure_ring_rtt(cpus: Sequence[int], rounds: int, capacity: int = 4096) -> dict[str, float]:
    """One item there and back through two rings, as a histogram summary (ns)."""
    with Pair(("ab", "ba"), capacity) as pair:
        pair.run(RTT, cpus, rounds)
        return pair.histogram()


def measure_mpqueue(cpus: Sequence[int], items: int, rounds: int) -> tuple[float, Percentiles]:
    """multiprocessing.Queue in the same two shapes: throughput and ping-pong RTT."""
    ctx = multiprocessing.get_context("spawn")
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[1]})  # the parent is the consumer: pin it like the rings
    try:
        q = ctx.Queue()
        p = ctx.Process(target=mpq_produce, args=(cpus[0], q, items))
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
        p = ctx.Process(target=mpq_echo, args=(cpus[0], q_ab, q_ba, rounds + 100))
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


@dataclass(frozen=True)
class CppRing:
    items_per_s: float  # one publish per item
    batch_items_per_s: float
    rtt_ns: Tail


def measure_cpp_ring(cpus: Sequence[int], items: int, rounds: int) -> CppRing:
    """The C++ ring of the same shape (``baseline``): both throughputs and the round trip.

    Raises ``baseline.BaselineError`` when it cannot be built or run, or gives wrong data.
    """
    if not baseline.cpp_ring_available():
        raise baseline.BaselineError("no C++ compiler on PATH")
    single = baseline.measure_cpp_ring_throughput(items, 4096, False, cpus)
    batch = baseline.measure_cpp_ring_throughput(items, 4096, True, cpus)
    rtt = baseline.measure_cpp_ring_rtt(rounds, 4096, cpus)["rtt_ns"]
    return CppRing(single["items_per_s"], batch["items_per_s"], tail(rtt))


def measure_kernels(repeats: int) -> tuple[float, float]:
    """Single-core book updates/s and model inferences/s on realistic simulated data."""
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


ORDER_EVENTS = 200_000  # events in the order book's stream, applied ``repeats`` times
# the book's pools as the research path sizes them (the config's [order_book])
ORDER_BOOK_ORDERS, ORDER_BOOK_LEVELS = OrderBookConfig.max_orders, OrderBookConfig.max_levels


def measure_order_book(repeats: int) -> float:
    """Single-core order-level book messages/s: LOBSTER-like order events (``order_events``)
    applied ``repeats`` times to a book sized like the research path's, after a pass that
    checks they apply cleanly and one that compiles."""
    stream = order_events(ORDER_EVENTS).events
    book = new_order_book(1, ORDER_BOOK_ORDERS, ORDER_BOOK_LEVELS)
    refused = ob_replay(book, stream, 0, 1, np.zeros((1, 4), np.int64), np.full(len(stream), -1))
    if refused >= 0:
        raise BenchError(f"the order book refused generated event {refused}: {stream[refused]}")
    ob_reset(book, 0)
    once = ob_throughput_kernel(book, stream, 1)  # compile, warm caches
    t = time.perf_counter()
    checksum = ob_throughput_kernel(book, stream, repeats)
    rate = len(stream) * repeats / (time.perf_counter() - t)
    if checksum != once * repeats:  # every pass starts from an empty book: the same sum
        raise BenchError(f"order book checksum failed: {checksum} != {repeats} x {once}")
    return rate


def measure_backtest(repeats: int) -> float:
    """Single-core backtest events/s (``service.research.backtest``): the order events of
    ``order_events`` and the market data they imply, through the embedded config's engine at
    20 us feed and 50 us order latency; the median of ``repeats`` runs after one that compiles."""
    stream = order_events(ORDER_EVENTS).events
    recording = Recording(
        Path("<generated order events>"),
        market_data_of(stream),
        1,
        version=EVENTS_VERSION,
        events=stream,
        tick_nano=10_000_000,
    )
    config, latency = Config(), Latency(20_000, 50_000)
    run_backtest(recording, config, latency)
    rates = [run_backtest(recording, config, latency).stats["events_per_s"] for _ in range(repeats)]
    return float(np.median(rates))
