"""The transports side by side: one 64-byte message there and back, and a paced stream of them,
over the shared-memory ring, UDP and TCP on loopback, UDP and TCP across a veth pair between two
network namespaces, and the C reference of each socket round trip on the same route.

Each side is a spawned process pinned to its own CPU (the parent only waits), so no two
busy-polling processes share a core. A socket side opens its socket in Python, in its namespace
(``netns.enter``) when the route has one, then hands the descriptor to the kernels of
``transport_probes``; it compiles them before it says it is ready, so no compile is timed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np

from contracts.network import RECEIVE_BUFFER_BYTES
from service.bench import BenchError, baseline
from service.bench.netns import VethPair, enter
from service.kernels.sockets import new_receive_batch
from service.kernels.transport_probes import (
    MESSAGE,
    MESSAGE_BYTES,
    STOP,
    datagram_counter,
    paced_datagram_sender,
    paced_sender,
    ring_counter,
    ring_echo,
    ring_paced_producer,
    ring_rtt_initiator,
    socket_echo,
    socket_rtt_initiator,
    stream_counter,
)
from service.runtime.segments import attach_ring, create_ring

RING_DIR = Path("/dev/shm")

PROTOS = ("udp", "tcp")
WARMUP_ROUNDS = 1000
IDLE_NS = 2_000_000_000  # an echo or counter with nothing for this long ends
# How long a round trip waits for its echo. A UDP echo later than 100 ms is a lost round; TCP
# loses nothing, so a late echo is a slow round (a 100 ms stall of this VM once counted as lost
# in CI), waited for as long as the echo side waits.
ECHO_TIMEOUT_NS = {"udp": 100_000_000, "tcp": IDLE_NS}
SIDE_TIMEOUT_S = 300.0
UNPACED = 1 << 62  # (msgs/s) no sender reaches: every message is due at once


@dataclass(frozen=True)
class Route:
    """Where the two sides sit: each side's namespace (None: this one) and address."""

    name: str  # "loopback" or "veth"
    initiator_ns: str | None
    responder_ns: str | None
    initiator_ip: str
    responder_ip: str


LOOPBACK = Route("loopback", None, None, "127.0.0.1", "127.0.0.1")


def veth_route(pair: VethPair) -> Route:
    return Route("veth", pair.a, pair.b, pair.a_ip, pair.b_ip)


def _ports(n: int = 2) -> list[int]:
    """``n`` ports free on loopback now (namespaces made for the bench have every port free)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------------ the sides' sockets


@dataclass(frozen=True)
class Ends:
    proto: str
    ns: str | None
    local: tuple[str, int]
    peer: tuple[str, int]


def _connect(ends: Ends, ready: Event, listening: bool) -> socket.socket:
    """The side's socket, connected; ``listening`` is the side that waits for the other."""
    enter(ends.ns)
    kind = socket.SOCK_STREAM if ends.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if ends.proto == "udp":
        sock.bind(ends.local)
        sock.connect(ends.peer)
        _big_receive_buffer(sock)
        if listening:
            ready.set()
        elif not ready.wait(SIDE_TIMEOUT_S):
            raise BenchError("the other side did not get ready")
        return sock
    if listening:
        sock.bind(ends.local)
        sock.listen(1)
        ready.set()
        sock.settimeout(SIDE_TIMEOUT_S)
        conn, _ = sock.accept()
        sock.close()
        sock = conn
    else:
        if not ready.wait(SIDE_TIMEOUT_S):
            raise BenchError("the other side did not get ready")
        sock.connect(ends.peer)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _big_receive_buffer(sock: socket.socket) -> None:
    """The feed's receive buffer (``RECEIVE_BUFFER_BYTES``). A tuned host raises rmem_max to
    allow it; here, as root, the bench forces it rather than measure an untuned sysctl."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, RECEIVE_BUFFER_BYTES)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def _rtt_initiator(cpu: int, ends: Ends, ready: Event, rounds: int, out: multiprocessing.Queue):
    _pin(cpu)
    message, back = np.zeros(1, MESSAGE), np.zeros(1, MESSAGE)
    timeout_ns = ECHO_TIMEOUT_NS[ends.proto]
    socket_rtt_initiator(-1, message, back, np.zeros(0, np.int64), timeout_ns)  # compile
    sock = _connect(ends, ready, listening=False)
    try:
        warm = np.zeros(WARMUP_ROUNDS, np.int64)
        rc = socket_rtt_initiator(sock.fileno(), message, back, warm, timeout_ns)
        samples = np.zeros(rounds, np.int64)
        if rc == 0:
            rc = socket_rtt_initiator(sock.fileno(), message, back, samples, timeout_ns)
        message[0]["seq"] = STOP
        sock.send(message.tobytes())
    finally:
        sock.close()
    out.put((int(rc), samples))


def _echo(cpu: int, ends: Ends, ready: Event, out: multiprocessing.Queue) -> None:
    _pin(cpu)
    buf = np.zeros(1, MESSAGE)
    socket_echo(-1, buf, 0)  # compile (a bad descriptor returns at once)
    sock = _connect(ends, ready, listening=True)
    try:
        echoed = socket_echo(sock.fileno(), buf, IDLE_NS)
    finally:
        sock.close()
    out.put(int(echoed))


def _sender(cpu: int, ends: Ends, ready: Event, count: int, rate: int, out: multiprocessing.Queue):
    """UDP: every message due goes out in one ``sendmmsg`` (a datagram each), as a publisher
    sends; TCP: one ``send`` per message, as the gateway sends its orders."""
    _pin(cpu)
    message = np.zeros(1, MESSAGE)
    batch = new_receive_batch(64, MESSAGE_BYTES)
    words = batch.data.view(np.int64)
    if ends.proto == "udp":
        paced_datagram_sender(-1, batch, words, 0, 1, 0)  # compile
    else:
        paced_sender(-1, message, 0, 1, 0)
    sock = _connect(ends, ready, listening=False)
    try:
        time.sleep(0.05)  # let the counter reach its loop
        if ends.proto == "udp":
            elapsed = paced_datagram_sender(sock.fileno(), batch, words, count, rate, IDLE_NS)
        else:
            elapsed = paced_sender(sock.fileno(), message, count, rate or UNPACED, IDLE_NS)
    finally:
        sock.close()
    out.put(int(elapsed))


def _counter(cpu: int, ends: Ends, ready: Event, count: int, out: multiprocessing.Queue) -> None:
    _pin(cpu)
    if ends.proto == "udp":
        batch = new_receive_batch(64, MESSAGE_BYTES)
        words = batch.data.view(np.int64)
        seen = np.zeros(count, np.bool_)
        datagram_counter(-1, batch, words, 0, 0, seen)  # compile
        sock = _connect(ends, ready, listening=True)
        try:
            got = datagram_counter(sock.fileno(), batch, words, count, IDLE_NS, seen)
        finally:
            sock.close()
    else:
        buf = np.zeros(1, MESSAGE)
        stream_counter(-1, buf, 0, 0)  # compile
        sock = _connect(ends, ready, listening=True)
        try:
            got = stream_counter(sock.fileno(), buf, count, IDLE_NS)
        finally:
            sock.close()
    out.put(tuple(int(x) for x in got))


def _run_sides(sides: Sequence[tuple[Callable, tuple]], timeout: float = SIDE_TIMEOUT_S) -> tuple:
    """Start each (function, args) in a spawned process, with a result queue as its last
    argument, and return their results in order. A side that dies without one fails the
    measure at once (the other is killed), not after ``timeout``."""
    ctx = multiprocessing.get_context("spawn")
    queues = [ctx.Queue() for _ in sides]
    procs = [
        ctx.Process(target=fn, args=(*args, q), daemon=True)
        for (fn, args), q in zip(sides, queues, strict=True)
    ]
    for p in procs:
        p.start()
    results: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        for p, q in zip(procs, queues, strict=True):
            while True:
                try:
                    results.append(q.get(timeout=0.2))
                    break
                except queue.Empty:
                    pass
                dead = [x.exitcode for x in procs if x.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline or (p.exitcode == 0 and q.empty()):
                    raise BenchError(
                        "a transport bench process failed or gave no result (exit codes "
                        f"{[x.exitcode for x in procs]}); its error is above"
                    )
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    return tuple(results)


def _two_sides(first: tuple, second: tuple) -> tuple:
    """``first`` = (function, cpu, ends, ...) and ``second`` alike, sharing a ready event."""
    ready = multiprocessing.get_context("spawn").Event()
    return _run_sides([(fn, (cpu, ends, ready, *rest)) for fn, cpu, ends, *rest in (first, second)])


# ---------------------------------------------------------------------------------- measures


def nearest_rank(samples: np.ndarray) -> dict[str, float]:
    """min, p50, p90, p99, p99.9, max and mean of the rounds that came back (nearest rank, as
    the C reference computes them)."""
    x = np.sort(samples[samples >= 0])
    if x.size == 0:
        raise BenchError("no round trip came back")
    q = np.percentile(x, [50, 90, 99, 99.9], method="inverted_cdf")
    return {
        "min": float(x[0]),
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "p999": float(q[3]),
        "max": float(x[-1]),
        "mean": float(x.mean()),
    }


def measure_socket_rtt(proto: str, route: Route, cpus: Sequence[int], rounds: int) -> dict:
    """The numba round trip over ``proto`` on ``route``: percentiles and lost rounds."""
    a, b = _ports()
    there = Ends(proto, route.initiator_ns, (route.initiator_ip, a), (route.responder_ip, b))
    back = Ends(proto, route.responder_ns, (route.responder_ip, b), (route.initiator_ip, a))
    (rc, samples), echoed = _two_sides(
        (_rtt_initiator, cpus[0], there, rounds), (_echo, cpus[1], back)
    )
    if rc != 0:
        raise BenchError(f"{proto} round trip on {route.name} failed: {os.strerror(-rc)}")
    return {**nearest_rank(samples), "lost": int((samples < 0).sum()), "echoed": echoed}


def measure_c_rtt(proto: str, route: Route, cpus: Sequence[int], rounds: int) -> dict:
    """The C reference's round trip on the same route."""
    a, b = _ports()
    prefixes = [_netns_exec(ns) for ns in (route.initiator_ns, route.responder_ns)]
    result = baseline.measure_c_socket_rtt(
        proto,
        ((route.initiator_ip, a), (route.responder_ip, b)),
        cpus,
        rounds,
        warmup=WARMUP_ROUNDS,
        timeout_ms=ECHO_TIMEOUT_NS[proto] // 1_000_000,
        prefixes=(prefixes[0], prefixes[1]),
    )
    return {**{k: float(v) for k, v in result["rtt_ns"].items()}, "lost": int(result["lost"])}


def measure_stream(proto: str, route: Route, cpus: Sequence[int], count: int, rate: int) -> dict:
    """``count`` messages offered at ``rate``/s (0: as fast as they go) from one side to the
    other: what arrived."""
    a, b = _ports()
    there = Ends(proto, route.initiator_ns, (route.initiator_ip, a), (route.responder_ip, b))
    back = Ends(proto, route.responder_ns, (route.responder_ip, b), (route.initiator_ip, a))
    elapsed, (received, disordered, span) = _two_sides(
        (_sender, cpus[0], there, count, rate), (_counter, cpus[1], back, count)
    )
    if elapsed < 0:
        raise BenchError(f"{proto} stream on {route.name}: send failed: {os.strerror(-elapsed)}")
    return {
        "offered_msgs_per_s": rate or None,
        "sent_msgs_per_s": count / max(elapsed, 1) * 1e9,
        "received": received,
        "lost": count - received,
        "out_of_order": disordered,
        "received_msgs_per_s": received / max(span, 1) * 1e9,
    }


def _ring_side(cpu: int, prefix: str, role: str, n: int, rate: int, out: multiprocessing.Queue):
    """One side of the ring's round trip or stream; the rings' first messages are its warm-up
    (the kernels compile on their first call, before the rounds that count)."""
    _pin(cpu)
    rings = {name: attach_ring(RING_DIR, f"{prefix}.{name}", MESSAGE)[1] for name in ("ab", "ba")}
    one, other = np.zeros(1, MESSAGE), np.zeros(1, MESSAGE)
    ab, ba = rings["ab"], rings["ba"]
    if role == "rtt":
        samples = np.zeros(n + WARMUP_ROUNDS, np.int64)
        ring_rtt_initiator(ab, ba, one, other, samples)
        out.put(samples[WARMUP_ROUNDS:])
    elif role == "echo":
        ring_echo(ab, ba, one, n + WARMUP_ROUNDS)
        out.put(0)
    elif role == "produce":
        out.put(int(ring_paced_producer(ab, one, n, rate or UNPACED)))
    else:
        out.put(tuple(int(x) for x in ring_counter(ab, one, n)))


def _ring_pair(sides: tuple[str, str], cpus: Sequence[int], n: int, rate: int = 0) -> tuple:
    prefix = f"lowlat-bench-transport-{os.getpid()}"
    segments = [
        create_ring(RING_DIR, f"{prefix}.{name}", MESSAGE, 4096)[0] for name in ("ab", "ba")
    ]
    try:
        return _run_sides(
            [
                (_ring_side, (cpu, prefix, role, n, rate))
                for role, cpu in zip(sides, cpus, strict=True)
            ]
        )
    finally:
        for seg in segments:
            seg.unlink()


def measure_ring_rtt(cpus: Sequence[int], rounds: int) -> dict:
    samples, _ = _ring_pair(("rtt", "echo"), cpus, rounds)
    return nearest_rank(samples)


def measure_ring_stream(cpus: Sequence[int], count: int) -> dict:
    elapsed, (received, disordered, span) = _ring_pair(("produce", "count"), cpus, count, 0)
    return {
        "offered_msgs_per_s": None,
        "sent_msgs_per_s": count / max(elapsed, 1) * 1e9,
        "received": received,
        "lost": count - received,
        "out_of_order": disordered,
        "received_msgs_per_s": received / max(span, 1) * 1e9,
    }


# ------------------------------------------------------------------- tick to order per feed

RUN = [sys.executable, "-m", "service.cli"]


def _exchange_config(path: Path, route: Route, rate: int, ports: Sequence[int]) -> None:
    """The run's and the exchange's one config: the feed at ``route.initiator_ip`` (the trading
    host's side), recovery and order entry at ``route.responder_ip`` (the exchange's)."""
    host, exchange = route.initiator_ip, route.responder_ip
    path.write_text(
        f'[service]\nshm_dir = "{path.parent}"\nshm_prefix = "lowlat-bench-x{os.getpid()}"\n'
        f'[feed]\nsource = "udp"\nrate = {rate}\nburst_probability = 0.0\n'
        '[gateway]\nexchange = "tcp"\n'
        f'[exchange]\nmarket_data = "{host}:{ports[0]}"\nrecovery = "{exchange}:{ports[1]}"\n'
        f'orders = "{exchange}:{ports[2]}"\nreconnect_max_ms = 20\n'
    )


def measure_exchange_e2e(route: Route, rate: int, duration_s: float) -> dict:
    """Tick-to-order with the feed over UDP and orders over TCP: ``trading-service run`` on the
    initiator's side against ``trading-service exchange`` on the responder's, publishing
    ``rate`` msgs/s for ``duration_s``. Tick-to-order runs from the feed stage's read of a
    message to its order's send; ``feed_lag`` from the exchange's send time to the ring."""
    prefixes = [_netns_exec(ns) for ns in (route.initiator_ns, route.responder_ns)]
    with tempfile.TemporaryDirectory(prefix="lowlat-bench-x-") as tmp:
        config, log, out = Path(tmp) / "x.toml", Path(tmp) / "run.log", Path(tmp) / "run.json"
        _exchange_config(config, route, rate, _ports(3))
        with log.open("w") as err:
            run = subprocess.Popen(
                [*prefixes[0], *RUN, "run", f"--config={config}", "--duration=600", "--json", out],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            deadline = time.monotonic() + SIDE_TIMEOUT_S
            while "ready: all stages running" not in log.read_text():
                if run.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the run on {route.name} did not start: {_tail(log)}")
                time.sleep(0.1)
            messages = str(int(rate * duration_s))
            # --spin: a sleeping exchange sends late by its naps, and tick-to-order counts from
            # the time a message was due to be sent
            exchange = subprocess.run(
                [
                    *prefixes[1],
                    *RUN,
                    "exchange",
                    f"--config={config}",
                    f"--messages={messages}",
                    "--spin",
                ],
                capture_output=True,
                text=True,
                timeout=SIDE_TIMEOUT_S + duration_s,
                check=False,
            )
            if exchange.returncode != 0:
                raise BenchError(f"the exchange on {route.name} failed: {exchange.stderr[-500:]}")
            if run.wait(60) != 0:
                raise BenchError(f"the run on {route.name} failed: {_tail(log)}")
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        figures = json.loads(out.read_text())
    latency, counters = figures["latency_ns"], figures["counters"]
    t2o, lag = latency["tick_to_order"], latency["feed_lag"]
    return {
        **{k: t2o[k] for k in ("p50", "p90", "p99", "p999", "max")},
        "orders": counters["orders_sent"],
        "messages": counters["md_messages_processed"],
        "given_up": counters["md_messages_given_up"],
        # a lost packet holds the messages behind it until recovery fills the gap: the tail
        "feed_gaps": counters["feed_gaps"],
        "recovered": counters["md_messages_recovered"],
        "feed_lag_ns": {k: lag[k] for k in ("p50", "p99", "p999")},
    }


def _netns_exec(ns: str | None) -> list[str]:
    """The words that start a command in namespace ``ns`` (none for this one)."""
    return ["ip", "netns", "exec", ns] if ns else []


def _tail(log: Path) -> str:
    return " | ".join(log.read_text().strip().splitlines()[-3:])
