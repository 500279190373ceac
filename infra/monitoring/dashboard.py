"""The dashboard's widgets: one function per ``contracts.alarms.WIDGETS`` title, and ``WIDGETS``,
the table from catalog title to function; plus the header and the alarm status above them.

Each function gets the catalog title and returns the widgets of one dashboard row. A widget's
title is the catalog title exactly (the runbooks and the alarm descriptions send people to it)
and it shows every host of the deployment as its own labelled lines (``host1 p99``), so one
widget is both the fleet and each host. "CPU per core" also gets one detail widget per host
(``CPU per core — host1``: every core, isolated and housekeeping), because per-core lines of
several hosts in one graph are unreadable. Where an alarm has a threshold, its widget draws it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw

from ami import cloudwatch as C
from contracts import stats_layout as L
from contracts.stages import STAGES
from infra.monitoring.alarms import (
    DISK_USED_THRESHOLD,
    HOUSEKEEPING_ACTIVE_PERCENT,
    ISOLATED_IDLE_PERCENT,
    hugepages_floor,
)
from infra.monitoring.metrics import MINUTE, MonitoredHost, Watch
from infra.monitoring.names import (
    CPU_ACTIVE,
    DISK_USED_PERCENT,
    ENA_ALLOWANCE,
    EXCHANGE_CONNECTED,
    EXCHANGE_DROPS,
    EXCHANGE_SESSIONS,
    FEED_GAPS,
    FILLS,
    HOST_CHECKS_FAILED,
    HOST_TUNED,
    HUGEPAGES_FREE,
    HUGEPAGES_RESERVED,
    KILL_SWITCH,
    MD_DROPPED,
    MD_GIVEN_UP,
    MD_LOST,
    MD_PROCESSED,
    MD_RECOVERED,
    MEM_USED_PERCENT,
    ORDERS_OPEN,
    ORDERS_REJECTED,
    ORDERS_RESENT,
    ORDERS_SENT,
    P50,
    P99,
    P999,
    RING_FULL,
    RING_OCCUPANCY,
    RINGS,
    SEQUENCE_GAPS,
    STAGE_UP,
    STATUS_CHECK_INSTANCE,
    STATUS_CHECK_SYSTEM,
    SWAP_USED,
    TICK_TO_ORDER,
    UP,
    cpus,
    polled_cores,
    quantile_value,
)

_AVG, _MAX, _MIN, _SUM = cw.Stats.AVERAGE, cw.Stats.MAXIMUM, cw.Stats.MINIMUM, cw.Stats.SUM
_QUANTILES = {P50: "p50", P99: "p99", P999: "p99.9"}
_UP_AXIS = cw.YAxisProps(min=0, max=1.2)  # 0/1 lines, with room above the 1
_PERCENT_AXIS = cw.YAxisProps(min=0, max=100)
_PER_SECOND_AXIS = cw.YAxisProps(label="per second")
_PER_MINUTE_AXIS = cw.YAxisProps(label="per minute")

Lines = Callable[[MonitoredHost], list[cw.IMetric]]


def graph(
    title: str,
    left: Iterable[cw.IMetric],
    right: Iterable[cw.IMetric] = (),
    *,
    axis: cw.YAxisProps,
    marks: Sequence[cw.HorizontalAnnotation] = (),
    **options: Any,
) -> cw.GraphWidget:
    """A graph with its legend below, ``marks`` drawn on the left axis; full width and one-minute
    points unless ``options`` give ``width`` or ``period``."""
    return cw.GraphWidget(
        title=title,
        left=list(left),
        right=list(right),
        width=options.pop("width", 24),
        height=6,
        period=options.pop("period", MINUTE),
        legend_position=cw.LegendPosition.BOTTOM,
        left_y_axis=axis,
        left_annotations=list(marks) or None,
        **options,
    )


def per_host(w: Watch, lines: Lines) -> list[cw.IMetric]:
    """``lines(host)`` of every host, host by host."""
    return [metric for host in w.hosts for metric in lines(host)]


def line(make: Callable[..., cw.IMetric], name: str, statistic: str, what: str) -> Lines:
    """One line per host: ``make(name, host, statistic)`` (``Watch.emf``, ``host``, ...),
    labelled ``<host> <what>``."""
    return lambda h: [make(name, h, statistic, label=f"{h.label} {what}")]


def fleet(
    w: Watch,
    title: str,
    left: Lines,
    right: Lines | None = None,
    *,
    axis: cw.YAxisProps,
    marks: Sequence[cw.HorizontalAnnotation] = (),
) -> list[cw.IWidget]:
    """A row of one graph: ``left(host)`` (and ``right(host)``) of every host, host by host."""
    return [
        graph(title, per_host(w, left), per_host(w, right) if right else (), axis=axis, marks=marks)
    ]


def header(w: Watch, deployment: str, runbook_base_url: str) -> cw.TextWidget:
    """The deployment, its SLOs, where to start when paged, and each host's cores."""
    hosts = "\n".join(
        f"| {h.label} | {h.instance_id} | {cpus(h.profile.housekeeping)} | "
        f"{cpus(h.profile.isolated)} | {cpus(polled_cores(h.profile))} |"
        for h in w.hosts
    )
    slo = ", ".join(f"p{q * 100:g} {s * 1e6:g} us" for q, s in w.slo_s.items())
    runbooks = f"{runbook_base_url}/runbooks"
    markdown = (
        f"# lowlat: {deployment}\n"
        f"Tick-to-order SLOs: {slo}. Paged? Start with [triage]({runbooks}/triage.md); "
        f"the [runbook index]({runbooks}/README.md) maps each alarm to its runbook and "
        "widget.\n\n"
        "| host | instance | housekeeping | isolated | busy-poll |\n"
        "|---|---|---|---|---|\n"
        f"{hosts}\n"
    )
    return cw.TextWidget(markdown=markdown, width=24, height=3 + len(w.hosts))


def alarm_status(alarms: Sequence[cw.IAlarm], deployment: str) -> cw.AlarmStatusWidget:
    """Every alarm of the deployment, the most recently changed first."""
    return cw.AlarmStatusWidget(
        alarms=alarms,
        title=f"Alarms ({deployment})",
        width=24,
        height=max(3, 2 + len(alarms) // 4),
        sort_by=cw.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
    )


# ----------------------------------------------------------------------------- one per title


def engine_and_stages_up(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [
            w.emf(UP, h, _MIN, label=f"{h.label} engine up"),
            *(w.emf(STAGE_UP, h, _MIN, label=f"{h.label} {s} up", series=s) for s in STAGES),
        ],
        line(w.emf, KILL_SWITCH, _MAX, "kill switch"),
        axis=_UP_AXIS,
    )


def tick_to_order_latency(w: Watch, title: str) -> list[cw.IWidget]:
    slos = [
        cw.HorizontalAnnotation(value=w.slo_s[q], label=f"{name} SLO")
        for q, name in _QUANTILES.items()
    ]
    return fleet(
        w,
        title,
        lambda h: [
            w.emf(TICK_TO_ORDER, h, _AVG, label=f"{h.label} {name}", series=quantile_value(q))
            for q, name in _QUANTILES.items()
        ],
        axis=cw.YAxisProps(label="seconds", min=0),
        marks=slos,
    )


def market_data_and_order_rates(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [
            w.rate(w.emf(MD_PROCESSED, h, _SUM), f"{h.label} md/s"),
            w.rate(w.emf(ORDERS_SENT, h, _SUM), f"{h.label} orders/s"),
            w.rate(w.emf(FILLS, h, _SUM), f"{h.label} fills/s"),
        ],
        axis=_PER_SECOND_AXIS,
    )


def rejects_by_reason(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [
            w.rate(w.emf(ORDERS_REJECTED, h, _SUM, series=r), f"{h.label} {r}/s")
            for r in L.REJECT_REASONS
        ],
        lambda h: [w.rate(w.emf(ORDERS_SENT, h, _SUM), f"{h.label} orders/s")],
        axis=_PER_SECOND_AXIS,
    )


def ring_occupancy(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [w.emf(RING_OCCUPANCY[r], h, _MAX, label=f"{h.label} {r} ring") for r in RINGS],
        axis=cw.YAxisProps(label="records", min=0),
    )


def ring_full_events(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [w.emf(RING_FULL[r], h, _SUM, label=f"{h.label} {r} ring full") for r in RINGS],
        axis=_PER_MINUTE_AXIS,
    )


def sequence_gaps_and_drops(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [
            w.emf(SEQUENCE_GAPS, h, _SUM, label=f"{h.label} sequence gaps"),
            w.emf(MD_DROPPED, h, _SUM, label=f"{h.label} dropped"),
            w.emf(MD_LOST, h, _SUM, label=f"{h.label} lost in gaps"),
            w.emf(FEED_GAPS, h, _SUM, label=f"{h.label} UDP feed gaps"),
            w.emf(MD_RECOVERED, h, _SUM, label=f"{h.label} recovered"),
            w.emf(MD_GIVEN_UP, h, _SUM, label=f"{h.label} given up"),
        ],
        axis=_PER_MINUTE_AXIS,
    )


def exchange_session(w: Watch, title: str) -> list[cw.IWidget]:
    # only the hosts that trade with a real exchange: a simulated gateway has no session (its
    # exchange_connected is always 0, which would read as down)
    trading = [h for h in w.hosts if h.profile.exchange is not None]
    if not trading:
        text = f"### {title}\nNo host of this deployment trades with a real exchange (simulated)."
        return [cw.TextWidget(markdown=text, width=24, height=2)]
    left = [w.emf(EXCHANGE_CONNECTED, h, _MIN, label=f"{h.label} session up") for h in trading]
    right = [
        metric
        for h in trading
        for metric in (
            w.emf(EXCHANGE_SESSIONS, h, _SUM, label=f"{h.label} logins"),
            w.emf(EXCHANGE_DROPS, h, _SUM, label=f"{h.label} drops"),
            w.emf(ORDERS_RESENT, h, _SUM, label=f"{h.label} orders resent"),
            w.emf(ORDERS_OPEN, h, _MAX, label=f"{h.label} orders open"),
        )
    ]
    return [graph(title, left, right, axis=_UP_AXIS)]


def cpu_per_core(w: Watch, title: str) -> list[cw.IWidget]:
    # fleet: per host the least busy busy-poll core and the busiest housekeeping core (the two
    # alarms' views); then every core of each host in its own widget
    fleet = per_host(
        w,
        lambda h: [
            w.per_core(
                "MIN",
                CPU_ACTIVE,
                h,
                polled_cores(h.profile),
                f"{h.label} least busy busy-poll core",
            ),
            w.per_core(
                "MAX", CPU_ACTIVE, h, h.profile.housekeeping, f"{h.label} busiest housekeeping core"
            ),
        ],
    )
    marks = [
        cw.HorizontalAnnotation(
            value=100 - ISOLATED_IDLE_PERCENT, label="busy-poll core idle below"
        ),
        cw.HorizontalAnnotation(value=HOUSEKEEPING_ACTIVE_PERCENT, label="housekeeping high above"),
    ]
    axis = cw.YAxisProps(label="active %", min=0, max=100)
    row: list[cw.IWidget] = [graph(title, fleet, axis=axis, marks=marks)]
    width = max(8, 24 // len(w.hosts))
    for h in w.hosts:
        stage_of = {core: stage for stage, core in h.profile.stage_cores().items()}
        isolated = [
            w.host(
                CPU_ACTIVE, h, _AVG, label=f"cpu{c} isolated ({stage_of.get(c, 'spare')})", cpu=c
            )
            for c in h.profile.isolated
        ]
        housekeeping = [
            w.host(CPU_ACTIVE, h, _AVG, label=f"cpu{c} housekeeping", cpu=c)
            for c in h.profile.housekeeping
        ]
        row.append(graph(f"{title} — {h.label}", isolated + housekeeping, axis=axis, width=width))
    return row


def memory(w: Watch, title: str) -> list[cw.IWidget]:
    used = line(w.host, MEM_USED_PERCENT, _MAX, "memory used %")
    swap = line(w.host, SWAP_USED, _MAX, "swap used (bytes)")
    return fleet(w, title, used, swap, axis=_PERCENT_AXIS)


def hugepages_free(w: Watch, title: str) -> list[cw.IWidget]:
    floors = sorted({hugepages_floor(h.profile) for h in w.hosts})
    return fleet(
        w,
        title,
        lambda h: [
            w.emf(HUGEPAGES_FREE, h, _MIN, label=f"{h.label} free"),
            w.emf(HUGEPAGES_RESERVED, h, _MAX, label=f"{h.label} reserved"),
        ],
        axis=cw.YAxisProps(label="2 MiB pages", min=0),
        marks=[cw.HorizontalAnnotation(value=f, label="HugepagesLow below") for f in floors],
    )


def ena_allowance_exceeded(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [
            w.diff(w.host(name, h, _MAX), f"{h.label} {counter}", MINUTE)
            for name, counter in zip(ENA_ALLOWANCE, C.ENA_ALLOWANCE_COUNTERS, strict=True)
        ],
        axis=cw.YAxisProps(label="packets / minute"),
    )


def host_tuning_status(w: Watch, title: str) -> list[cw.IWidget]:
    tuned = line(w.emf, HOST_TUNED, _MIN, "tuned")
    failed = line(w.emf, HOST_CHECKS_FAILED, _MAX, "checks failed")
    return fleet(w, title, tuned, failed, axis=_UP_AXIS)


def status_checks(w: Watch, title: str) -> list[cw.IWidget]:
    return fleet(
        w,
        title,
        lambda h: [
            w.ec2(STATUS_CHECK_SYSTEM, h, label=f"{h.label} system"),
            w.ec2(STATUS_CHECK_INSTANCE, h, label=f"{h.label} instance"),
        ],
        axis=_UP_AXIS,
    )


def disk_used(w: Watch, title: str) -> list[cw.IWidget]:
    used = line(w.host, DISK_USED_PERCENT, _MAX, "/ used %")
    mark = cw.HorizontalAnnotation(value=DISK_USED_THRESHOLD, label="DiskSpaceLow above")
    return fleet(w, title, used, axis=_PERCENT_AXIS, marks=[mark])


def benchmark_results(w: Watch, title: str) -> list[cw.IWidget]:
    # SEARCH: the offered rates are whatever the bench ran; one search per metric, limited to
    # this deployment's instances
    instances = " OR ".join(f'{C.INSTANCE_DIMENSION}="{h.instance_id}"' for h in w.hosts)
    schema = ",".join((C.NAMESPACE, *C.BENCH_DIMENSIONS))
    seconds = 3600
    period = cdk.Duration.seconds(seconds)

    def search(name: str) -> cw.MathExpression:
        short = name.removeprefix("bench_")
        return cw.MathExpression(
            expression=(
                f"SEARCH('{{{schema}}} MetricName=\"{name}\" ({instances})', 'Maximum', {seconds})"
            ),
            label=f"{short} ${{PROP('Dim.InstanceId')}} @ ${{PROP('Dim.OfferedRate')}}/s",
            period=period,
        )

    latency = [search(n) for n in C.BENCH_METRICS if n.endswith("_seconds")]
    other = [search(n) for n in C.BENCH_METRICS if not n.endswith("_seconds")]
    slo = cw.HorizontalAnnotation(value=w.slo_s[P99], label="p99 SLO")
    axis = cw.YAxisProps(label="seconds", min=0)
    return [graph(title, latency, other, axis=axis, marks=[slo], period=period)]


# ----------------------------------------------------------------------------- the table

WIDGETS: dict[str, Callable[[Watch, str], list[cw.IWidget]]] = {
    "Engine and stages up": engine_and_stages_up,
    "Tick-to-order latency": tick_to_order_latency,
    "Market data and order rates": market_data_and_order_rates,
    "Rejects by reason": rejects_by_reason,
    "Ring occupancy": ring_occupancy,
    "Ring full events": ring_full_events,
    "Sequence gaps and drops": sequence_gaps_and_drops,
    "Exchange session": exchange_session,
    "CPU per core": cpu_per_core,
    "Memory": memory,
    "Hugepages free": hugepages_free,
    "ENA allowance exceeded": ena_allowance_exceeded,
    "Host tuning status": host_tuning_status,
    "Status checks": status_checks,
    "Disk used": disk_used,
    "Benchmark results": benchmark_results,
}


def widgets(title: str, w: Watch) -> list[cw.IWidget]:
    """The dashboard row of catalog widget ``title``."""
    if title not in WIDGETS:
        raise KeyError(f"catalog widget {title!r} has no function in infra.monitoring.dashboard")
    return WIDGETS[title](w, title)
