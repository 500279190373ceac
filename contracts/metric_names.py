"""The names of every family GET /metrics exposes: the one place they are made.

Every family name is derived from ``contracts.stats_layout.CATALOG`` (``prometheus_name``), plus a
few about the engine as a whole (``ENGINE_FAMILIES``: ``trading_up``, ``trading_build_info``,
``trading_stage_up``, ``trading_stage_heartbeat_age_seconds``,
``trading_engine_start_time_seconds``), the recent-window summaries every histogram is also
exposed as (``RECENT_FAMILIES``) and the host as the telemetry API sees it (``HOST_FAMILIES``).
The telemetry API (``service.telemetry.exposition``), the CloudWatch agent config
(``ami.cloudwatch``) and the dashboards and alarms (``infra.monitoring``) all take their names
from ``FAMILIES``; Prometheus naming: ``trading_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

from typing import NamedTuple

from contracts import stats_layout as L

PREFIX = "trading_"


def prometheus_name(metric: L.Metric) -> str:
    """The exposed family name of a CATALOG metric: prefix, base unit, ``_total`` for counters."""
    if metric.kind == "counter":
        return f"{PREFIX}{metric.name.removesuffix('_total')}_total"
    if metric.kind == "gauge":
        return f"{PREFIX}{metric.name}"
    if metric.kind == "histogram":  # recorded in nanoseconds, exported in seconds
        return f"{PREFIX}{metric.name.removesuffix('_seconds')}_seconds"
    raise ValueError(f"metric {metric.name!r} has kind {metric.kind!r}: no Prometheus name for it")


class FamilySpec(NamedTuple):
    """One family /metrics can expose: its exposed name, type, help and label names."""

    name: str  # as it appears in the exposition (counters end in _total)
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...] = ()


ENGINE_FAMILIES = (
    FamilySpec(
        f"{PREFIX}up",
        "gauge",
        "1 while the engine runs and every stage is running with a fresh heartbeat, else 0",
    ),
    FamilySpec(
        f"{PREFIX}build_info", "gauge", "Version of the lowlat service; always 1", ("version",)
    ),
    FamilySpec(
        f"{PREFIX}stage_up",
        "gauge",
        "1 while the stage is running with a heartbeat within the readiness bound",
        ("stage",),
    ),
    FamilySpec(
        f"{PREFIX}stage_heartbeat_age_seconds",
        "gauge",
        "Time since the stage last published its stats section",
        ("stage",),
    ),
    FamilySpec(
        f"{PREFIX}engine_start_time_seconds",
        "gauge",
        "Start time of the running engine since the Unix epoch",
    ),
)


def _catalog_spec(metric: L.Metric) -> FamilySpec:
    labels = (metric.label,) if metric.words > 1 else ()
    return FamilySpec(prometheus_name(metric), metric.kind, metric.help, labels)


RECENT_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def recent_name(metric: L.Metric) -> str:
    """The summary a histogram is also exposed as: quantiles over the recent window."""
    return f"{PREFIX}{metric.name}_recent_seconds"


RECENT_FAMILIES = tuple(
    FamilySpec(
        recent_name(m),
        "summary",
        f"{m.help}: quantiles over the last sampling window, count and sum since start",
        ("quantile",),
    )
    for m in L.CATALOG
    if m.kind == "histogram"
)

# The host the engine runs on, as the telemetry API sees it: the verdict of its periodic
# check-host (ami.check, refreshed every minute off the request path) and the 2 MiB
# hugepages the engine's segments come from. The host-tuning and hugepage alarms read these.
HOST_FAMILIES = (
    FamilySpec(
        f"{PREFIX}host_tuned",
        "gauge",
        "1 when the host's last check-host passed every check that applies, else 0",
    ),
    FamilySpec(
        f"{PREFIX}host_checks_failed",
        "gauge",
        "Checks the host's last check-host failed",
    ),
    FamilySpec(f"{PREFIX}hugepages_free", "gauge", "Free 2 MiB hugepages on the host"),
    FamilySpec(f"{PREFIX}hugepages_reserved", "gauge", "2 MiB hugepages the host has reserved"),
)

FAMILIES = (
    ENGINE_FAMILIES + tuple(_catalog_spec(m) for m in L.CATALOG) + RECENT_FAMILIES + HOST_FAMILIES
)
