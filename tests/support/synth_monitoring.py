"""Test helper: the Monitoring construct synthesized on a bare stack, and readers for what it made.

``synth`` puts ``infra.monitoring.Monitoring`` on a ``cdk.Stack()`` with real ``ec2.Instance``
hosts (one per given vCPU count, each with ``TuningProfile.for_vcpus``) in a small VPC and an SNS
topic, and returns the template. Templates are cached per argument set: jsii makes each
synthesis cost seconds.

``dashboard_body`` turns the dashboard's ``Fn::Join`` back into the JSON CloudWatch receives, with
``{"Ref": X}`` written as ``REF(X)`` and ``Fn::GetAtt`` as ``ATT(X.Attr)``; ``metric_refs`` lists
every metric the alarms and the dashboard name, wherever it appears.
"""

from __future__ import annotations

import functools
import json
import re
from typing import NamedTuple

RUNBOOK_BASE = "https://runbooks.example.com/lowlat"
SLO_US = (5.0, 20.0, 50.0)
# the profile keys of a host that trades with a real exchange (synth's ``exchange_hosts``)
EXCHANGE = {
    "exchange_market_data": "239.192.0.1:31001",
    "exchange_recovery": "10.50.0.10:31002",
    "exchange_orders": "10.50.0.11:31003",
    "exchange_cidrs": ("10.50.0.0/24",),
}


@functools.cache
def synth(
    vcpus: tuple[int, ...] = (4,),
    slo_us: tuple[float, float, float] = SLO_US,
    deployment: str = "prod",
    nag: bool = False,
    exchange_hosts: tuple[int, ...] = (),
) -> dict:
    """The template of a stack holding Monitoring for hosts of ``vcpus`` (``host1``, ...);
    the hosts numbered in ``exchange_hosts`` trade with a real exchange (``EXCHANGE``).

    With ``nag``, cdk-nag's AwsSolutions pack runs too and the template's ``Metadata`` key
    ``"nag"`` maps construct paths to their findings (``[(rule id, level), ...]``).
    """
    import aws_cdk as cdk
    from aws_cdk import assertions
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_sns as sns

    from contracts.profile import TuningProfile
    from infra.monitoring import MonitoredHost, Monitoring

    app = cdk.App()
    stack = cdk.Stack(app, "MonitoringTest")
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        max_azs=1,
        nat_gateways=0,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
        ],
    )
    # AL2023 arm64 through its SSM parameter: no lookup, no hard-coded AMI id
    image = ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.ARM_64)
    hosts = []
    for i, n in enumerate(vcpus, start=1):
        instance = ec2.Instance(
            stack,
            f"Host{i}",
            vpc=vpc,
            instance_type=ec2.InstanceType("c6g.xlarge"),
            machine_image=image,
        )
        exchange = EXCHANGE if i in exchange_hosts else {}
        hosts.append(MonitoredHost(f"host{i}", instance, TuningProfile.for_vcpus(n, **exchange)))
    topic = sns.Topic(stack, "Alarms")
    Monitoring(
        stack,
        "Monitoring",
        deployment=deployment,
        hosts=hosts,
        slo_p50_us=slo_us[0],
        slo_p99_us=slo_us[1],
        slo_p999_us=slo_us[2],
        runbook_base_url=RUNBOOK_BASE,
        alarm_topic=topic,
    )
    findings: dict[str, list[tuple[str, str]]] = {}
    if nag:
        import cdk_nag

        cdk.Aspects.of(stack).add(cdk_nag.AwsSolutionsChecks(verbose=True))
        annotations = assertions.Annotations.from_stack(stack)
        for level, found in (
            ("error", annotations.find_error("*", assertions.Match.any_value())),
            ("warning", annotations.find_warning("*", assertions.Match.any_value())),
        ):
            for message in found:
                text = str(message.entry.data)
                rule = re.match(r"\s*([A-Za-z]+-[A-Za-z0-9]+)", text)
                findings.setdefault(message.id, []).append(
                    (rule.group(1) if rule else text[:80], level)
                )
    template = assertions.Template.from_stack(stack).to_json()
    template.setdefault("Metadata", {})["nag"] = findings
    return template


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def alarms(template: dict) -> dict[str, dict]:
    """Logical id -> Properties of every alarm."""
    return {k: v["Properties"] for k, v in resources(template, "AWS::CloudWatch::Alarm").items()}


def render(value) -> str:
    """A string value of the template with its intrinsic functions as placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"REF({value['Ref']})"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"ATT({'.'.join(value['Fn::GetAtt'])})"
    raise AssertionError(f"cannot render {value!r}")


def dashboard_body(template: dict) -> dict:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    return json.loads(render(dashboard["Properties"]["DashboardBody"]))


def dashboard_name(template: dict) -> str:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    return dashboard["Properties"]["DashboardName"]


class MetricRef(NamedTuple):
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]  # sorted (name, value) pairs
    where: str  # alarm logical id or widget title


_SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s*MetricName=\"([^\"]+)\"")


def search_refs(expression: str, where: str) -> list[MetricRef]:
    """The metrics a SEARCH expression asks for: its schema's dimension names, no values."""
    refs = []
    for schema, name in _SEARCH.findall(expression):
        namespace, *dims = [part.strip() for part in schema.split(",")]
        refs.append(MetricRef(namespace, name, tuple((d, "*") for d in sorted(dims)), where))
    return refs


def _dims(pairs) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs))


def alarm_metric_refs(template: dict) -> list[MetricRef]:
    refs = []
    for logical, props in alarms(template).items():
        if "MetricName" in props:
            dims = _dims((d["Name"], render(d["Value"])) for d in props.get("Dimensions", []))
            refs.append(MetricRef(props["Namespace"], props["MetricName"], dims, logical))
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dims = _dims((d["Name"], render(d["Value"])) for d in metric.get("Dimensions", []))
                refs.append(MetricRef(metric["Namespace"], metric["MetricName"], dims, logical))
    return refs


def graph_widgets(body: dict) -> list[dict]:
    return [w for w in body["widgets"] if w["type"] == "metric"]


def dashboard_metric_refs(body: dict) -> list[MetricRef]:
    refs = []
    for widget in graph_widgets(body):
        title = widget["properties"]["title"]
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):  # [{"expression": ...}]
                refs += search_refs(row[0]["expression"], title)
                continue
            values = [v for v in row if not isinstance(v, dict)]
            namespace, name, *flat = values
            if namespace == "." or name == ".":
                raise AssertionError(f"{title}: shorthand metric row {row} not understood")
            dims = _dims(zip(flat[::2], flat[1::2], strict=True))
            refs.append(MetricRef(namespace, name, dims, title))
    return refs


def metric_refs(template: dict) -> list[MetricRef]:
    """Every metric the alarms and the dashboard of ``template`` read."""
    return alarm_metric_refs(template) + dashboard_metric_refs(dashboard_body(template))


def math_expressions(props: dict) -> list[str]:
    return [q["Expression"] for q in props.get("Metrics", []) if "Expression" in q]


def math_metric_dims(props: dict) -> dict[str, dict[str, str]]:
    """Id -> dimensions of each MetricStat query of an alarm."""
    return {
        q["Id"]: {
            d["Name"]: render(d["Value"]) for d in q["MetricStat"]["Metric"].get("Dimensions", [])
        }
        for q in props.get("Metrics", [])
        if "MetricStat" in q
    }
