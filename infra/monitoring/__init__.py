"""The CloudWatch dashboard and alarms of one lowlat deployment.

``Monitoring`` builds, from ``contracts.alarms`` (the alarm kinds and widget titles, shared with the
runbooks):

- one alarm per catalog ``Alarm`` and host, named ``alarm_name(kind, deployment, host)``:
  ``<kind>-<deployment>-<host>``, so every alarm starts with the shared ``Lowlat`` prefix and
  carries the catalog name verbatim (``aws cloudwatch describe-alarms --alarm-name-prefix
  LowlatEngineDown`` lists one kind across hosts). ``LowlatStatusCheckFailed`` is two alarms per
  host: the system check (with the EC2 recover action, which EC2 accepts only on an alarm over
  ``StatusCheckFailed_System``) and the instance check (``...-instance``, notify only: an instance
  check fails on the guest's own state, a reboot would destroy what the on-call needs to see).
  Every alarm notifies the SNS topic on ALARM and on OK, carries its severity as a ``Severity``
  tag and as a ``[critical]``/``[warning]`` description prefix, and its description ends with
  ``Runbook: <runbook_base_url>/runbooks/<kind>.md``.
- one dashboard, ``dashboard_name(deployment)``: a header, the alarm status of every alarm, then
  one row per catalog ``Widget`` in catalog order. Each widget's title is the catalog title
  exactly and shows every host of the deployment as its own labelled lines (``host1 p99``), so
  one widget is both the fleet and each host; "CPU per core" also gets one detail widget per host
  (``CPU per core — host1``: every core, isolated and housekeeping), because per-core lines of
  several hosts in one graph are unreadable.

Where the metric names come from (never typed here; ``tests/test_metric_names_agree.py`` proves
every name the template uses is one the agent config and the telemetry API produce):

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

The alarm rules (statistic, period, datapoints, threshold) are in ``_rule_table``; each says in
words what it fires on, and that sentence is the description's middle part, so the runbook reader
sees the exact condition. CloudWatch caps a metric math alarm at 10 metrics: the per-core alarms
watch only the cores that need it (``polled_cores``, ``profile.housekeeping``) and say so loudly
if a profile ever exceeds the cap.

Light enough for ``cdk synth``: aws_cdk, the catalog and the data modules of ``ami``/``service``
(numpy, prometheus_client); never numba.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sns as sns
from constructs import Construct
from prometheus_client.utils import floatToGoString

from ami import cloudwatch as C
from contracts import alarms as catalog
from contracts import metric_names as M
from contracts import stats_layout as L
from contracts.profile import TuningProfile
from contracts.stages import STAGES

# ----------------------------------------------------------------------------- metric names

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

# ----------------------------------------------------------------------------- thresholds
# The numbers behind the rules in Monitoring._rules; the SLOs and the profile give the rest.

ENGINE_DOWN_MINUTES = 2  # trading_up below 1 for this many consecutive minutes
TICK_TO_ORDER_DATAPOINTS = (3, 5)  # minutes over the SLO, out of the last N minutes
MD_STALLED_MINUTES = 3  # consecutive minutes without one market-data message processed
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

MINUTE = cdk.Duration.minutes(1)
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


def hugepages_floor(profile: TuningProfile) -> float:
    """HugepagesLow fires below this many free pages (a profile without hugepages: never)."""
    return float(math.ceil(profile.hugepages * HUGEPAGES_FREE_RATIO))


# ----------------------------------------------------------------------------- the construct


@dataclass(frozen=True)
class MonitoredHost:
    """One trading host: the label people call it by, the instance, and its tuning profile."""

    label: str
    instance: ec2.Instance
    profile: TuningProfile

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id


@dataclass(frozen=True)
class _Rule:
    """One CloudWatch alarm of a catalog kind on one host."""

    metric: cw.IMetric
    threshold: float
    comparison: cw.ComparisonOperator
    periods: int
    datapoints: int
    condition: str  # what it fires on, in words (goes into the description)
    variant: str = ""  # distinguishes a second alarm of one kind on one host
    actions: tuple[cw.IAlarmAction, ...] = field(default=())


class Monitoring(Construct):
    """The dashboard and alarms watching ``hosts`` (see the module docstring).

    Attributes: ``dashboard``, ``dashboard_name`` (str), ``alarms`` (every alarm, in catalog
    order per host).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        deployment: str,
        hosts: Sequence[MonitoredHost],
        slo_p50_us: float,
        slo_p99_us: float,
        slo_p999_us: float,
        runbook_base_url: str,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id_)
        hosts = tuple(hosts)
        if not hosts:
            raise ValueError("Monitoring needs at least one host")
        labels = [host.label for host in hosts]
        if len(set(labels)) != len(labels):
            raise ValueError(f"host labels {labels} repeat: alarm names would collide")
        if not 0 < slo_p50_us <= slo_p99_us <= slo_p999_us:
            raise ValueError(
                f"SLOs p50 {slo_p50_us} us, p99 {slo_p99_us} us, p99.9 {slo_p999_us} us: "
                "use 0 < p50 <= p99 <= p99.9"
            )
        self.deployment = deployment
        self.hosts = hosts
        # divided, not multiplied by 1e-6: 20 / 1e6 is exactly 2e-05 in the template, 20 * 1e-6 not
        self.slo_s = {P50: slo_p50_us / 1e6, P99: slo_p99_us / 1e6, P999: slo_p999_us / 1e6}
        self.runbook_base_url = runbook_base_url.rstrip("/")
        self.dashboard_name = dashboard_name(deployment)
        self._ids = 0

        self.alarms: list[cw.Alarm] = []
        topic_action = cw_actions.SnsAction(alarm_topic)
        for host in hosts:
            for entry in catalog.ALARMS:
                for rule in self._rules(entry.name, host):
                    self.alarms.append(self._alarm(entry, host, rule, topic_action))

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.dashboard_name,
            default_interval=cdk.Duration.hours(3),
        )
        self.dashboard.add_widgets(self._header())
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(
                alarms=self.alarms,
                title=f"Alarms ({deployment})",
                width=24,
                height=max(3, 2 + len(self.alarms) // 4),
                sort_by=cw.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
            )
        )
        builders = self._widget_builders()
        for widget in catalog.WIDGETS:
            self.dashboard.add_widgets(*builders[widget.title](widget.title))

    # ------------------------------------------------------------------------- metrics

    def _id(self, stem: str = "m") -> str:
        """A fresh metric id: math expressions in one widget or alarm must not share ids."""
        self._ids += 1
        return f"{stem}{self._ids}"

    @staticmethod
    def _emf(
        name: str, host: MonitoredHost, statistic: str, period=MINUTE, label=None, **labels
    ) -> cw.Metric:
        """A /metrics family as the agent's EMF processor publishes it for ``host``."""
        return cw.Metric(
            namespace=C.NAMESPACE,
            metric_name=name,
            dimensions_map={C.INSTANCE_LABEL: host.instance_id, **labels},
            statistic=statistic,
            period=period,
            label=label,
        )

    @staticmethod
    def _host(
        name: str, host: MonitoredHost, statistic: str, period=MINUTE, label=None, cpu=None
    ) -> cw.Metric:
        """A host metric of the agent, by its rolled-up dimensions (instance, and core)."""
        dims = {C.INSTANCE_DIMENSION: host.instance_id}
        if cpu is not None:
            dims[CPU_DIMENSION] = f"cpu{cpu}"
        return cw.Metric(
            namespace=C.NAMESPACE,
            metric_name=name,
            dimensions_map=dims,
            statistic=statistic,
            period=period,
            label=label,
        )

    @staticmethod
    def _ec2(name: str, host: MonitoredHost, label=None, period=MINUTE) -> cw.Metric:
        return cw.Metric(
            namespace=EC2_NAMESPACE,
            metric_name=name,
            dimensions_map={C.INSTANCE_DIMENSION: host.instance_id},
            statistic=cw.Stats.MAXIMUM,
            period=period,
            label=label,
        )

    def _math(
        self, fn: str, metrics: Sequence[cw.IMetric], label: str, period
    ) -> cw.MathExpression:
        """``fn([m1, m2, ...])`` (MAX, MIN, SUM) over ``metrics``, missing points as 0 for SUM."""
        ids = {self._id(): metric for metric in metrics}
        terms = [f"FILL({k}, 0)" if fn == "SUM" else k for k in ids]
        return cw.MathExpression(
            expression=f"{fn}([{', '.join(terms)}])", using_metrics=ids, label=label, period=period
        )

    def _diff(self, metric: cw.IMetric, label: str, period) -> cw.MathExpression:
        """How much a cumulative counter grew in each period (ethtool's counters only grow)."""
        k = self._id()
        return cw.MathExpression(
            expression=f"DIFF({k})", using_metrics={k: metric}, label=label, period=period
        )

    def _rate(self, metric: cw.Metric, label: str) -> cw.MathExpression:
        """Events per second of a delta counter (the period's Sum over its length)."""
        k = self._id()
        return cw.MathExpression(
            expression=f"{k} / PERIOD({k})", using_metrics={k: metric}, label=label, period=MINUTE
        )

    # ------------------------------------------------------------------------- alarms

    def _alarm(
        self, entry: catalog.Alarm, host: MonitoredHost, rule: _Rule, topic: cw.IAlarmAction
    ) -> cw.Alarm:
        name = alarm_name(entry.name, self.deployment, host.label, rule.variant)
        description = (
            f"[{entry.severity}] {entry.summary}. "
            f"Fires when {rule.condition}. "
            f"Severity {entry.severity}: {catalog.SEVERITIES[entry.severity]}. "
            f'Dashboard {self.dashboard_name}, widget "{entry.widget}". '
            f"Runbook: {runbook_url(self.runbook_base_url, entry.name)}"
        )
        alarm = cw.Alarm(
            self,
            f"{entry.name}-{host.label}{'-' + rule.variant if rule.variant else ''}",
            alarm_name=name,
            alarm_description=description,
            metric=rule.metric,
            threshold=rule.threshold,
            comparison_operator=rule.comparison,
            evaluation_periods=rule.periods,
            datapoints_to_alarm=rule.datapoints,
            # "no data" is the failure itself where the catalog says so (a dead exporter);
            # elsewhere a silent metric is covered by LowlatEngineDown (the agent or API gone)
            treat_missing_data=(
                cw.TreatMissingData.BREACHING
                if entry.missing_data_breaches
                else cw.TreatMissingData.NOT_BREACHING
            ),
        )
        alarm.add_alarm_action(topic, *rule.actions)
        alarm.add_ok_action(topic)
        cdk.Tags.of(alarm).add("Severity", entry.severity)
        cdk.Tags.of(alarm).add("AlarmKind", entry.name)
        return alarm

    def _rules(self, kind: str, host: MonitoredHost) -> list[_Rule]:
        rules = self._rule_table(host)
        if kind not in rules:
            raise KeyError(f"catalog alarm {kind!r} has no rule in infra/monitoring/__init__.py")
        return rules[kind]()

    def _rule_table(self, host: MonitoredHost) -> dict[str, Callable[[], list[_Rule]]]:
        p = catalog.ALARM_PREFIX
        gt = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
        ge = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        lt = cw.ComparisonOperator.LESS_THAN_THRESHOLD
        le = cw.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD
        profile = host.profile

        def engine_down():
            n = ENGINE_DOWN_MINUTES
            metric = self._emf(UP, host, cw.Stats.MINIMUM)
            return [_Rule(metric, 1, lt, n, n, f"{UP} is below 1 or missing for {n} minutes")]

        def tick_to_order():
            # Average of the 10 s window p99s over a minute: close to the minute's p99 under
            # steady flow, without paging on one bad 10 s window (Maximum would).
            slo = self.slo_s[P99]
            dp, n = TICK_TO_ORDER_DATAPOINTS
            metric = self._emf(
                TICK_TO_ORDER,
                host,
                cw.Stats.AVERAGE,
                **{family_label(TICK_TO_ORDER): quantile_value(P99)},
            )
            words = (
                f"the 1-minute average of {TICK_TO_ORDER} (quantile {quantile_value(P99)}) is "
                f"above the p99 SLO {slo * 1e6:g} us ({slo:g} s) in {dp} of {n} minutes"
            )
            return [_Rule(metric, slo, gt, n, dp, words)]

        def md_stalled():
            n = MD_STALLED_MINUTES
            metric = self._emf(MD_PROCESSED, host, cw.Stats.SUM)
            words = f"{MD_PROCESSED} sums to 0 (or is missing) in each of {n} consecutive minutes"
            return [_Rule(metric, 0, le, n, n, words)]

        def rejects():
            reason = family_label(ORDERS_REJECTED)
            w = REJECTS_WINDOW
            rej = {
                self._id("r"): self._emf(ORDERS_REJECTED, host, cw.Stats.SUM, w, **{reason: r})
                for r in L.REJECT_REASONS
            }
            sent = self._id("s")
            rejected = " + ".join(f"FILL({k}, 0)" for k in rej)
            attempts = f"(FILL({sent}, 0) + {rejected})"
            expression = f"IF({attempts} > 0, 100 * ({rejected}) / {attempts}, 0)"
            metric = cw.MathExpression(
                expression=expression,
                using_metrics={**rej, sent: self._emf(ORDERS_SENT, host, cw.Stats.SUM, w)},
                label="rejected percent of orders",
                period=w,
            )
            words = (
                f"{ORDERS_REJECTED} (all reasons) is above {REJECTS_PERCENT:g} % of the orders "
                f"({ORDERS_SENT} + rejected) over {w.to_minutes()} minutes"
            )
            return [_Rule(metric, REJECTS_PERCENT, gt, 1, 1, words)]

        def ring_full():
            w = EVENT_WINDOW
            metric = self._math(
                "SUM",
                [self._emf(RING_FULL[r], host, cw.Stats.SUM, w) for r in RINGS],
                "ring full events",
                w,
            )
            words = f"{' + '.join(RING_FULL.values())} is above 0 in {w.to_minutes()} minutes"
            return [_Rule(metric, 0, gt, 1, 1, words)]

        def isolated_idle():
            cores = polled_cores(profile)
            n = ISOLATED_IDLE_MINUTES
            metric = self._math(
                "MAX",
                [self._host(CPU_IDLE, host, cw.Stats.AVERAGE, cpu=c) for c in cores],
                "most idle busy-poll core",
                MINUTE,
            )
            words = (
                f"{CPU_IDLE} of any busy-poll core ({', '.join(f'cpu{c}' for c in cores)}) "
                f"averages above {ISOLATED_IDLE_PERCENT:g} % for {n} minutes"
            )
            return [_Rule(metric, ISOLATED_IDLE_PERCENT, gt, n, n, words)]

        def housekeeping_high():
            cores = profile.housekeeping
            if len(cores) > MATH_ALARM_METRICS_MAX:
                raise ValueError(
                    f"{len(cores)} housekeeping cores: a CloudWatch math alarm watches at most "
                    f"{MATH_ALARM_METRICS_MAX} metrics"
                )
            w, n = HOUSEKEEPING_WINDOW, HOUSEKEEPING_PERIODS
            metric = self._math(
                "MAX",
                [self._host(CPU_ACTIVE, host, cw.Stats.AVERAGE, w, cpu=c) for c in cores],
                "busiest housekeeping core",
                w,
            )
            words = (
                f"{CPU_ACTIVE} of a housekeeping core ({', '.join(f'cpu{c}' for c in cores)}) "
                f"averages above {HOUSEKEEPING_ACTIVE_PERCENT:g} % for "
                f"{n * w.to_minutes()} minutes"
            )
            return [_Rule(metric, HOUSEKEEPING_ACTIVE_PERCENT, gt, n, n, words)]

        def tuning_lost():
            w = HOST_TUNING_WINDOW
            metric = self._emf(HOST_TUNED, host, cw.Stats.MAXIMUM, w)
            words = f"{HOST_TUNED} stays below 1 (or is missing) for {w.to_minutes()} minutes"
            return [_Rule(metric, 1, lt, 1, 1, words)]

        def hugepages_low():
            w = HUGEPAGES_WINDOW
            floor = hugepages_floor(profile)
            metric = self._emf(HUGEPAGES_FREE, host, cw.Stats.MINIMUM, w)
            words = (
                f"{HUGEPAGES_FREE} drops below {floor:g} pages "
                f"({HUGEPAGES_FREE_RATIO:.0%} of the profile's {profile.hugepages}) "
                f"within {w.to_minutes()} minutes"
            )
            return [_Rule(metric, floor, lt, 1, 1, words)]

        def ena_exceeded():
            w = EVENT_WINDOW
            total = self._math(
                "SUM",
                [self._host(name, host, cw.Stats.MAXIMUM, w) for name in ENA_ALLOWANCE],
                "packets shaped since the driver loaded",
                w,
            )
            metric = self._diff(total, "packets shaped by allowances", w)
            words = f"the sum of {', '.join(ENA_ALLOWANCE)} grows within {w.to_minutes()} minutes"
            return [_Rule(metric, 0, gt, 1, 1, words)]

        def status_check():
            n = STATUS_CHECK_MINUTES
            recover = cw_actions.Ec2Action(cw_actions.Ec2InstanceAction.RECOVER)
            return [
                _Rule(
                    self._ec2(STATUS_CHECK_SYSTEM, host),
                    1,
                    ge,
                    n,
                    n,
                    f"{STATUS_CHECK_SYSTEM} is 1 for {n} minutes; EC2 then recovers the "
                    "instance onto healthy hardware (same id, private IP and EBS volumes)",
                    actions=(recover,),
                ),
                _Rule(
                    self._ec2(STATUS_CHECK_INSTANCE, host),
                    1,
                    ge,
                    n,
                    n,
                    f"{STATUS_CHECK_INSTANCE} is 1 for {n} minutes (the guest itself: kernel, "
                    "network config, memory); no automatic action",
                    variant="instance",
                ),
            ]

        def disk_low():
            w = DISK_WINDOW
            metric = self._host(DISK_USED_PERCENT, host, cw.Stats.MAXIMUM, w)
            words = f"{DISK_USED_PERCENT} of / is above {DISK_USED_THRESHOLD:g} %"
            return [_Rule(metric, DISK_USED_THRESHOLD, gt, 1, 1, words)]

        return {
            f"{p}EngineDown": engine_down,
            f"{p}TickToOrderP99High": tick_to_order,
            f"{p}MarketDataStalled": md_stalled,
            f"{p}RejectsHigh": rejects,
            f"{p}RingFull": ring_full,
            f"{p}IsolatedCoreIdle": isolated_idle,
            f"{p}HousekeepingCpuHigh": housekeeping_high,
            f"{p}HostTuningLost": tuning_lost,
            f"{p}HugepagesLow": hugepages_low,
            f"{p}EnaAllowanceExceeded": ena_exceeded,
            f"{p}StatusCheckFailed": status_check,
            f"{p}DiskSpaceLow": disk_low,
        }

    # ------------------------------------------------------------------------- dashboard

    def _header(self) -> cw.TextWidget:
        hosts = "\n".join(
            f"| {h.label} | {h.instance_id} | {cpus(h.profile.housekeeping)} | "
            f"{cpus(h.profile.isolated)} | {cpus(polled_cores(h.profile))} |"
            for h in self.hosts
        )
        slo = ", ".join(f"p{q * 100:g} {s * 1e6:g} us" for q, s in self.slo_s.items())
        runbooks = f"{self.runbook_base_url}/runbooks"
        markdown = (
            f"# lowlat: {self.deployment}\n"
            f"Tick-to-order SLOs: {slo}. Paged? Start with [triage]({runbooks}/triage.md); "
            f"the [runbook index]({runbooks}/README.md) maps each alarm to its runbook and "
            "widget.\n\n"
            "| host | instance | housekeeping | isolated | busy-poll |\n"
            "|---|---|---|---|---|\n"
            f"{hosts}\n"
        )
        return cw.TextWidget(markdown=markdown, width=24, height=3 + len(self.hosts))

    def _graph(self, title: str, left, right=(), width=24, **options) -> cw.GraphWidget:
        return cw.GraphWidget(
            title=title,
            left=list(left),
            right=list(right),
            width=width,
            height=6,
            period=options.pop("period", MINUTE),
            legend_position=cw.LegendPosition.BOTTOM,
            **options,
        )

    def _per_host(self, lines: Callable[[MonitoredHost], list[cw.IMetric]]) -> list[cw.IMetric]:
        return [metric for host in self.hosts for metric in lines(host)]

    def _widget_builders(self) -> dict[str, Callable[[str], list[cw.IWidget]]]:
        avg, mx, mn, total = cw.Stats.AVERAGE, cw.Stats.MAXIMUM, cw.Stats.MINIMUM, cw.Stats.SUM

        def engine_up(title):
            stage = family_label(STAGE_UP)
            left = self._per_host(
                lambda h: [
                    self._emf(UP, h, mn, label=f"{h.label} engine up"),
                    *(
                        self._emf(STAGE_UP, h, mn, label=f"{h.label} {s} up", **{stage: s})
                        for s in STAGES
                    ),
                ]
            )
            right = self._per_host(
                lambda h: [self._emf(KILL_SWITCH, h, mx, label=f"{h.label} kill switch")]
            )
            return [self._graph(title, left, right, left_y_axis=cw.YAxisProps(min=0, max=1.2))]

        def tick_to_order(title):
            label = family_label(TICK_TO_ORDER)
            names = {P50: "p50", P99: "p99", P999: "p99.9"}
            left = self._per_host(
                lambda h: [
                    self._emf(
                        TICK_TO_ORDER,
                        h,
                        avg,
                        label=f"{h.label} {names[q]}",
                        **{label: quantile_value(q)},
                    )
                    for q in names
                ]
            )
            slos = [
                cw.HorizontalAnnotation(value=self.slo_s[q], label=f"{names[q]} SLO") for q in names
            ]
            return [
                self._graph(
                    title,
                    left,
                    left_annotations=slos,
                    left_y_axis=cw.YAxisProps(label="seconds", min=0),
                )
            ]

        def rates(title):
            left = self._per_host(
                lambda h: [
                    self._rate(self._emf(MD_PROCESSED, h, total), f"{h.label} md/s"),
                    self._rate(self._emf(ORDERS_SENT, h, total), f"{h.label} orders/s"),
                    self._rate(self._emf(FILLS, h, total), f"{h.label} fills/s"),
                ]
            )
            return [self._graph(title, left, left_y_axis=cw.YAxisProps(label="per second"))]

        def rejects(title):
            reason = family_label(ORDERS_REJECTED)
            left = self._per_host(
                lambda h: [
                    self._rate(
                        self._emf(ORDERS_REJECTED, h, total, **{reason: r}), f"{h.label} {r}/s"
                    )
                    for r in L.REJECT_REASONS
                ]
            )
            right = self._per_host(
                lambda h: [self._rate(self._emf(ORDERS_SENT, h, total), f"{h.label} orders/s")]
            )
            return [self._graph(title, left, right, left_y_axis=cw.YAxisProps(label="per second"))]

        def occupancy(title):
            left = self._per_host(
                lambda h: [
                    self._emf(RING_OCCUPANCY[r], h, mx, label=f"{h.label} {r} ring") for r in RINGS
                ]
            )
            return [self._graph(title, left, left_y_axis=cw.YAxisProps(label="records", min=0))]

        def ring_full(title):
            left = self._per_host(
                lambda h: [
                    self._emf(RING_FULL[r], h, total, label=f"{h.label} {r} ring full")
                    for r in RINGS
                ]
            )
            return [self._graph(title, left, left_y_axis=cw.YAxisProps(label="per minute"))]

        def gaps(title):
            left = self._per_host(
                lambda h: [
                    self._emf(SEQUENCE_GAPS, h, total, label=f"{h.label} sequence gaps"),
                    self._emf(MD_DROPPED, h, total, label=f"{h.label} dropped"),
                    self._emf(MD_LOST, h, total, label=f"{h.label} lost in gaps"),
                ]
            )
            return [self._graph(title, left, left_y_axis=cw.YAxisProps(label="per minute"))]

        def cpu(title):
            # fleet: per host the least busy busy-poll core and the busiest housekeeping core
            # (the two alarms' views); then every core of each host in its own widget
            fleet = self._per_host(
                lambda h: [
                    self._math(
                        "MIN",
                        [self._host(CPU_ACTIVE, h, avg, cpu=c) for c in polled_cores(h.profile)],
                        f"{h.label} least busy busy-poll core",
                        MINUTE,
                    ),
                    self._math(
                        "MAX",
                        [self._host(CPU_ACTIVE, h, avg, cpu=c) for c in h.profile.housekeeping],
                        f"{h.label} busiest housekeeping core",
                        MINUTE,
                    ),
                ]
            )
            marks = [
                cw.HorizontalAnnotation(
                    value=100 - ISOLATED_IDLE_PERCENT, label="busy-poll core idle below"
                ),
                cw.HorizontalAnnotation(
                    value=HOUSEKEEPING_ACTIVE_PERCENT, label="housekeeping high above"
                ),
            ]
            axis = cw.YAxisProps(label="active %", min=0, max=100)
            widgets = [self._graph(title, fleet, left_annotations=marks, left_y_axis=axis)]
            width = max(8, 24 // len(self.hosts))
            for h in self.hosts:
                stage_of = {core: stage for stage, core in h.profile.stage_cores().items()}
                isolated = [
                    self._host(
                        CPU_ACTIVE,
                        h,
                        avg,
                        label=f"cpu{c} isolated ({stage_of.get(c, 'spare')})",
                        cpu=c,
                    )
                    for c in h.profile.isolated
                ]
                housekeeping = [
                    self._host(CPU_ACTIVE, h, avg, label=f"cpu{c} housekeeping", cpu=c)
                    for c in h.profile.housekeeping
                ]
                widgets.append(
                    self._graph(
                        f"{title} — {h.label}",
                        isolated + housekeeping,
                        width=width,
                        left_y_axis=axis,
                    )
                )
            return widgets

        def memory(title):
            left = self._per_host(
                lambda h: [self._host(MEM_USED_PERCENT, h, mx, label=f"{h.label} memory used %")]
            )
            right = self._per_host(
                lambda h: [self._host(SWAP_USED, h, mx, label=f"{h.label} swap used (bytes)")]
            )
            return [self._graph(title, left, right, left_y_axis=cw.YAxisProps(min=0, max=100))]

        def hugepages(title):
            left = self._per_host(
                lambda h: [
                    self._emf(HUGEPAGES_FREE, h, mn, label=f"{h.label} free"),
                    self._emf(HUGEPAGES_RESERVED, h, mx, label=f"{h.label} reserved"),
                ]
            )
            floors = sorted({hugepages_floor(h.profile) for h in self.hosts})
            marks = [cw.HorizontalAnnotation(value=f, label="HugepagesLow below") for f in floors]
            return [
                self._graph(
                    title,
                    left,
                    left_annotations=marks,
                    left_y_axis=cw.YAxisProps(label="2 MiB pages", min=0),
                )
            ]

        def ena(title):
            left = self._per_host(
                lambda h: [
                    self._diff(
                        self._host(name, h, cw.Stats.MAXIMUM), f"{h.label} {counter}", MINUTE
                    )
                    for name, counter in zip(ENA_ALLOWANCE, C.ENA_ALLOWANCE_COUNTERS, strict=True)
                ]
            )
            return [self._graph(title, left, left_y_axis=cw.YAxisProps(label="packets / minute"))]

        def tuning(title):
            left = self._per_host(
                lambda h: [self._emf(HOST_TUNED, h, mn, label=f"{h.label} tuned")]
            )
            right = self._per_host(
                lambda h: [self._emf(HOST_CHECKS_FAILED, h, mx, label=f"{h.label} checks failed")]
            )
            return [self._graph(title, left, right, left_y_axis=cw.YAxisProps(min=0, max=1.2))]

        def status(title):
            left = self._per_host(
                lambda h: [
                    self._ec2(STATUS_CHECK_SYSTEM, h, label=f"{h.label} system"),
                    self._ec2(STATUS_CHECK_INSTANCE, h, label=f"{h.label} instance"),
                ]
            )
            return [self._graph(title, left, left_y_axis=cw.YAxisProps(min=0, max=1.2))]

        def disk(title):
            left = self._per_host(
                lambda h: [self._host(DISK_USED_PERCENT, h, mx, label=f"{h.label} / used %")]
            )
            mark = cw.HorizontalAnnotation(value=DISK_USED_THRESHOLD, label="DiskSpaceLow above")
            return [
                self._graph(
                    title,
                    left,
                    left_annotations=[mark],
                    left_y_axis=cw.YAxisProps(min=0, max=100),
                )
            ]

        def bench(title):
            # SEARCH: the offered rates are whatever the bench ran; one search per metric,
            # limited to this deployment's instances
            instances = " OR ".join(f'{C.INSTANCE_DIMENSION}="{h.instance_id}"' for h in self.hosts)
            schema = ",".join((C.NAMESPACE, *C.BENCH_DIMENSIONS))
            period = 3600

            def search(name: str) -> cw.MathExpression:
                short = name.removeprefix("bench_")
                return cw.MathExpression(
                    expression=(
                        f"SEARCH('{{{schema}}} MetricName=\"{name}\" ({instances})', "
                        f"'Maximum', {period})"
                    ),
                    label=f"{short} ${{PROP('Dim.InstanceId')}} @ ${{PROP('Dim.OfferedRate')}}/s",
                    period=cdk.Duration.seconds(period),
                )

            latency = [search(n) for n in C.BENCH_METRICS if n.endswith("_seconds")]
            other = [search(n) for n in C.BENCH_METRICS if not n.endswith("_seconds")]
            return [
                self._graph(
                    title,
                    latency,
                    other,
                    period=cdk.Duration.seconds(period),
                    left_y_axis=cw.YAxisProps(label="seconds", min=0),
                    left_annotations=[
                        cw.HorizontalAnnotation(value=self.slo_s[P99], label="p99 SLO")
                    ],
                )
            ]

        builders = {
            "Engine and stages up": engine_up,
            "Tick-to-order latency": tick_to_order,
            "Market data and order rates": rates,
            "Rejects by reason": rejects,
            "Ring occupancy": occupancy,
            "Ring full events": ring_full,
            "Sequence gaps and drops": gaps,
            "CPU per core": cpu,
            "Memory": memory,
            "Hugepages free": hugepages,
            "ENA allowance exceeded": ena,
            "Host tuning status": tuning,
            "Status checks": status,
            "Disk used": disk,
            "Benchmark results": bench,
        }
        missing = set(catalog.WIDGET_TITLES) - set(builders)
        if missing:
            raise KeyError(
                f"catalog widgets without a builder in infra/monitoring/__init__.py: {missing}"
            )
        return builders


def cpus(cores: Sequence[int]) -> str:
    return ",".join(f"cpu{c}" for c in cores)
