"""A producer and a consumer over a lowlat shared-memory ring, from Python.

The producer is another process: it attaches to the ring by name and pushes records with
the same numba kernels the service's stages use (``ring_push_batch``); this process pops
them (``ring_pop_batch``) and checks that every record arrived once, in order. Python only
sets up; the loops that move records are compiled.

    python examples/ring_producer_consumer.py --records 1000000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from contracts.records import MARKET_DATA
from service.kernels.jit import kernel
from service.kernels.ring import ring_pop_batch, ring_push_batch
from service.runtime.segments import attach_ring, create_ring

SHM = Path("/dev/shm")


@kernel
def produce(ring, batch, total):
    """Push records seq 1..total, a batch at a time, spinning while the ring is full."""
    seq = 1
    while seq <= total:
        n = min(batch.shape[0], total - seq + 1)
        for k in range(n):
            batch[k].seq = seq + k
            batch[k].price = 100 + (seq + k) % 7
        pushed = ring_push_batch(ring, batch, n)
        seq += pushed


@kernel
def consume(ring, batch, total):
    """Pop until ``total`` records came; returns the number out of order (0 expected)."""
    expected = 1
    wrong = 0
    while expected <= total:
        n = ring_pop_batch(ring, batch, batch.shape[0])
        for k in range(n):
            if batch[k].seq != expected:
                wrong += 1
            expected += 1
    return wrong


def producer(name: str, total: int) -> None:
    segment, ring = attach_ring(SHM, name, MARKET_DATA)
    try:
        produce(ring, np.zeros(64, MARKET_DATA), total)
    finally:
        segment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    name = f"example-ring-{os.getpid()}"
    segment, ring = create_ring(SHM, name, MARKET_DATA, 4096)
    try:
        batch = np.zeros(64, MARKET_DATA)
        consume(ring, batch, 0)  # compile before the clock starts
        child = multiprocessing.get_context("spawn").Process(
            target=producer, args=(name, args.records)
        )
        started = time.perf_counter()
        child.start()
        wrong = consume(ring, batch, args.records)
        elapsed = time.perf_counter() - started
        child.join()
        print(
            f"{args.records:,} records through the ring, {wrong} out of order, "
            f"{args.records / elapsed / 1e6:.1f} M records/s (producer start-up included)"
        )
        raise SystemExit(1 if wrong or child.exitcode else 0)
    finally:
        segment.unlink()


if __name__ == "__main__":
    main()
