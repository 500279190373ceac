"""The alarm rules: one function per ``contracts.alarms.ALARMS`` entry, each given the ``Watch``
and one host and returning the rules of that kind's CloudWatch alarms on the host, and ``RULES``,
the table from catalog name to function.

A rule fixes the statistic, period, datapoints and threshold, and says in words what it fires on;
that sentence is the middle part of the alarm's description, so the runbook reader sees the exact
condition. The numbers are the thresholds below; the SLOs and the host's profile give the rest.
CloudWatch caps a metric math alarm at 10 metrics: the per-core alarms watch only the cores that
need it (``polled_cores``, ``profile.housekeeping``) and say so loudly if a profile ever exceeds
the cap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions

from contracts import alarms as catalog
from contracts import stats_layout as L
from contracts.profile import TuningProfile
from infra.monitoring.metrics import MINUTE, MonitoredHost, Watch
from infra.monitoring.names import (
    CPU_ACTIVE,
    CPU_IDLE,
    DISK_USED_PERCENT,
    ENA_ALLOWANCE,
    EXCHANGE_CONNECTED,
    FEED_GAPS,
    HOST_TUNED,
    HUGEPAGES_FREE,
    MD_GIVEN_UP,
    MD_PROCESSED,
    ORDERS_REJECTED,
    ORDERS_SENT,
    P99,
    RING_FULL,
    RINGS,
    STATUS_CHECK_INSTANCE,
    STATUS_CHECK_SYSTEM,
    TICK_TO_ORDER,
    UP,
    cpus,
    polled_cores,
    quantile_value,
)

# ----------------------------------------------------------------------------- thresholds
# The dashboard draws several of these as horizontal lines on the widget the alarm points to.

ENGINE_DOWN_MINUTES = 2  # trading_up below 1 for this many consecutive minutes
TICK_TO_ORDER_DATAPOINTS = (3, 5)  # minutes over the SLO, out of the last N minutes
MD_STALLED_MINUTES = 3  # consecutive minutes without one market-data message processed
FEED_GAPS_PER_WINDOW = 50  # UDP feed gaps in FEED_GAP_WINDOW: ten a minute, even if recovered
FEED_GAP_WINDOW = cdk.Duration.minutes(5)
# minutes in a row with the engine up and no order-entry session at any moment of the minute:
# a dropped session comes back within reconnect_max_ms (500 ms by default)
EXCHANGE_DOWN_MINUTES = 2
REJECTS_PERCENT = 5.0  # rejects / (orders sent + rejects), over REJECTS_WINDOW
REJECTS_WINDOW = cdk.Duration.minutes(5)
EVENT_WINDOW = cdk.Duration.minutes(5)  # ring full and ENA allowance: any event in 5 minutes
ISOLATED_IDLE_PERCENT = 50.0  # a busy-polling core is ~0 % idle; above this its poller is gone
ISOLATED_IDLE_MINUTES = 2
HOUSEKEEPING_ACTIVE_PERCENT = 85.0
HOUSEKEEPING_WINDOW = cdk.Duration.minutes(5)
HOUSEKEEPING_PERIODS = 3  # 3 x 5 minutes: saturated for a quarter of an hour
HOST_TUNING_WINDOW = cdk.Duration.minutes(5)  # check-host never passed in 5 minutes
HUGEPAGES_FREE_RATIO = 0.10  # of the profile's hugepages
HUGEPAGES_WINDOW = cdk.Duration.minutes(5)
STATUS_CHECK_MINUTES = 2  # the period count AWS's recover examples use
DISK_USED_THRESHOLD = 85.0
DISK_WINDOW = cdk.Duration.minutes(5)
MATH_ALARM_METRICS_MAX = 10  # CloudWatch's hard cap on metrics in one metric math alarm

_GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
_GE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD
_LE = cw.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD


def hugepages_floor(profile: TuningProfile) -> float:
    """HugepagesLow fires below this many free pages (a profile without hugepages: never)."""
    return float(math.ceil(profile.hugepages * HUGEPAGES_FREE_RATIO))


@dataclass(frozen=True)
class Rule:
    """One CloudWatch alarm of a catalog kind on one host."""

    metric: cw.IMetric
    threshold: float
    comparison: cw.ComparisonOperator
    periods: int
    datapoints: int
    condition: str  # what it fires on, in words (goes into the description)
    variant: str = ""  # distinguishes a second alarm of one kind on one host
    actions: tuple[cw.IAlarmAction, ...] = ()


# ----------------------------------------------------------------------------- one per kind


def engine_down(w: Watch, host: MonitoredHost) -> list[Rule]:
    n = ENGINE_DOWN_MINUTES
    metric = w.emf(UP, host, cw.Stats.MINIMUM)
    return [Rule(metric, 1, _LT, n, n, f"{UP} is below 1 or missing for {n} minutes")]


def tick_to_order_p99_high(w: Watch, host: MonitoredHost) -> list[Rule]:
    # Average of the 10 s window p99s over a minute: close to the minute's p99 under
    # steady flow, without paging on one bad 10 s window (Maximum would).
    slo = w.slo_s[P99]
    dp, n = TICK_TO_ORDER_DATAPOINTS
    metric = w.emf(TICK_TO_ORDER, host, cw.Stats.AVERAGE, series=quantile_value(P99))
    words = (
        f"the 1-minute average of {TICK_TO_ORDER} (quantile {quantile_value(P99)}) is "
        f"above the p99 SLO {slo * 1e6:g} us ({slo:g} s) in {dp} of {n} minutes"
    )
    return [Rule(metric, slo, _GT, n, dp, words)]


def market_data_stalled(w: Watch, host: MonitoredHost) -> list[Rule]:
    n = MD_STALLED_MINUTES
    metric = w.emf(MD_PROCESSED, host, cw.Stats.SUM)
    words = f"{MD_PROCESSED} sums to 0 (or is missing) in each of {n} consecutive minutes"
    return [Rule(metric, 0, _LE, n, n, words)]


def feed_gap_rate_high(w: Watch, host: MonitoredHost) -> list[Rule]:
    # two alarms: many gaps (recovered so far, but the network is losing packets), and any gap
    # given up (messages the engine never saw: its books are stale until the next snapshot)
    window = FEED_GAP_WINDOW
    minutes = window.to_minutes()
    gaps = w.emf(FEED_GAPS, host, cw.Stats.SUM, window)
    given_up = w.emf(MD_GIVEN_UP, host, cw.Stats.SUM, window)
    return [
        Rule(
            gaps,
            FEED_GAPS_PER_WINDOW,
            _GT,
            1,
            1,
            f"{FEED_GAPS} sums to more than {FEED_GAPS_PER_WINDOW} in {minutes} minutes",
        ),
        Rule(
            given_up,
            0,
            _GT,
            1,
            1,
            f"{MD_GIVEN_UP} is above 0 in {minutes} minutes",
            variant="GivenUp",
        ),
    ]


def exchange_session_down(w: Watch, host: MonitoredHost) -> list[Rule]:
    # Only a host that trades with a real exchange has an order-entry session: a simulated
    # gateway's exchange_connected is always 0. The engine being down or still warming up
    # (trading_up below 1, or no data) is LowlatEngineDown's page, not this one's: the math
    # counts the session as up whenever the engine is not, so missing data never breaches.
    if host.profile.exchange is None:
        return []
    n = EXCHANGE_DOWN_MINUTES
    up, connected = w.fresh_id("u"), w.fresh_id("c")
    metric = cw.MathExpression(
        expression=f"IF(FILL({up}, 0) >= 1, FILL({connected}, 1), 1)",
        using_metrics={
            up: w.emf(UP, host, cw.Stats.MINIMUM),
            connected: w.emf(EXCHANGE_CONNECTED, host, cw.Stats.MAXIMUM),
        },
        label="order-entry session up while the engine is",
        period=MINUTE,
    )
    words = (
        f"{EXCHANGE_CONNECTED} stays 0 through each of {n} minutes while {UP} is 1 (the "
        f"order entry to {host.profile.exchange.orders} is down; the engine is up)"
    )
    return [Rule(metric, 1, _LT, n, n, words)]


def rejects_high(w: Watch, host: MonitoredHost) -> list[Rule]:
    window = REJECTS_WINDOW
    rej = {
        w.fresh_id("r"): w.emf(ORDERS_REJECTED, host, cw.Stats.SUM, window, series=r)
        for r in L.REJECT_REASONS
    }
    sent = w.fresh_id("s")
    rejected = " + ".join(f"FILL({k}, 0)" for k in rej)
    attempts = f"(FILL({sent}, 0) + {rejected})"
    metric = cw.MathExpression(
        expression=f"IF({attempts} > 0, 100 * ({rejected}) / {attempts}, 0)",
        using_metrics={**rej, sent: w.emf(ORDERS_SENT, host, cw.Stats.SUM, window)},
        label="rejected percent of orders",
        period=window,
    )
    words = (
        f"{ORDERS_REJECTED} (all reasons) is above {REJECTS_PERCENT:g} % of the orders "
        f"({ORDERS_SENT} + rejected) over {window.to_minutes()} minutes"
    )
    return [Rule(metric, REJECTS_PERCENT, _GT, 1, 1, words)]


def ring_full(w: Watch, host: MonitoredHost) -> list[Rule]:
    window = EVENT_WINDOW
    full = [w.emf(RING_FULL[r], host, cw.Stats.SUM, window) for r in RINGS]
    metric = w.math("SUM", full, "ring full events", window)
    words = f"{' + '.join(RING_FULL.values())} is above 0 in {window.to_minutes()} minutes"
    return [Rule(metric, 0, _GT, 1, 1, words)]


def isolated_core_idle(w: Watch, host: MonitoredHost) -> list[Rule]:
    cores = polled_cores(host.profile)
    n = ISOLATED_IDLE_MINUTES
    metric = w.per_core("MAX", CPU_IDLE, host, cores, "most idle busy-poll core")
    words = (
        f"{CPU_IDLE} of any busy-poll core ({cpus(cores, ', ')}) "
        f"averages above {ISOLATED_IDLE_PERCENT:g} % for {n} minutes"
    )
    return [Rule(metric, ISOLATED_IDLE_PERCENT, _GT, n, n, words)]


def housekeeping_cpu_high(w: Watch, host: MonitoredHost) -> list[Rule]:
    cores = host.profile.housekeeping
    if len(cores) > MATH_ALARM_METRICS_MAX:
        raise ValueError(
            f"{len(cores)} housekeeping cores: a CloudWatch math alarm watches at most "
            f"{MATH_ALARM_METRICS_MAX} metrics"
        )
    window, n = HOUSEKEEPING_WINDOW, HOUSEKEEPING_PERIODS
    metric = w.per_core("MAX", CPU_ACTIVE, host, cores, "busiest housekeeping core", window)
    words = (
        f"{CPU_ACTIVE} of a housekeeping core ({cpus(cores, ', ')}) "
        f"averages above {HOUSEKEEPING_ACTIVE_PERCENT:g} % for "
        f"{n * window.to_minutes()} minutes"
    )
    return [Rule(metric, HOUSEKEEPING_ACTIVE_PERCENT, _GT, n, n, words)]


def host_tuning_lost(w: Watch, host: MonitoredHost) -> list[Rule]:
    window = HOST_TUNING_WINDOW
    metric = w.emf(HOST_TUNED, host, cw.Stats.MAXIMUM, window)
    words = f"{HOST_TUNED} stays below 1 (or is missing) for {window.to_minutes()} minutes"
    return [Rule(metric, 1, _LT, 1, 1, words)]


def hugepages_low(w: Watch, host: MonitoredHost) -> list[Rule]:
    window = HUGEPAGES_WINDOW
    floor = hugepages_floor(host.profile)
    metric = w.emf(HUGEPAGES_FREE, host, cw.Stats.MINIMUM, window)
    words = (
        f"{HUGEPAGES_FREE} drops below {floor:g} pages "
        f"({HUGEPAGES_FREE_RATIO:.0%} of the profile's {host.profile.hugepages}) "
        f"within {window.to_minutes()} minutes"
    )
    return [Rule(metric, floor, _LT, 1, 1, words)]


def ena_allowance_exceeded(w: Watch, host: MonitoredHost) -> list[Rule]:
    window = EVENT_WINDOW
    counters = [w.host(name, host, cw.Stats.MAXIMUM, window) for name in ENA_ALLOWANCE]
    total = w.math("SUM", counters, "packets shaped since the driver loaded", window)
    metric = w.diff(total, "packets shaped by allowances", window)
    words = f"the sum of {', '.join(ENA_ALLOWANCE)} grows within {window.to_minutes()} minutes"
    return [Rule(metric, 0, _GT, 1, 1, words)]


def status_check_failed(w: Watch, host: MonitoredHost) -> list[Rule]:
    # two alarms: EC2 accepts the recover action only on an alarm over the system check; an
    # instance check fails on the guest's own state, which a reboot would destroy before the
    # on-call sees it
    n = STATUS_CHECK_MINUTES
    recover = cw_actions.Ec2Action(cw_actions.Ec2InstanceAction.RECOVER)
    return [
        Rule(
            w.ec2(STATUS_CHECK_SYSTEM, host),
            1,
            _GE,
            n,
            n,
            f"{STATUS_CHECK_SYSTEM} is 1 for {n} minutes; EC2 then recovers the "
            "instance onto healthy hardware (same id, private IP and EBS volumes)",
            actions=(recover,),
        ),
        Rule(
            w.ec2(STATUS_CHECK_INSTANCE, host),
            1,
            _GE,
            n,
            n,
            f"{STATUS_CHECK_INSTANCE} is 1 for {n} minutes (the guest itself: kernel, "
            "network config, memory); no automatic action",
            variant="instance",
        ),
    ]


def disk_space_low(w: Watch, host: MonitoredHost) -> list[Rule]:
    metric = w.host(DISK_USED_PERCENT, host, cw.Stats.MAXIMUM, DISK_WINDOW)
    words = f"{DISK_USED_PERCENT} of / is above {DISK_USED_THRESHOLD:g} %"
    return [Rule(metric, DISK_USED_THRESHOLD, _GT, 1, 1, words)]


# ----------------------------------------------------------------------------- the table

_P = catalog.ALARM_PREFIX
RULES: dict[str, Callable[[Watch, MonitoredHost], list[Rule]]] = {
    f"{_P}EngineDown": engine_down,
    f"{_P}TickToOrderP99High": tick_to_order_p99_high,
    f"{_P}MarketDataStalled": market_data_stalled,
    f"{_P}FeedGapRateHigh": feed_gap_rate_high,
    f"{_P}ExchangeSessionDown": exchange_session_down,
    f"{_P}RejectsHigh": rejects_high,
    f"{_P}RingFull": ring_full,
    f"{_P}IsolatedCoreIdle": isolated_core_idle,
    f"{_P}HousekeepingCpuHigh": housekeeping_cpu_high,
    f"{_P}HostTuningLost": host_tuning_lost,
    f"{_P}HugepagesLow": hugepages_low,
    f"{_P}EnaAllowanceExceeded": ena_allowance_exceeded,
    f"{_P}StatusCheckFailed": status_check_failed,
    f"{_P}DiskSpaceLow": disk_space_low,
}


def rules(kind: str, w: Watch, host: MonitoredHost) -> list[Rule]:
    """The alarms of catalog kind ``kind`` on ``host``."""
    if kind not in RULES:
        raise KeyError(f"catalog alarm {kind!r} has no function in infra.monitoring.alarms.RULES")
    return RULES[kind](w, host)
