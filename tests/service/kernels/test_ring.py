"""The SPSC ring against a plain Python model, its boundaries, record types, and a two-core run.

Single-process tests drive a producer handle and a consumer handle (the same handle, or two
handles attached to one segment, as two processes would hold) through every API in any
interleaving and compare with a ``deque`` of what should be in flight. The one cross-process
test (``slow``) pushes 10M items between two pinned processes and checks order and checksum.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from contracts.records import MARKET_DATA, ORDER
from service.kernels.atomics import monotonic_ns
from service.kernels.jit import kernel
from service.kernels.ring import (
    HEAD,
    TAIL,
    ring_claim,
    ring_occupancy,
    ring_pop_batch,
    ring_publish,
    ring_push_batch,
    ring_read_slot,
    ring_readable,
    ring_release,
    ring_try_pop,
    ring_try_push,
    ring_write_slot,
)
from service.runtime.segments import attach_ring, create_ring
from service.runtime.shm import SegmentError

SENTINEL = -7_777_777
CAPACITIES = [2, 4, 8, 16, 32, 64]


# --------------------------------------------------------------------------- model-based test


class RingMachine(RuleBasedStateMachine):
    """One ring, a producer and a consumer handle, and the deque that the ring should equal."""

    @initialize(
        capacity=st.sampled_from(CAPACITIES),
        two_handles=st.booleans(),
        base=st.integers(-(2**62), 2**62),
    )
    def open_ring(self, capacity, two_handles, base):
        self.dir = Path(tempfile.mkdtemp(prefix="lltest-ring-"))
        _, self.producer = create_ring(self.dir, "ring", np.int64, capacity)
        if two_handles:
            _, self.consumer = attach_ring(self.dir, "ring", np.int64)
        else:
            self.consumer = self.producer
        self.capacity = capacity
        self.model: deque[int] = deque()
        self.next_value = base  # every value pushed is distinct: base, base+1, ...

    def teardown(self):
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _values(self, n: int) -> list[int]:
        return list(range(self.next_value, self.next_value + n))

    def _free(self) -> int:
        return self.capacity - len(self.model)

    def _check_readable_count(self, got: int, want: int) -> None:
        # "up to want": never more than is there, and some progress whenever anything is
        if want <= 0 or not self.model:
            assert got == 0
        else:
            assert 1 <= got <= min(want, len(self.model))

    # ----------------------------------------------------------------- producer side

    @rule()
    def try_push(self):
        value = self.next_value
        ok = ring_try_push(self.producer, value)
        assert ok == (len(self.model) < self.capacity)
        if ok:
            self.model.append(value)
            self.next_value += 1

    @rule(n=st.integers(0, 70), spare=st.integers(0, 3))
    def push_batch(self, n, spare):
        src = np.array(self._values(n + spare), dtype=np.int64)
        count = ring_push_batch(self.producer, src, n)
        assert count == min(n, self._free())
        self.model.extend(int(v) for v in src[:count])
        self.next_value += count

    @rule(want=st.integers(0, 70), data=st.data())
    def claim_write_publish(self, want, data):
        n = ring_claim(self.producer, want)
        assert n == min(want, self._free())
        values = self._values(n)
        for k, value in enumerate(values):
            self.producer.data[ring_write_slot(self.producer, k)] = value
        # written but unpublished records are invisible to the consumer and to observers
        assert ring_occupancy(self.consumer) == len(self.model)
        assert ring_readable(self.consumer, self.capacity) <= len(self.model)
        m = data.draw(st.integers(0, n), label="publish")
        ring_publish(self.producer, m)
        self.model.extend(values[:m])
        self.next_value += m

    # ----------------------------------------------------------------- consumer side

    @rule(slot=st.integers(0, 2))
    def try_pop(self, slot):
        dst = np.full(3, SENTINEL, dtype=np.int64)
        ok = ring_try_pop(self.consumer, dst, slot)
        assert ok == bool(self.model)
        expected = np.full(3, SENTINEL, dtype=np.int64)
        if ok:
            expected[slot] = self.model.popleft()
        np.testing.assert_array_equal(dst, expected)

    @rule(n=st.integers(0, 70))
    def pop_batch(self, n):
        dst = np.full(n + 2, SENTINEL, dtype=np.int64)
        count = ring_pop_batch(self.consumer, dst, n)
        self._check_readable_count(count, n)
        expected = [self.model.popleft() for _ in range(count)]
        assert dst[:count].tolist() == expected
        assert (dst[count:] == SENTINEL).all()

    @rule(want=st.integers(0, 70), data=st.data())
    def readable_read_release(self, want, data):
        n = ring_readable(self.consumer, want)
        self._check_readable_count(n, want)
        got = [int(self.consumer.data[ring_read_slot(self.consumer, k)]) for k in range(n)]
        assert got == list(self.model)[:n]
        # read but not yet released: the producer still sees those slots as taken
        assert ring_claim(self.producer, self.capacity) == self._free()
        m = data.draw(st.integers(0, n), label="release")
        ring_release(self.consumer, m)
        for _ in range(m):
            self.model.popleft()

    # ----------------------------------------------------------------- restarts

    @rule()
    def reattach_consumer(self):
        """A restarted consumer attaches late and carries on from where the ring is."""
        _, self.consumer = attach_ring(self.dir, "ring", np.int64)

    @precondition(lambda self: self.consumer is not self.producer)
    @rule()
    def reattach_producer(self):
        _, self.producer = attach_ring(self.dir, "ring", np.int64)

    @invariant()
    def occupancy_matches_model(self):
        assert ring_occupancy(self.producer) == len(self.model)
        assert ring_occupancy(self.consumer) == len(self.model)
        ctrl = self.producer.ctrl
        assert ctrl[HEAD] - ctrl[TAIL] == len(self.model)


RingMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRingAgainstModel = RingMachine.TestCase


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["one handle", "two handles"])
def ring_pair(request, tmp_path):
    """A (producer, consumer) pair of capacity 8 on a ring in tmp_path."""

    def make(capacity=8, dtype=np.int64):
        _, producer = create_ring(tmp_path, f"r{capacity}", dtype, capacity)
        if request.param == "one handle":
            return producer, producer
        _, consumer = attach_ring(tmp_path, f"r{capacity}", dtype)
        return producer, consumer

    return make


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize("capacity", [2, 8, 64])
def test_push_exactly_capacity_then_full_then_pop_to_empty(ring_pair, capacity):
    producer, consumer = ring_pair(capacity)
    dst = np.zeros(1, dtype=np.int64)
    assert not ring_try_pop(consumer, dst, 0)  # empty from the start
    for v in range(capacity):
        assert ring_try_push(producer, 100 + v)
        assert ring_occupancy(consumer) == v + 1
    assert not ring_try_push(producer, -1)  # full
    assert ring_claim(producer, 1) == 0
    assert ring_push_batch(producer, np.array([-1], dtype=np.int64), 1) == 0
    for v in range(capacity):
        assert ring_try_pop(consumer, dst, 0)
        assert dst[0] == 100 + v
    assert not ring_try_pop(consumer, dst, 0)  # empty again
    assert ring_pop_batch(consumer, np.zeros(4, dtype=np.int64), 4) == 0
    assert ring_readable(consumer, 4) == 0
    assert ring_occupancy(producer) == 0
    # one slot free again after one pop from full
    for v in range(capacity):
        assert ring_try_push(producer, v)
    assert ring_try_pop(consumer, dst, 0)
    assert ring_try_push(producer, capacity)
    assert not ring_try_push(producer, -1)


@pytest.mark.parametrize("capacity", [2, 4, 16])
def test_indices_wrap_many_times_one_by_one(ring_pair, capacity):
    producer, consumer = ring_pair(capacity)
    dst = np.zeros(1, dtype=np.int64)
    rounds = 12 * capacity + 3
    lag = capacity // 2 + 1  # kept in flight: head and tail cross the end at different times
    for v in range(rounds):
        assert ring_try_push(producer, v)
        if v >= lag - 1:
            assert ring_try_pop(consumer, dst, 0)
            assert dst[0] == v - (lag - 1)
    assert producer.ctrl[HEAD] == rounds  # indices count records ever moved: no reset at wrap
    assert producer.ctrl[TAIL] == rounds - (lag - 1)


@pytest.mark.parametrize("capacity", [4, 16])
def test_indices_wrap_many_times_in_batches(ring_pair, capacity):
    producer, consumer = ring_pair(capacity)
    pushed = popped = 0
    dst = np.zeros(capacity, dtype=np.int64)
    for step in range(40 * capacity):
        want = 1 + step % capacity
        src = np.arange(pushed, pushed + want, dtype=np.int64)
        pushed += ring_push_batch(producer, src, want)
        n = ring_pop_batch(consumer, dst, 1 + (step * 7) % capacity)
        assert dst[:n].tolist() == list(range(popped, popped + n))
        popped += n
        assert ring_occupancy(producer) == pushed - popped
    assert popped > 10 * capacity
    assert producer.ctrl[HEAD] == pushed and producer.ctrl[TAIL] == popped


def test_batch_push_is_partial_when_nearly_full(ring_pair):
    producer, consumer = ring_pair(8)
    assert ring_push_batch(producer, np.arange(5, dtype=np.int64), 5) == 5
    assert ring_push_batch(producer, np.arange(10, 16, dtype=np.int64), 6) == 3  # 3 of 6 fit
    assert ring_occupancy(producer) == 8
    assert ring_push_batch(producer, np.arange(20, 26, dtype=np.int64), 6) == 0
    dst = np.zeros(8, dtype=np.int64)
    assert ring_pop_batch(consumer, dst, 2) == 2
    assert dst[:2].tolist() == [0, 1]
    assert ring_push_batch(producer, np.arange(30, 36, dtype=np.int64), 6) == 2
    assert ring_claim(producer, 3) == 0
    out = np.zeros(8, dtype=np.int64)
    got = 0
    while got < 8:
        n = ring_pop_batch(consumer, out[got:], 8 - got)
        assert n > 0
        got += n
    assert out.tolist() == [2, 3, 4, 10, 11, 12, 30, 31]


def test_claim_is_limited_by_free_space_and_publish_makes_records_visible(ring_pair):
    producer, consumer = ring_pair(8)
    assert ring_claim(producer, 20) == 8
    assert ring_claim(producer, 3) == 3
    for k in range(3):
        producer.data[ring_write_slot(producer, k)] = 40 + k
    assert ring_readable(consumer, 8) == 0  # written, not published
    ring_publish(producer, 3)
    assert ring_readable(consumer, 8) == 3
    assert [consumer.data[ring_read_slot(consumer, k)] for k in range(3)] == [40, 41, 42]
    assert ring_claim(producer, 8) == 5  # read but not released: still taken
    ring_release(consumer, 3)
    assert ring_claim(producer, 8) == 8


# --------------------------------------------------------------------------- record types


def _market_data(n: int) -> np.ndarray:
    records = np.zeros(n, dtype=MARKET_DATA)
    i = np.arange(n)
    records["seq"] = 2**40 + i
    records["send_ns"] = -(2**62) + 3 * i
    records["price"] = 10_000 + 7 * i
    records["qty"] = np.where(i % 2 == 0, -(2**31) + i, 2**31 - 1 - i)
    records["instrument"] = 65_535 - i
    records["kind"] = (i % 4) + 1
    records["side"] = np.where(i % 3 == 0, 255, i % 2)
    return records


def _assert_records_equal(got: np.ndarray, expected: np.ndarray) -> None:
    for name in MARKET_DATA.names:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_market_data_records_round_trip_field_by_field(ring_pair):
    producer, consumer = ring_pair(16, MARKET_DATA)
    records = _market_data(12)
    # one by one
    for rec in records[:5]:
        assert ring_try_push(producer, rec)
    out = np.zeros(12, dtype=MARKET_DATA)
    for i in range(5):
        assert ring_try_pop(consumer, out, i)
    _assert_records_equal(out[:5], records[:5])
    # in batches, across the end of the ring
    for _ in range(3):
        assert ring_push_batch(producer, records, 12) == 12
        out[:] = np.zeros(1, dtype=MARKET_DATA)
        got = 0
        while got < 12:
            got += ring_pop_batch(consumer, out[got:], 12 - got)
        _assert_records_equal(out, records)
    # in place
    n = ring_claim(producer, 4)
    assert n == 4
    for k in range(n):
        producer.data[ring_write_slot(producer, k)] = records[k + 6]
    ring_publish(producer, n)
    assert ring_readable(consumer, 4) == 4
    read = np.array([consumer.data[ring_read_slot(consumer, k)] for k in range(4)])
    ring_release(consumer, 4)
    _assert_records_equal(read, records[6:10])


# --------------------------------------------------------------------------- errors


def test_attach_with_another_record_type_is_refused(tmp_path):
    create_ring(tmp_path, "md", MARKET_DATA, 8)
    # the record type is part of the ring's layout hash: a reader of another type (same 32-byte
    # size, different fields; or another size) refuses it as another build's layout
    with pytest.raises(SegmentError, match="another build of lowlat"):
        attach_ring(tmp_path, "md", ORDER)
    with pytest.raises(SegmentError, match="another build of lowlat"):
        attach_ring(tmp_path, "md", np.int64)
    _, ring = attach_ring(tmp_path, "md", MARKET_DATA)
    assert ring.mask == 7 and ring.data.dtype == MARKET_DATA


@pytest.mark.parametrize("capacity", [0, 1, 3, 6, 100, -4])
def test_capacity_must_be_a_power_of_two(tmp_path, capacity):
    with pytest.raises(ValueError, match="power of two"):
        create_ring(tmp_path, "bad", np.int64, capacity)
    assert not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- two processes

STRESS_ITEMS = 10_000_000
STRESS_CAPACITY = 4096
STRESS_TIMEOUT_S = 60.0


@kernel
def _stress_produce(r, items, batch, src, deadline_ns):
    """Push 1..items (batch 0: one by one; else batches of 1..batch); returns how many."""
    value = 1
    idle = 0
    while value <= items:
        if batch == 0:
            moved = 1 if ring_try_push(r, value) else 0
        else:
            want = min(1 + value % batch, items - value + 1)
            for k in range(want):
                src[k] = value + k
            moved = ring_push_batch(r, src, want)
        if moved == 0:
            idle += 1
            if idle % 4096 == 0 and monotonic_ns() > deadline_ns:
                break
        value += moved
    return value - 1


@kernel
def _stress_consume(r, items, batch, dst, deadline_ns):
    """Pop until ``items`` arrived; returns (count, sum, items out of order)."""
    count = 0
    total = 0
    errors = 0
    idle = 0
    while count < items:
        if batch == 0:
            moved = 1 if ring_try_pop(r, dst, 0) else 0
        else:
            moved = ring_pop_batch(r, dst, min(batch, items - count))
        if moved == 0:
            idle += 1
            if idle % 4096 == 0 and monotonic_ns() > deadline_ns:
                break
        for k in range(moved):
            count += 1
            errors += dst[k] != count  # each item is the previous one plus one
            total += dst[k]
    return count, total, errors


def _deadline_ns() -> int:
    # time.monotonic_ns and service.kernels.atomics.monotonic_ns read the same CLOCK_MONOTONIC
    return time.monotonic_ns() + int(STRESS_TIMEOUT_S * 1e9)


def _stress_child(role, cpu, shm_dir, name, items, batch, results):  # noqa: PLR0913 -- a child process's arguments
    os.sched_setaffinity(0, {cpu})
    _, r = attach_ring(Path(shm_dir), name, np.int64)
    scratch = np.zeros(max(batch, 1), dtype=np.int64)
    if role == "producer":
        _stress_produce(r, 0, batch, scratch, 0)  # compile or load before the clock starts
        pushed = _stress_produce(r, items, batch, scratch, _deadline_ns())
        results.put(("producer", pushed, 0, 0))
    else:
        _stress_consume(r, 0, batch, scratch, 0)
        count, total, errors = _stress_consume(r, items, batch, scratch, _deadline_ns())
        results.put(("consumer", count, total, errors))


@pytest.fixture
def shm_ring_name():
    name = f"lltest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    Path("/dev/shm", name).unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [0, 64], ids=["per-item", "batch"])
def test_two_pinned_processes_move_10m_items_in_order(batch, shm_ring_name):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"needs two CPUs, this process may use only {cpus}")
    _, ring = create_ring(Path("/dev/shm"), shm_ring_name, np.int64, STRESS_CAPACITY)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_stress_child,
            args=(role, cpu, "/dev/shm", shm_ring_name, STRESS_ITEMS, batch, results),
        )
        for role, cpu in (("producer", cpus[0]), ("consumer", cpus[1]))
    ]
    started = time.monotonic()
    for p in procs:
        p.start()
    got = {}
    try:
        while len(got) < len(procs):
            try:
                role, *values = results.get(timeout=0.5)
                got[role] = values
            except queue.Empty:
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not crashed, f"a ring process failed with exit code {crashed}"
                assert time.monotonic() - started < STRESS_TIMEOUT_S + 30, "no result in time"
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    elapsed = time.monotonic() - started
    assert [p.exitcode for p in procs] == [0, 0]
    assert got["producer"][0] == STRESS_ITEMS
    count, total, errors = got["consumer"]
    assert count == STRESS_ITEMS
    assert errors == 0
    assert total == STRESS_ITEMS * (STRESS_ITEMS + 1) // 2
    assert ring.ctrl[HEAD] == ring.ctrl[TAIL] == STRESS_ITEMS
    assert ring_occupancy(ring) == 0
    assert elapsed < STRESS_TIMEOUT_S
