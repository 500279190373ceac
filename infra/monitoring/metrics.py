"""What the alarm rules and the widgets build on: ``MonitoredHost``, one host to watch, and
``Watch``, the deployment's hosts and SLOs with the factory of every metric and math expression
of one Monitoring construct.

A metric carries the dimensions its source publishes it with (see ``names``): a /metrics family
``instance_id`` and its labels (``Watch.emf``), a host metric ``InstanceId`` and maybe ``cpu``
(``Watch.host``), an EC2 status check ``InstanceId`` (``Watch.ec2``).

Metric ids in one alarm's or widget's math must not repeat, so ``Watch`` numbers them for the
whole construct (``m1``, ``m2``, ...): one per construct, and the ids in the template follow the
order in which the alarms and then the widgets are built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2

from ami import cloudwatch as C
from contracts.profile import TuningProfile
from infra.monitoring.names import CPU_DIMENSION, EC2_NAMESPACE, family_label

MINUTE = cdk.Duration.minutes(1)


@dataclass(frozen=True)
class MonitoredHost:
    """One trading host: the label people call it by, the instance, and its tuning profile."""

    label: str
    instance: ec2.Instance
    profile: TuningProfile

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id


def _metric(
    namespace: str,
    name: str,
    dimensions: Mapping[str, str],
    statistic: str,
    period: cdk.Duration,
    label: str | None,
) -> cw.Metric:
    return cw.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period,
        label=label,
    )


class Watch:
    """What each alarm rule and widget function builds from: the deployment's ``hosts``, its
    tick-to-order SLOs in seconds by quantile (``slo_s``, keyed ``names.P50``, ``P99``, ``P999``),
    and the factory of their metrics and math expressions. The construct makes one, so the math
    ids stay unique across all its alarms and widgets."""

    def __init__(self, hosts: tuple[MonitoredHost, ...], slo_s: Mapping[float, float]) -> None:
        self.hosts = hosts
        self.slo_s = slo_s
        self._ids = 0

    def fresh_id(self, stem: str = "m") -> str:
        """A metric id no other expression of the construct uses."""
        self._ids += 1
        return f"{stem}{self._ids}"

    @staticmethod
    def emf(
        name: str,
        host: MonitoredHost,
        statistic: str,
        period: cdk.Duration = MINUTE,
        label: str | None = None,
        series: str | None = None,
    ) -> cw.Metric:
        """A /metrics family as the agent's EMF processor publishes it for ``host``; of a
        labelled family, the ``series`` whose one label (stage, reason, quantile) has that value."""
        dimensions = {C.INSTANCE_LABEL: host.instance_id}
        if series is not None:
            dimensions[family_label(name)] = series
        return _metric(C.NAMESPACE, name, dimensions, statistic, period, label)

    @staticmethod
    def host(
        name: str,
        host: MonitoredHost,
        statistic: str,
        period: cdk.Duration = MINUTE,
        label: str | None = None,
        cpu: int | None = None,
    ) -> cw.Metric:
        """A host metric of the agent, by its rolled-up dimensions (instance, and core)."""
        dimensions = {C.INSTANCE_DIMENSION: host.instance_id}
        if cpu is not None:
            dimensions[CPU_DIMENSION] = f"cpu{cpu}"
        return _metric(C.NAMESPACE, name, dimensions, statistic, period, label)

    @staticmethod
    def ec2(name: str, host: MonitoredHost, label: str | None = None) -> cw.Metric:
        """An EC2 status check of ``host`` (1 while failing), its per-minute Maximum."""
        dimensions = {C.INSTANCE_DIMENSION: host.instance_id}
        return _metric(EC2_NAMESPACE, name, dimensions, cw.Stats.MAXIMUM, MINUTE, label)

    def math(
        self, fn: str, metrics: Sequence[cw.IMetric], label: str, period: cdk.Duration
    ) -> cw.MathExpression:
        """``fn([m1, m2, ...])`` (MAX, MIN, SUM) over ``metrics``, missing points as 0 for SUM."""
        ids = {self.fresh_id(): metric for metric in metrics}
        terms = [f"FILL({k}, 0)" if fn == "SUM" else k for k in ids]
        return cw.MathExpression(
            expression=f"{fn}([{', '.join(terms)}])", using_metrics=ids, label=label, period=period
        )

    def per_core(
        self,
        fn: str,
        name: str,
        host: MonitoredHost,
        cores: Sequence[int],
        label: str,
        period: cdk.Duration = MINUTE,
    ) -> cw.MathExpression:
        """``fn`` (MIN, MAX) over host metric ``name`` of each of ``cores``, their Averages."""
        metrics = [self.host(name, host, cw.Stats.AVERAGE, period, cpu=c) for c in cores]
        return self.math(fn, metrics, label, period)

    def diff(self, metric: cw.IMetric, label: str, period: cdk.Duration) -> cw.MathExpression:
        """How much a cumulative counter grew in each period (ethtool's counters only grow)."""
        return self._of_one("DIFF({k})", metric, label, period)

    def rate(self, metric: cw.IMetric, label: str) -> cw.MathExpression:
        """Events per second of a delta counter (the period's Sum over its length)."""
        return self._of_one("{k} / PERIOD({k})", metric, label, MINUTE)

    def _of_one(
        self, expression: str, metric: cw.IMetric, label: str, period: cdk.Duration
    ) -> cw.MathExpression:
        """``expression`` with ``{k}`` standing for ``metric``'s fresh id."""
        k = self.fresh_id()
        return cw.MathExpression(
            expression=expression.format(k=k), using_metrics={k: metric}, label=label, period=period
        )
