"""``trading-service bench --transports``: the ring, UDP and TCP side by side in one run.

The same 64-byte message over every transport: its round trip (numba, and the C reference for
each socket path on the same route), the highest paced rate that arrives whole, and tick-to-order
through the pipeline with its feed over each. Routes: loopback, and a veth pair between two
network namespaces (``netns``) when this machine lets the bench make them; when it does not, the
veth figures are missing and ``errors.veth`` says why.

Like ``run``, the run is a list of steps built first (a progress bar step each); ``Measures``
carries what they call, so a test can run the order of a whole run with fakes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypedDict, cast

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from contracts.documents import finite_or_none
from service.bench import transports as t
from service.bench.baseline import BaselineError
from service.bench.e2e import measure_e2e
from service.bench.figures import Machine
from service.bench.netns import NetnsError, VethPair
from service.config import default_cores

E2E_RATE = 100_000  # msgs/s for tick-to-order over each feed: the simulator's default rate


class TransportFigures(TypedDict):
    machine: Machine
    cpus: list[int]
    quick: bool
    message_bytes: int
    rtt_ns: dict[str, dict[str, float]]  # "ring", "udp_loopback", "tcp_veth", ...
    c_rtt_ns: dict[str, dict[str, float]]  # the C reference, same keys but "ring"
    msgs_per_s: dict[str, dict[str, Any]]  # streams; UDP: a sweep and its max without loss
    tick_to_order_ns: dict[str, dict[str, Any]]  # "ring" (the simulator), "udp_loopback", ...
    errors: dict[str, str]  # what could not be measured, and why
    ratios: dict[str, float | None]
    goals: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Sizes:
    rtt_rounds: int
    stream_s: float  # seconds of messages per stream
    sweep: tuple[int, ...]  # offered UDP rates, msgs/s
    e2e_s: float


QUICK = Sizes(rtt_rounds=20_000, stream_s=0.5, sweep=(250_000, 500_000, 1_000_000), e2e_s=2.0)
FULL = Sizes(
    rtt_rounds=200_000,
    stream_s=2.0,
    sweep=(250_000, 500_000, 1_000_000, 2_000_000, 4_000_000),
    e2e_s=10.0,
)


@contextlib.contextmanager
def veth_route() -> Iterator[t.Route]:
    """Two namespaces and their veth pair for the run, removed after it."""
    with VethPair(f"lowlat-bench-{os.getpid()}") as pair:
        yield t.veth_route(pair)


@dataclass(frozen=True)
class Measures:
    """What the steps call: the real measures unless a test passes fakes."""

    ring_rtt: Callable[[Sequence[int], int], dict] = t.measure_ring_rtt
    socket_rtt: Callable[[str, t.Route, Sequence[int], int], dict] = t.measure_socket_rtt
    c_rtt: Callable[[str, t.Route, Sequence[int], int], dict] = t.measure_c_rtt
    ring_stream: Callable[[Sequence[int], int], dict] = t.measure_ring_stream
    stream: Callable[[str, t.Route, Sequence[int], int, int], dict] = t.measure_stream
    ring_e2e: Callable[..., Any] = measure_e2e
    exchange_e2e: Callable[[t.Route, int, float], dict] = t.measure_exchange_e2e
    veth: Callable[[], contextlib.AbstractContextManager[t.Route]] = veth_route
    service_cores: Callable[[], dict[str, int]] = default_cores


@dataclass(frozen=True)
class Step:
    label: str
    run: Callable[[TransportFigures, t.Route], None]
    route: str  # "loopback", "veth" or "" (the ring: no route)


class _Bench:
    def __init__(self, sizes: Sizes, cpus: tuple[int, int], measures: Measures) -> None:
        self.sizes, self.cpus, self.m = sizes, cpus, measures

    def steps(self) -> list[Step]:
        steps = [
            Step("ring: round trip", self.ring_rtt, ""),
            Step("ring: stream", self.ring_stream, ""),
            Step(f"ring: tick-to-order @ {E2E_RATE:,}/s", self.ring_e2e, ""),
        ]
        for route in ("loopback", "veth"):
            for proto in t.PROTOS:
                steps += [
                    Step(f"{proto} {route}: round trip", partial(self.rtt, proto), route),
                    Step(f"{proto} {route}: C round trip", partial(self.c_rtt, proto), route),
                ]
            steps += [
                Step(f"udp {route}: {rate:,} msgs/s", partial(self.udp_rate, rate), route)
                for rate in self.sizes.sweep
            ]
            steps += [
                Step(f"tcp {route}: stream", self.tcp_stream, route),
                Step(f"udp feed {route}: tick-to-order @ {E2E_RATE:,}/s", self.e2e, route),
            ]
        return steps

    def ring_rtt(self, f: TransportFigures, _: t.Route) -> None:
        f["rtt_ns"]["ring"] = self.m.ring_rtt(self.cpus, self.sizes.rtt_rounds)

    def ring_stream(self, f: TransportFigures, _: t.Route) -> None:
        count = int(self.sizes.sweep[-1] * self.sizes.stream_s)
        f["msgs_per_s"]["ring"] = self.m.ring_stream(self.cpus, count)

    def ring_e2e(self, f: TransportFigures, _: t.Route) -> None:
        run = self.m.ring_e2e(self.m.service_cores(), E2E_RATE, self.sizes.e2e_s)
        f["tick_to_order_ns"]["ring"] = dict(run)

    def rtt(self, proto: str, f: TransportFigures, route: t.Route) -> None:
        f["rtt_ns"][f"{proto}_{route.name}"] = self.m.socket_rtt(
            proto, route, self.cpus, self.sizes.rtt_rounds
        )

    def c_rtt(self, proto: str, f: TransportFigures, route: t.Route) -> None:
        key = f"{proto}_{route.name}"
        try:
            f["c_rtt_ns"][key] = self.m.c_rtt(proto, route, self.cpus, self.sizes.rtt_rounds)
        except BaselineError as exc:
            f["errors"][f"c_{key}"] = str(exc).splitlines()[0]

    def udp_rate(self, rate: int, f: TransportFigures, route: t.Route) -> None:
        entry = f["msgs_per_s"].setdefault(
            f"udp_{route.name}", {"sweep": {}, "max_without_loss": 0}
        )
        if any(run["lost"] > 0 for run in entry["sweep"].values()):
            return  # past what arrives whole: higher rates only lose more
        run = self.m.stream("udp", route, self.cpus, int(rate * self.sizes.stream_s), rate)
        run["sender_limited"] = run["sent_msgs_per_s"] < 0.95 * rate
        entry["sweep"][str(rate)] = run
        # what arrived whole, at the rate it arrived: a sender that fell behind offered less
        # than the rate in its name, and that is what counts
        if run["lost"] == 0:
            reached = min(rate, int(run["received_msgs_per_s"]))
            entry["max_without_loss"] = max(entry["max_without_loss"], reached)

    def tcp_stream(self, f: TransportFigures, route: t.Route) -> None:
        count = int(self.sizes.sweep[-1] * self.sizes.stream_s / 4)
        f["msgs_per_s"][f"tcp_{route.name}"] = self.m.stream("tcp", route, self.cpus, count, 0)

    def e2e(self, f: TransportFigures, route: t.Route) -> None:
        f["tick_to_order_ns"][f"udp_{route.name}"] = self.m.exchange_e2e(
            route, E2E_RATE, self.sizes.e2e_s
        )


def _p50(f: TransportFigures, table: str, key: str) -> float | None:
    entry = cast(dict, f[table]).get(key)  # type: ignore[literal-required]
    return None if entry is None else float(entry["p50"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def transport_ratios(f: TransportFigures) -> dict[str, float | None]:
    """p50 RTT of each numba socket path over the C reference's on the same route, and the
    sockets' over the ring's."""
    r: dict[str, float | None] = {}
    for route, suffix in (("loopback", ""), ("veth", "_veth")):
        for proto in t.PROTOS:
            key = f"{proto}_{route}"
            r[f"{proto}{suffix}_rtt_vs_c"] = _ratio(
                _p50(f, "rtt_ns", key), _p50(f, "c_rtt_ns", key)
            )
    ring = _p50(f, "rtt_ns", "ring")
    for proto in t.PROTOS:
        r[f"{proto}_rtt_vs_ring"] = _ratio(_p50(f, "rtt_ns", f"{proto}_loopback"), ring)
    return r


# name -> (goal, "min" | "max") of the goals, as report.TARGETS
TARGETS = {
    "udp_rtt_vs_c": (1.3, "max"),
    "tcp_rtt_vs_c": (1.3, "max"),
    "udp_veth_rtt_vs_c": (1.3, "max"),
    "tcp_veth_rtt_vs_c": (1.3, "max"),
    "udp_rtt_vs_ring": (10.0, "min"),
    "udp_loopback_msgs_per_s_without_loss": (1_000_000.0, "min"),
}


def goals(f: TransportFigures) -> dict[str, dict[str, Any]]:
    values = {
        **f["ratios"],
        "udp_loopback_msgs_per_s_without_loss": f["msgs_per_s"]
        .get("udp_loopback", {})
        .get("max_without_loss"),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (goal, kind) in TARGETS.items():
        value = values.get(name)
        met = None if value is None else (value >= goal if kind == "min" else value <= goal)
        out[name] = {"value": value, "goal": goal, "kind": kind, "met": met}
    return out


def run_transport_bench(
    quick: bool,
    cpus: tuple[int, int],
    measures: Measures | None = None,
    progress: Progress | None = None,
) -> TransportFigures:
    """Every step on ``cpus`` under a progress bar; the finished document."""
    from service.bench.run import machine

    m = measures or Measures()
    steps = _Bench(QUICK if quick else FULL, cpus, m).steps()
    f: TransportFigures = {
        "machine": machine(),
        "cpus": list(cpus),
        "quick": quick,
        "message_bytes": t.MESSAGE_BYTES,
        "rtt_ns": {},
        "c_rtt_ns": {},
        "msgs_per_s": {},
        "tick_to_order_ns": {},
        "errors": {},
        "ratios": {},
        "goals": {},
    }
    progress = progress or Progress(transient=True)
    with progress, contextlib.ExitStack() as stack:
        task = progress.add_task("transports", total=len(steps))
        routes: dict[str, t.Route] = {"": t.LOOPBACK, "loopback": t.LOOPBACK}
        for step in steps:
            progress.update(task, description=step.label)
            if step.route == "veth" and "veth" not in routes and "veth" not in f["errors"]:
                try:
                    routes["veth"] = stack.enter_context(m.veth())
                except NetnsError as exc:
                    f["errors"]["veth"] = str(exc)
            if step.route in routes:
                step.run(f, routes[step.route])
            progress.advance(task)
    f["ratios"] = transport_ratios(f)
    f["goals"] = goals(f)
    return cast(TransportFigures, finite_or_none(dict(f)))


def _tail(d: dict | None) -> str:
    if not d:
        return "-"
    return " / ".join("-" if d.get(k) is None else f"{d[k]:,.0f}" for k in ("p50", "p99", "p999"))


def print_transport_report(f: TransportFigures, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    m = f["machine"]
    table = Table(
        title=f"trading-service bench --transports on {m['cpu_model']} ({m['cores']} cores, "
        f"{m['kernel']}), cpus {f['cpus']}, {f['message_bytes']}-byte messages"
        f"{' --quick' if f['quick'] else ''}"
    )
    for column in ("transport", "RTT p50/p99/p99.9 ns", "C RTT p50/p99/p99.9 ns"):
        table.add_column(column, justify="right" if "ns" in column else "left")
    table.add_column("msgs/s (without loss)", justify="right")
    table.add_column("tick-to-order p50/p99/p99.9 ns", justify="right")
    for key in ("ring", "udp_loopback", "tcp_loopback", "udp_veth", "tcp_veth"):
        stream = f["msgs_per_s"].get(key)
        if stream is None:
            rate = "-"
        elif "max_without_loss" in stream:
            rate = f"{stream['max_without_loss']:,}"
        else:
            rate = f"{stream['received_msgs_per_s']:,.0f}"
        t2o = f["tick_to_order_ns"].get(key)
        table.add_row(
            key, _tail(f["rtt_ns"].get(key)), _tail(f["c_rtt_ns"].get(key)), rate, _tail(t2o)
        )
    console.print(table)
    goals_table = Table(title="ratios and goals measured in this run")
    for column in ("figure", "value", "goal"):
        goals_table.add_column(column, justify="left" if column == "figure" else "right")
    for name, value in f["ratios"].items():
        g = f["goals"].get(name)
        goals_table.add_row(name, "-" if value is None else f"{value:.2f}", _goal(g))
    most = f["goals"]["udp_loopback_msgs_per_s_without_loss"]
    goals_table.add_row(
        "udp loopback msgs/s without loss",
        "-" if most["value"] is None else f"{most['value']:,.0f}",
        _goal(most),
    )
    console.print(goals_table)
    for what, why in f["errors"].items():
        console.print(f"[yellow]not measured[/]: {what}: {why}")


def _goal(g: dict | None) -> str:
    if not g:
        return ""
    verdict = "-" if g["met"] is None else ("ok" if g["met"] else "MISSED")
    return f"{'>=' if g['kind'] == 'min' else '<='} {g['goal']:g} {verdict}"
