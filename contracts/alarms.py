"""What lowlat watches: the alarm list and the dashboard's widgets, as data.

One source of truth for three readers: the monitoring construct builds one CloudWatch alarm per
``ALARMS`` entry for each host (``infra/monitoring/alarms.py``, one function per entry) and one
dashboard widget per ``WIDGETS`` entry (``infra/monitoring/dashboard.py``);
``runbooks/<name>.md`` exists for every alarm (named exactly like it); and the tests prove the
three agree. Metric names are not spelled here: the construct takes them from
``ami.cloudwatch`` (host metrics, bench metrics) and ``contracts.metric_names`` (the /metrics
families), the same modules the CloudWatch agent config and the telemetry API are built from.

This module is light (standard library only): no aws_cdk import, so tests and tools can read it
without synthesizing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

ALARM_PREFIX = "Lowlat"
CRITICAL, WARNING = "critical", "warning"
SEVERITIES = {
    CRITICAL: "pages the on-call engineer at any hour: trading is impaired or about to be",
    WARNING: "notifies in working hours: capacity or hygiene, no trading impact yet",
}


@dataclass(frozen=True)
class Widget:
    """One dashboard widget: its title (what runbooks tell people to look at) and what it shows."""

    title: str
    shows: str


@dataclass(frozen=True)
class Alarm:
    """One alarm kind. CloudWatch gets one alarm per host, ``<name>-<host>``; its runbook is
    ``runbooks/<name>.md`` and its description ends with the runbook's URL."""

    name: str
    severity: str
    summary: str  # one line: what the alarm means when it fires
    widget: str  # the dashboard widget to open first (a Widget title)
    missing_data_breaches: bool = False  # "no data" is itself the failure (a dead exporter)

    @property
    def runbook(self) -> str:
        return f"runbooks/{self.name}.md"


WIDGETS = (
    Widget("Engine and stages up", "trading_up and trading_stage_up per stage, kill switch"),
    Widget("Tick-to-order latency", "p50, p99 and p99.9 of the recent window against the SLOs"),
    Widget("Market data and order rates", "messages processed, orders sent and fills per second"),
    Widget("Rejects by reason", "risk rejects per second, one line per reason"),
    Widget("Ring occupancy", "md, order and fill ring fill level"),
    Widget("Ring full events", "pushes that found a ring full, per ring"),
    Widget(
        "Sequence gaps and drops",
        "feed sequence gaps, dropped and lost messages; the UDP feed's gaps, recovered and "
        "given-up messages",
    ),
    Widget(
        "Exchange session",
        "1 while the gateway's order-entry session is up; sessions, drops, orders open and "
        "orders resent after a reconnect",
    ),
    Widget("CPU per core", "busy share of each isolated core (should be ~100) and housekeeping"),
    Widget("Memory", "memory used percent, swap used (should be 0)"),
    Widget("Hugepages free", "free 2 MiB hugepages against the profile's count"),
    Widget("ENA allowance exceeded", "packets shaped by the instance's network allowances"),
    Widget("Host tuning status", "1 while check-host passes; failed checks count"),
    Widget("Status checks", "EC2 system and instance status checks"),
    Widget("Disk used", "root file system used percent"),
    Widget("Benchmark results", "what `fab bench --publish` sent: p50/p99/p99.9 per offered rate"),
)

ALARMS = (
    Alarm(
        f"{ALARM_PREFIX}EngineDown",
        CRITICAL,
        "the engine is not running (trading_up is 0 or missing): no quotes, no orders",
        "Engine and stages up",
        missing_data_breaches=True,
    ),
    Alarm(
        f"{ALARM_PREFIX}TickToOrderP99High",
        CRITICAL,
        "tick-to-order p99 over the recent window is above the SLO",
        "Tick-to-order latency",
    ),
    Alarm(
        f"{ALARM_PREFIX}MarketDataStalled",
        CRITICAL,
        "the engine is up but processed no market data for several minutes",
        "Market data and order rates",
        missing_data_breaches=True,
    ),
    Alarm(
        f"{ALARM_PREFIX}FeedGapRateHigh",
        CRITICAL,
        "the UDP feed finds gaps often, or gives gaps up: the network to the exchange loses "
        "packets and the engine's books go stale",
        "Sequence gaps and drops",
    ),
    Alarm(
        f"{ALARM_PREFIX}ExchangeSessionDown",
        CRITICAL,
        "the engine is up but its gateway has had no order-entry session with the exchange for "
        "minutes: no order reaches the exchange (hosts that trade with a real exchange only)",
        "Exchange session",
    ),
    Alarm(
        f"{ALARM_PREFIX}RejectsHigh",
        WARNING,
        "risk checks reject more orders than the threshold allows",
        "Rejects by reason",
    ),
    Alarm(
        f"{ALARM_PREFIX}RingFull",
        WARNING,
        "a stage found its output ring full: a downstream stage is falling behind",
        "Ring full events",
    ),
    Alarm(
        f"{ALARM_PREFIX}IsolatedCoreIdle",
        CRITICAL,
        "an isolated core stopped busy-polling: the stage pinned there died or is blocked",
        "CPU per core",
    ),
    Alarm(
        f"{ALARM_PREFIX}HousekeepingCpuHigh",
        WARNING,
        "the housekeeping cores are saturated: telemetry, agents and IRQs compete",
        "CPU per core",
    ),
    Alarm(
        f"{ALARM_PREFIX}HostTuningLost",
        CRITICAL,
        "check-host fails on the running host: isolation, hugepages or IRQ steering is gone",
        "Host tuning status",
        missing_data_breaches=True,
    ),
    Alarm(
        f"{ALARM_PREFIX}HugepagesLow",
        WARNING,
        "few free 2 MiB hugepages left: the next engine start may not get its segments",
        "Hugepages free",
    ),
    Alarm(
        f"{ALARM_PREFIX}EnaAllowanceExceeded",
        WARNING,
        "the instance went over a network allowance (bandwidth, PPS, conntrack, link-local)",
        "ENA allowance exceeded",
    ),
    Alarm(
        f"{ALARM_PREFIX}StatusCheckFailed",
        CRITICAL,
        "an EC2 status check fails; on a system check failure EC2 recovers the instance",
        "Status checks",
    ),
    Alarm(
        f"{ALARM_PREFIX}DiskSpaceLow",
        WARNING,
        "the root file system is nearly full: logs or releases can no longer be written",
        "Disk used",
    ),
)

WIDGET_TITLES = tuple(w.title for w in WIDGETS)
ALARM_NAMES = tuple(a.name for a in ALARMS)


def alarm(name: str) -> Alarm:
    """The catalog entry of alarm kind ``name``; KeyError names the known ones."""
    for entry in ALARMS:
        if entry.name == name:
            return entry
    raise KeyError(f"no alarm {name!r}; known: {', '.join(ALARM_NAMES)}")
