"""The names the alarms and widgets read, bound once, and the names of what Monitoring creates.

No metric name is typed in this package: each comes from the module that also builds the agent
config or the telemetry API, so ``tests/test_metric_names_agree.py`` can prove every name the
template uses is one that is produced:

- ``trading_*``: ``contracts.metric_names`` names (the families /metrics exports), published by the
  agent's EMF processor with the dimensions ``[instance_id, <family labels>]``
  (``ami.cloudwatch.metric_declarations``). Counters are named as exposed, with ``_total``
  (the agent's selectors match the sample name), and arrive as the delta per scrape: a period's
  ``Sum`` is the events in it, ``Sum / PERIOD`` the rate per second. Gauges arrive as read.
  Latency percentiles come from the summary ``trading_tick_to_order_recent_seconds`` (its
  ``quantile`` label values are formatted as prometheus_client formats them).
- host metrics: ``ami.cloudwatch.host_metric`` names, published with the rolled-up dimension
  sets ``ami.cloudwatch.AGGREGATION_DIMENSIONS``: ``{InstanceId}`` or ``{InstanceId, cpu}``.
- EC2 status checks: ``AWS/EC2`` ``StatusCheckFailed_System`` / ``_Instance`` by ``InstanceId``.
- benchmark results: ``ami.cloudwatch.BENCH_METRICS`` by ``BENCH_DIMENSIONS``, found with SEARCH
  (the offered rates are whatever ``fab bench --publish`` ran).

ENA allowance counters arrive as the raw ethtool counters, growing since the driver loaded: the
agent turns only its diskio and net plugins into deltas (its host pipeline translator says so),
and ethtool is not one of them. So the packets shaped in a period are the ``DIFF`` of the
period's ``Maximum``; a driver reload makes one negative step, which never breaches.

Also here, as plain functions of strings and profiles: the dashboard's and the alarms' names,
the runbook URL of an alarm kind, and the cores a profile busy-polls. No aws_cdk import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prometheus_client.utils import floatToGoString

from ami import cloudwatch as C
from contracts import alarms as catalog
from contracts import metric_names as M
from contracts import stats_layout as L
from contracts.profile import TuningProfile

_CATALOG = {metric.name: metric for metric in L.CATALOG}
_FAMILIES = {spec.name: spec for spec in M.FAMILIES}


def family(base: str) -> str:
    """The exposed name of a /metrics family, by the name the service knows it under (a
    ``stats_layout.CATALOG`` name or an engine/host family without the prefix), derived exactly
    as ``ami.cloudwatch`` derives the agent's selectors. No existence check here: the names
    test proves each one is exported and declared to the agent."""
    if base in _CATALOG:
        return M.prometheus_name(_CATALOG[base])
    return f"{M.PREFIX}{base}"


def family_label(name: str) -> str:
    """The one label of family ``name`` (its CloudWatch dimension next to ``instance_id``)."""
    (label,) = _FAMILIES[name].labels
    return label


UP = family("up")
STAGE_UP = family("stage_up")
KILL_SWITCH = family("kill_switch")
MD_PROCESSED = family("md_messages_processed")
ORDERS_SENT = family("orders_sent")
ORDERS_REJECTED = family("orders_rejected")
FILLS = family("fills")
SEQUENCE_GAPS = family("sequence_gaps")
MD_DROPPED = family("md_messages_dropped")
MD_LOST = family("md_messages_lost")
FEED_GAPS = family("feed_gaps")  # the UDP feed's (source = "udp")
MD_RECOVERED = family("md_messages_recovered")
MD_GIVEN_UP = family("md_messages_given_up")
# the gateway's order-entry session ([gateway] exchange = "tcp")
EXCHANGE_CONNECTED = family("exchange_connected")
EXCHANGE_SESSIONS = family("exchange_sessions")
EXCHANGE_DROPS = family("exchange_drops")
ORDERS_OPEN = family("orders_open")
ORDERS_RESENT = family("orders_resent")
# the rings, as the catalog names them: md, order, fill
RINGS = tuple(m.name.removesuffix("_ring_full") for m in L.CATALOG if m.name.endswith("_ring_full"))
RING_FULL = {ring: family(f"{ring}_ring_full") for ring in RINGS}
RING_OCCUPANCY = {ring: family(f"{ring}_ring_occupancy") for ring in RINGS}
TICK_TO_ORDER = M.recent_name(_CATALOG["tick_to_order"])
# gauges the telemetry API exports about the host (check-host's verdict, /proc/meminfo)
HOST_TUNED = family("host_tuned")
HOST_CHECKS_FAILED = family("host_checks_failed")
HUGEPAGES_FREE = family("hugepages_free")
HUGEPAGES_RESERVED = family("hugepages_reserved")

P50, P99, P999 = 0.5, 0.99, 0.999
if not {P50, P99, P999} <= set(M.RECENT_QUANTILES):
    raise ImportError(
        f"contracts.metric_names.RECENT_QUANTILES {M.RECENT_QUANTILES} lacks p50/p99/p99.9"
    )


def quantile_value(q: float) -> str:
    """The ``quantile`` label value of ``q`` as /metrics writes it ("0.99")."""
    return floatToGoString(q)


CPU_ACTIVE = C.host_metric("cpu", "usage_active")
CPU_IDLE = C.host_metric("cpu", "usage_idle")
CPU_DIMENSION = C.AGGREGATION_DIMENSIONS[1][1]  # "cpu", values "cpu<N>"
MEM_USED_PERCENT = C.host_metric("mem", "mem_used_percent")
SWAP_USED = C.host_metric("swap", "swap_used")
DISK_USED_PERCENT = C.host_metric("disk", "used_percent")
ENA_ALLOWANCE = tuple(C.host_metric("ethtool", c) for c in C.ENA_ALLOWANCE_COUNTERS)

EC2_NAMESPACE = "AWS/EC2"
STATUS_CHECK_SYSTEM = "StatusCheckFailed_System"
STATUS_CHECK_INSTANCE = "StatusCheckFailed_Instance"

# ----------------------------------------------------------------------------- what we name

_DASHBOARD_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def dashboard_name(deployment: str) -> str:
    """The dashboard of ``deployment``: ``<deployment>-lowlat``, or the deployment's name alone
    when it already says lowlat (the default deployment ``lowlat`` gets ``lowlat``, not
    ``lowlat-lowlat``). CloudWatch allows letters, digits, ``-`` and ``_``."""
    name = deployment if "lowlat" in deployment.lower() else f"{deployment}-lowlat"
    if not _DASHBOARD_NAME_RE.match(name) or len(name) > 255:
        raise ValueError(
            f"deployment = {deployment!r}: a dashboard name allows only letters, digits, "
            "'-' and '_' (255 characters at most)"
        )
    return name


def alarm_name(kind: str, deployment: str, host_label: str, variant: str = "") -> str:
    """CloudWatch's name of alarm ``kind`` (a catalog name) on one host of ``deployment``."""
    return "-".join(part for part in (kind, deployment, host_label, variant) if part)


def runbook_url(runbook_base_url: str, kind: str) -> str:
    return f"{runbook_base_url.rstrip('/')}/{catalog.alarm(kind).runbook}"


def polled_cores(profile: TuningProfile) -> tuple[int, ...]:
    """The isolated cores a stage busy-polls: ``profile.stage_cores()``. An isolated core with
    no stage on it (cpu4-7 of an 8-vCPU host) idles by design, so watching it would page for
    nothing; a fused layout (fewer than 3 isolated cores) polls on fewer cores."""
    return tuple(sorted(set(profile.stage_cores().values())))


def cpus(cores: Sequence[int], sep: str = ",") -> str:
    """``cores`` as the agent's ``cpu`` dimension names them: ``cpu1,cpu2``."""
    return sep.join(f"cpu{c}" for c in cores)
