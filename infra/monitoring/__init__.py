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
  one row per catalog ``Widget`` in catalog order.

The parts, one concern each:

- ``names``: the metric names the alarms and widgets read, bound once from
  ``contracts.metric_names`` and ``ami.cloudwatch``, and the names of what is created here;
- ``metrics``: ``MonitoredHost``, and ``Watch`` (the hosts, the SLOs and the factory of their
  metrics and math expressions), which every rule and widget function is given;
- ``alarms``: the thresholds and one rule function per catalog alarm (``alarms.RULES``);
- ``dashboard``: one widget function per catalog widget (``dashboard.WIDGETS``);
- this module: the construct, which turns rules into CloudWatch alarms and rows into a dashboard;
  the names other code reads from ``infra.monitoring`` are re-exported here (``__all__``).

Light enough for ``cdk synth``: aws_cdk, the catalog and the data modules of ``ami``/``service``
(numpy, prometheus_client); never numba.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts import alarms as catalog
from infra.monitoring.alarms import (
    HOUSEKEEPING_ACTIVE_PERCENT,
    ISOLATED_IDLE_PERCENT,
    MATH_ALARM_METRICS_MAX,
    REJECTS_PERCENT,
    Rule,
    hugepages_floor,
    rules,
)
from infra.monitoring.dashboard import alarm_status, header, widgets
from infra.monitoring.metrics import MonitoredHost, Watch
from infra.monitoring.names import (
    DISK_USED_PERCENT,
    EC2_NAMESPACE,
    ENA_ALLOWANCE,
    HOST_CHECKS_FAILED,
    HOST_TUNED,
    HUGEPAGES_FREE,
    HUGEPAGES_RESERVED,
    MD_PROCESSED,
    P50,
    P99,
    P999,
    RING_FULL,
    STATUS_CHECK_INSTANCE,
    STATUS_CHECK_SYSTEM,
    TICK_TO_ORDER,
    UP,
    alarm_name,
    dashboard_name,
    polled_cores,
    quantile_value,
    runbook_url,
)

__all__ = [
    "DISK_USED_PERCENT",
    "EC2_NAMESPACE",
    "ENA_ALLOWANCE",
    "HOST_CHECKS_FAILED",
    "HOST_TUNED",
    "HOUSEKEEPING_ACTIVE_PERCENT",
    "HUGEPAGES_FREE",
    "HUGEPAGES_RESERVED",
    "ISOLATED_IDLE_PERCENT",
    "MATH_ALARM_METRICS_MAX",
    "MD_PROCESSED",
    "REJECTS_PERCENT",
    "RING_FULL",
    "STATUS_CHECK_INSTANCE",
    "STATUS_CHECK_SYSTEM",
    "TICK_TO_ORDER",
    "UP",
    "MonitoredHost",
    "Monitoring",
    "alarm_name",
    "dashboard_name",
    "hugepages_floor",
    "polled_cores",
    "quantile_value",
    "runbook_url",
]


class Monitoring(Construct):
    """The dashboard and alarms watching ``hosts`` (see the module docstring).

    Attributes: ``dashboard``, ``dashboard_name`` (str), ``alarms`` (every alarm, in catalog
    order per host).
    """

    def __init__(  # noqa: PLR0913 -- a construct's (scope, id) and its props, by keyword
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
        # one factory for alarms and widgets: math ids stay unique across the construct
        watch = Watch(hosts, self.slo_s)

        self.alarms: list[cw.Alarm] = []
        topic_action = cw_actions.SnsAction(alarm_topic)
        for host in hosts:
            for entry in catalog.ALARMS:
                for rule in rules(entry.name, watch, host):
                    self.alarms.append(self._alarm(entry, host, rule, topic_action))

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.dashboard_name,
            default_interval=cdk.Duration.hours(3),
        )
        self.dashboard.add_widgets(header(watch, deployment, self.runbook_base_url))
        self.dashboard.add_widgets(alarm_status(self.alarms, deployment))
        for widget in catalog.WIDGETS:
            self.dashboard.add_widgets(*widgets(widget.title, watch))

    def _alarm(
        self, entry: catalog.Alarm, host: MonitoredHost, rule: Rule, topic: cw.IAlarmAction
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
