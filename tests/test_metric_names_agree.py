"""The metric names the dashboard and alarms read are the ones the hosts publish.

Every metric the synthesized Monitoring construct names (alarms and dashboard widgets, SEARCH
expressions included) is checked against the two places that decide what reaches CloudWatch:

- ``trading_*``: a family the telemetry API exports on /metrics (``contracts.metric_names``)
  AND one the CloudWatch agent's EMF processor is told to publish
  (``ami.cloudwatch.metric_declarations``), with exactly that declaration's dimensions:
  ``instance_id`` plus the family's labels.
- host metrics: a measurement the agent config (``ami.cloudwatch.agent_config``) collects, named
  as the agent names it, with one of the config's aggregation dimension sets.
- ``bench_*``: exactly ``ami.cloudwatch.BENCH_METRICS``, by ``BENCH_DIMENSIONS``.
- ``AWS/EC2``: only the two status check metrics.
"""

from __future__ import annotations

import re

import pytest

from ami import cloudwatch as C
from contracts import metric_names as N
from contracts import stats_layout as L
from contracts.profile import TuningProfile
from contracts.stages import STAGES
from infra import monitoring as mon
from tests.support.names import EXPORTED_NAMES
from tests.support.synth_monitoring import metric_refs, synth

PROFILE = TuningProfile.for_vcpus(8)


@pytest.fixture(scope="module")
def refs():
    return metric_refs(synth((4, 8)))


def lowlat(refs, prefix: str = "") -> list:
    return [r for r in refs if r.namespace == C.NAMESPACE and r.name.startswith(prefix)]


def declared() -> dict[str, set[str]]:
    """Metric name -> dimension names, as the agent's EMF processor publishes it."""
    result: dict[str, set[str]] = {}
    for declaration in C.agent_config(PROFILE)["logs"]["metrics_collected"]["prometheus"][
        "emf_processor"
    ]["metric_declaration"]:
        (dims,) = declaration["dimensions"]
        for selector in declaration["metric_selectors"]:
            name = re.fullmatch(r"\^(.*)\$", selector).group(1).replace("\\", "")
            result[name] = set(dims)
    return result


def collected_host_metrics() -> set[str]:
    """The CloudWatch names of what the agent config's ``metrics`` section collects."""
    collected = C.agent_config(PROFILE)["metrics"]["metrics_collected"]
    names = set()
    for plugin in ("cpu", "mem", "swap", "disk"):
        for m in collected[plugin]["measurement"]:
            names.add(m if m.startswith(f"{plugin}_") else f"{plugin}_{m}")
    names |= {f"ethtool_{m}" for m in collected["ethtool"]["metrics_include"]}
    return names


def test_the_template_reads_all_four_kinds_of_metric(refs):
    assert lowlat(refs, N.PREFIX) and lowlat(refs, "bench_")
    assert [r for r in refs if r.namespace == mon.EC2_NAMESPACE]
    assert [r for r in lowlat(refs) if r.name.startswith("cpu_")]


def test_every_trading_metric_is_exported_and_declared_to_the_agent(refs):
    exported = set(EXPORTED_NAMES)
    emf = declared()
    problems = set()
    for ref in lowlat(refs, N.PREFIX):
        if ref.name not in exported:
            problems.add(
                f"{ref.name} ({ref.where}): service.telemetry.exposition exports no such family"
            )
        elif ref.name not in emf:
            problems.add(
                f"{ref.name} ({ref.where}): not in ami.cloudwatch.DASHBOARD_FAMILIES, "
                "so the agent never publishes it"
            )
        elif {d for d, _ in ref.dimensions} != emf[ref.name]:
            problems.add(
                f"{ref.name} ({ref.where}): dimensions {sorted(d for d, _ in ref.dimensions)}, "
                f"the agent publishes {sorted(emf[ref.name])}"
            )
    assert not problems, "\n".join(sorted(problems))


@pytest.mark.parametrize(
    "name", [mon.HOST_TUNED, mon.HOST_CHECKS_FAILED, mon.HUGEPAGES_FREE, mon.HUGEPAGES_RESERVED]
)
def test_host_state_gauges_exist(name):
    """The telemetry API's host gauges behind HostTuningLost and HugepagesLow."""
    spec = {s.name: s for s in N.FAMILIES}.get(name)
    assert spec is not None, f"service.telemetry.exposition exports no {name}"
    assert spec.kind == "gauge"
    assert name in C.dashboard_metric_names(), f"{name} is not in ami.cloudwatch.DASHBOARD_FAMILIES"


def test_label_values_are_the_ones_metrics_exposes(refs):

    allowed = {
        "quantile": {mon.quantile_value(q) for q in N.RECENT_QUANTILES},
        "reason": set(L.REJECT_REASONS),
        "stage": set(STAGES),
    }
    for ref in lowlat(refs, N.PREFIX):
        for dim, value in ref.dimensions:
            if dim in allowed:
                assert value in allowed[dim], (ref.name, dim, value)
            else:
                assert dim == C.INSTANCE_LABEL and value.startswith("REF(Host"), ref


def test_every_host_metric_is_one_the_agent_collects(refs):
    collected = collected_host_metrics()
    aggregated = {
        tuple(sorted(d)) for d in C.agent_config(PROFILE)["metrics"]["aggregation_dimensions"]
    }
    assert aggregated == {tuple(sorted(d)) for d in C.AGGREGATION_DIMENSIONS}
    host = [r for r in lowlat(refs) if not r.name.startswith((N.PREFIX, "bench_"))]
    assert host
    for ref in host:
        assert ref.name in collected, f"{ref.name} ({ref.where}): the agent does not collect it"
        assert tuple(d for d, _ in ref.dimensions) in aggregated, ref
        cpu = dict(ref.dimensions).get("cpu")
        assert cpu is None or re.fullmatch(r"cpu\d+", cpu), ref


def test_bench_metrics_are_what_fab_bench_publishes(refs):
    bench = lowlat(refs, "bench_")
    assert {r.name for r in bench} == set(C.BENCH_METRICS)
    for ref in bench:
        assert tuple(d for d, _ in ref.dimensions) == tuple(sorted(C.BENCH_DIMENSIONS)), ref


def test_only_status_checks_come_from_ec2(refs):
    names = {r.name for r in refs if r.namespace == mon.EC2_NAMESPACE}
    assert names == {mon.STATUS_CHECK_SYSTEM, mon.STATUS_CHECK_INSTANCE}
    assert {r.namespace for r in refs} == {C.NAMESPACE, mon.EC2_NAMESPACE}
