"""infra.monitoring: one alarm per catalog kind and host, one dashboard per deployment.

Assertions on the synthesized template (aws_cdk.assertions on a bare stack), with hosts of 4 and 8
vCPUs so the per-core rules are checked against two profiles; cdk-nag and cfn-lint judge it too.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import alarms as catalog
from contracts.profile import TuningProfile
from infra import monitoring as mon
from infra.monitoring import alarms as mon_alarms
from infra.monitoring import dashboard as mon_dashboard
from tests.support.synth_monitoring import (
    RUNBOOK_BASE,
    SLO_US,
    alarms,
    dashboard_body,
    dashboard_name,
    graph_widgets,
    math_expressions,
    math_metric_dims,
    render,
    synth,
)

TWO_HOSTS = (4, 8)  # host1: c6g.xlarge profile, host2: c6g.2xlarge profile
STATUS = f"{catalog.ALARM_PREFIX}StatusCheckFailed"
# the kinds with a second alarm per host, and its variant
SECOND_ALARMS = {STATUS: "instance", f"{catalog.ALARM_PREFIX}FeedGapRateHigh": "GivenUp"}
# the kinds only a host that trades with a real exchange has
EXCHANGE_SESSION = f"{catalog.ALARM_PREFIX}ExchangeSessionDown"
EXCHANGE_ONLY = {EXCHANGE_SESSION}
EXCHANGE_HOSTS = (2,)  # in ``two``: host2 trades with an exchange, host1 is simulated


@pytest.fixture(scope="module")
def one() -> dict:
    return synth((4,))


@pytest.fixture(scope="module")
def two() -> dict:
    return synth(TWO_HOSTS, exchange_hosts=EXCHANGE_HOSTS)


def kind_of(alarm_name: str) -> str:
    """The catalog kind an AlarmName starts with (the longest match: names share prefixes)."""
    kinds = [k for k in catalog.ALARM_NAMES if alarm_name.startswith(f"{k}-")]
    assert kinds, f"{alarm_name} starts with no catalog alarm name"
    return max(kinds, key=len)


def by_name(template: dict) -> dict[str, dict]:
    return {props["AlarmName"]: props for props in alarms(template).values()}


def host_alarm(template: dict, kind: str, host: str, variant: str = "") -> dict:
    return by_name(template)[mon.alarm_name(kind, "prod", host, variant)]


# ------------------------------------------------------------------------------ alarms


@pytest.mark.parametrize(
    ("vcpus", "exchange_hosts"), [((4,), ()), ((4,), (1,)), (TWO_HOSTS, EXCHANGE_HOSTS)]
)
def test_one_alarm_per_kind_and_host_plus_the_second_ones(vcpus, exchange_hosts):
    template = synth(vcpus, exchange_hosts=exchange_hosts)
    names = sorted(by_name(template))
    hosts = [f"host{i}" for i in range(1, len(vcpus) + 1)]
    trading = [f"host{i}" for i in exchange_hosts]
    expected = sorted(
        [
            mon.alarm_name(a.name, "prod", h)
            for a in catalog.ALARMS
            for h in hosts
            if a.name not in EXCHANGE_ONLY or h in trading
        ]
        + [mon.alarm_name(k, "prod", h, v) for k, v in SECOND_ALARMS.items() for h in hosts]
    )
    assert names == expected
    per_host = len(catalog.ALARMS) - len(EXCHANGE_ONLY) + len(SECOND_ALARMS)
    assert len(alarms(template)) == per_host * len(vcpus) + len(EXCHANGE_ONLY) * len(trading)


def test_exchange_session_down_pages_while_the_engine_is_up_and_the_session_is_not(two):
    props = host_alarm(two, EXCHANGE_SESSION, "host2")
    assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 1)
    assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] == 2
    # the engine down or warming up is LowlatEngineDown's page: no data is no breach here
    assert props["TreatMissingData"] == "notBreaching"
    (expression,) = [m for m in props["Metrics"] if "Expression" in m]
    assert expression["ReturnData"] is True
    watched = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    names = {stat["Metric"]["MetricName"]: (i, stat["Stat"]) for i, stat in watched.items()}
    up, up_stat = names["trading_up"]
    connected, connected_stat = names["trading_exchange_connected"]
    assert (up_stat, connected_stat) == ("Minimum", "Maximum")  # the whole minute down
    assert expression["Expression"] == f"IF(FILL({up}, 0) >= 1, FILL({connected}, 1), 1)"
    for stat in watched.values():
        (dimension,) = stat["Metric"]["Dimensions"]
        assert dimension["Value"] == {"Ref": next(iter(_instances(two)["host2"]))}
    assert "10.50.0.11:31003" in props["AlarmDescription"]  # the order entry it lost


def _instances(template: dict) -> dict[str, set[str]]:
    """host label -> the logical id of its instance."""
    ids = sorted(k for k, v in template["Resources"].items() if v["Type"] == "AWS::EC2::Instance")
    return {f"host{i}": {logical} for i, logical in enumerate(ids, start=1)}


def test_no_exchange_no_session_alarm_and_a_note_on_the_dashboard(one):
    assert not [n for n in by_name(one) if n.startswith(EXCHANGE_SESSION)]
    notes = [w for w in dashboard_body(one)["widgets"] if w["type"] == "text"]
    assert any("### Exchange session" in w["properties"]["markdown"] for w in notes)


def test_alarm_names_are_camel_case_with_the_shared_prefix(two):
    for name in by_name(two):
        kind = kind_of(name)
        assert re.fullmatch(rf"{catalog.ALARM_PREFIX}[A-Z][A-Za-z0-9]+", kind)
        assert name.startswith(catalog.ALARM_PREFIX)


def test_description_states_severity_and_ends_with_the_runbook_url(two):
    for name, props in by_name(two).items():
        entry = catalog.alarm(kind_of(name))
        description = props["AlarmDescription"]
        assert description.startswith(f"[{entry.severity}] {entry.summary}"), name
        assert description.endswith(f"Runbook: {RUNBOOK_BASE}/runbooks/{entry.name}.md"), name
        assert f"Severity {entry.severity}" in description
        assert len(description) <= 1024  # CloudFormation's limit
        tags = {t["Key"]: t["Value"] for t in props["Tags"]}
        assert tags == {"Severity": entry.severity, "AlarmKind": entry.name}


def test_runbook_url_tolerates_a_trailing_slash():
    assert (
        mon.runbook_url("https://x.example/docs/", f"{catalog.ALARM_PREFIX}EngineDown")
        == f"https://x.example/docs/runbooks/{catalog.ALARM_PREFIX}EngineDown.md"
    )


def test_treat_missing_data_follows_the_catalog(two):
    for name, props in by_name(two).items():
        entry = catalog.alarm(kind_of(name))
        expected = "breaching" if entry.missing_data_breaches else "notBreaching"
        assert props["TreatMissingData"] == expected, name


def test_every_alarm_notifies_the_topic_on_alarm_and_ok(two):
    (topic,) = [k for k, v in two["Resources"].items() if v["Type"] == "AWS::SNS::Topic"]
    for name, props in by_name(two).items():
        assert {"Ref": topic} in props["AlarmActions"], name
        assert props["OKActions"] == [{"Ref": topic}], name


def test_only_the_system_status_check_recovers_the_instance(two):
    for name, props in by_name(two).items():
        recovers = [a for a in props["AlarmActions"] if render(a).endswith(":ec2:recover")]
        if kind_of(name) == STATUS and not name.endswith("-instance"):
            assert len(recovers) == 1, name
            # EC2 accepts the recover action only on an alarm over the system check metric
            assert props["Namespace"] == "AWS/EC2"
            assert props["MetricName"] == "StatusCheckFailed_System"
            assert props["Threshold"] == 1
            assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        else:
            assert not recovers, name
    instance = host_alarm(two, STATUS, "host2", "instance")
    assert instance["MetricName"] == "StatusCheckFailed_Instance"


def test_status_alarms_watch_their_own_instance(two):
    for host, logical in (("host1", "Host1"), ("host2", "Host2")):
        props = host_alarm(two, STATUS, host)
        (dim,) = props["Dimensions"]
        assert dim["Name"] == "InstanceId"
        assert render(dim["Value"]).startswith(f"REF({logical}")


@pytest.mark.parametrize("slo_us", [SLO_US, (10.0, 80.0, 200.0)])
def test_tick_to_order_threshold_follows_the_p99_slo(slo_us):
    template = synth((4,), slo_us)
    props = host_alarm(template, f"{catalog.ALARM_PREFIX}TickToOrderP99High", "host1")
    assert props["Threshold"] == pytest.approx(slo_us[1] * 1e-6)
    assert props["MetricName"] == mon.TICK_TO_ORDER
    dims = {d["Name"]: render(d["Value"]) for d in props["Dimensions"]}
    assert dims["quantile"] == "0.99"
    assert (props["DatapointsToAlarm"], props["EvaluationPeriods"]) == (3, 5)
    assert f"{slo_us[1]:g} us" in props["AlarmDescription"]
    # the dashboard's latency widget draws every SLO as a horizontal line, in seconds
    (widget,) = [
        w
        for w in graph_widgets(dashboard_body(template))
        if w["properties"]["title"] == "Tick-to-order latency"
    ]
    marks = sorted(a["value"] for a in widget["properties"]["annotations"]["horizontal"])
    assert marks == pytest.approx(sorted(s * 1e-6 for s in slo_us))


def test_engine_down_and_stalled_market_data(one):
    down = host_alarm(one, f"{catalog.ALARM_PREFIX}EngineDown", "host1")
    assert (down["MetricName"], down["Statistic"], down["Threshold"]) == (mon.UP, "Minimum", 1)
    assert down["ComparisonOperator"] == "LessThanThreshold"
    assert (down["DatapointsToAlarm"], down["EvaluationPeriods"], down["Period"]) == (2, 2, 60)
    stalled = host_alarm(one, f"{catalog.ALARM_PREFIX}MarketDataStalled", "host1")
    assert (stalled["MetricName"], stalled["Statistic"]) == (mon.MD_PROCESSED, "Sum")
    assert stalled["ComparisonOperator"] == "LessThanOrEqualToThreshold"
    assert stalled["Threshold"] == 0
    assert (stalled["DatapointsToAlarm"], stalled["EvaluationPeriods"]) == (3, 3)


def _expression_ids(expression: str) -> set[str]:
    return set(re.findall(r"\b([a-z]+\d+)\b", expression))


@pytest.mark.parametrize(
    ("host", "polled", "housekeeping"),
    [("host1", ["cpu1", "cpu2", "cpu3"], ["cpu0"]), ("host2", ["cpu1", "cpu2", "cpu3"], ["cpu0"])],
)
def test_core_alarms_watch_the_right_cores(two, host, polled, housekeeping):
    idle = host_alarm(two, f"{catalog.ALARM_PREFIX}IsolatedCoreIdle", host)
    (expression,) = math_expressions(idle)
    assert expression.startswith("MAX([")
    dims = math_metric_dims(idle)
    assert _expression_ids(expression) == set(dims)
    assert sorted(d["cpu"] for d in dims.values()) == polled
    assert idle["Threshold"] == mon.ISOLATED_IDLE_PERCENT
    assert idle["ComparisonOperator"] == "GreaterThanThreshold"
    busy = host_alarm(two, f"{catalog.ALARM_PREFIX}HousekeepingCpuHigh", host)
    (expression,) = math_expressions(busy)
    assert expression.startswith("MAX([")
    assert sorted(d["cpu"] for d in math_metric_dims(busy).values()) == housekeeping
    assert busy["Threshold"] == mon.HOUSEKEEPING_ACTIVE_PERCENT


def test_core_sets_follow_the_profile():
    # 8 vCPUs: cpu4-7 are isolated but carry no stage, so they idle by design
    eight = TuningProfile.for_vcpus(8)
    assert eight.isolated == (1, 2, 3, 4, 5, 6, 7)
    assert mon.polled_cores(eight) == (1, 2, 3)
    sixteen = TuningProfile.for_vcpus(16)
    assert (sixteen.housekeeping, mon.polled_cores(sixteen)) == ((0, 1), (2, 3, 4))
    assert mon.polled_cores(TuningProfile.for_vcpus(2)) == (1,)  # stages fused on one core
    three = TuningProfile(vcpus=3, housekeeping=(0,), isolated=(1, 2))
    assert mon.polled_cores(three) == (1, 2)


def test_math_alarms_stay_within_cloudwatch_limits(two):
    for name, props in by_name(two).items():
        if "Metrics" not in props:
            continue
        stats = [q for q in props["Metrics"] if "MetricStat" in q]
        returned = [q for q in props["Metrics"] if q.get("ReturnData", True)]
        assert len(stats) <= mon.MATH_ALARM_METRICS_MAX, name
        assert len(returned) == 1, name
        assert "SEARCH" not in json.dumps(props)


def test_event_alarms_sum_every_counter(one):
    ring = host_alarm(one, f"{catalog.ALARM_PREFIX}RingFull", "host1")
    (expression,) = math_expressions(ring)
    assert expression.startswith("SUM([")
    names = sorted(q["MetricStat"]["Metric"]["MetricName"] for q in ring["Metrics"][1:])
    assert names == sorted(mon.RING_FULL.values())
    ena = host_alarm(one, f"{catalog.ALARM_PREFIX}EnaAllowanceExceeded", "host1")
    # ethtool's counters are cumulative: the alarm is on how much their sum grew per period
    diff, total = (q["Expression"] for q in ena["Metrics"] if "Expression" in q)
    assert diff.startswith("DIFF(") and total.startswith("SUM([")
    stats = [q["MetricStat"] for q in ena["Metrics"] if "MetricStat" in q]
    assert sorted(q["Metric"]["MetricName"] for q in stats) == sorted(mon.ENA_ALLOWANCE)
    assert {q["Stat"] for q in stats} == {"Maximum"} and len(stats) == 5
    for props in (ring, ena):
        assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_rejects_alarm_is_a_share_of_all_orders(one):
    props = host_alarm(one, f"{catalog.ALARM_PREFIX}RejectsHigh", "host1")
    (expression,) = math_expressions(props)
    queries = [q for q in props["Metrics"] if "MetricStat" in q]
    reasons = sorted(
        d["Value"]
        for q in queries
        for d in q["MetricStat"]["Metric"]["Dimensions"]
        if d["Name"] == "reason"
    )
    from contracts.stats_layout import REJECT_REASONS

    assert reasons == sorted(REJECT_REASONS)
    assert _expression_ids(expression) == {q["Id"] for q in queries}
    assert props["Threshold"] == mon.REJECTS_PERCENT


def test_hugepages_floor_follows_the_profile(one):
    props = host_alarm(one, f"{catalog.ALARM_PREFIX}HugepagesLow", "host1")
    assert props["MetricName"] == mon.HUGEPAGES_FREE
    assert props["Threshold"] == 52  # 10 % of the default 512 pages, rounded up
    assert mon.hugepages_floor(TuningProfile.for_vcpus(4, hugepages=1000)) == 100


def test_host_tuning_lost_and_disk(one):
    tuned = host_alarm(one, f"{catalog.ALARM_PREFIX}HostTuningLost", "host1")
    assert (tuned["MetricName"], tuned["Threshold"]) == (mon.HOST_TUNED, 1)
    assert tuned["ComparisonOperator"] == "LessThanThreshold"
    disk = host_alarm(one, f"{catalog.ALARM_PREFIX}DiskSpaceLow", "host1")
    assert (disk["MetricName"], disk["Threshold"]) == (mon.DISK_USED_PERCENT, 85)


# ------------------------------------------------------------------------------ dashboard


def test_one_dashboard_named_after_the_deployment(two):
    assert dashboard_name(two) == "prod-lowlat"
    assert mon.dashboard_name("lowlat") == "lowlat"
    assert mon.dashboard_name("Lowlat-eu_1") == "Lowlat-eu_1"
    assert mon.dashboard_name("staging") == "staging-lowlat"
    assert len([r for r in two["Resources"].values() if r["Type"].endswith("Dashboard")]) == 1


def test_dashboard_shows_every_catalog_widget_in_order(two):
    titles = [w["properties"].get("title", "") for w in dashboard_body(two)["widgets"]]
    first = []
    for widget in catalog.WIDGETS:
        found = [i for i, t in enumerate(titles) if t.startswith(widget.title)]
        assert found, f"no dashboard widget titled {widget.title!r}"
        assert widget.title in titles, f"no fleet widget titled exactly {widget.title!r}"
        first.append(found[0])
    assert first == sorted(first)
    # the per-core detail of each host
    for host in ("host1", "host2"):
        assert f"CPU per core — {host}" in titles


def test_every_host_has_its_lines(two):
    for widget in graph_widgets(dashboard_body(two)):
        props = widget["properties"]
        if props["title"] in ("Benchmark results",) or " — " in props["title"]:
            continue
        if props["title"] == "Exchange session":  # only the host that trades with one
            labels = json.dumps(props["metrics"])
            assert '"label": "host2 session up"' in labels and '"host1 ' not in labels
            continue
        labels = json.dumps(props["metrics"])
        for host in ("host1", "host2"):
            assert f'"label": "{host} ' in labels, (props["title"], host)


def test_cpu_detail_splits_isolated_and_housekeeping(two):
    body = dashboard_body(two)
    (widget,) = [
        w for w in graph_widgets(body) if w["properties"]["title"] == "CPU per core — host2"
    ]
    labels = [row[-1]["label"] for row in widget["properties"]["metrics"]]
    assert labels[:3] == [
        "cpu1 isolated (feed)",
        "cpu2 isolated (engine)",
        "cpu3 isolated (gateway)",
    ]
    assert [label for label in labels if "spare" in label] == [
        f"cpu{c} isolated (spare)" for c in (4, 5, 6, 7)
    ]
    assert labels[-1] == "cpu0 housekeeping"


def test_bench_widget_reads_this_deployments_instances(two):
    body = dashboard_body(two)
    (widget,) = [w for w in graph_widgets(body) if w["properties"]["title"] == "Benchmark results"]
    for row in widget["properties"]["metrics"]:
        expression = row[0]["expression"]
        assert 'InstanceId="REF(Host1' in expression and 'InstanceId="REF(Host2' in expression


def test_alarm_status_widget_lists_every_alarm(two):
    (widget,) = [w for w in dashboard_body(two)["widgets"] if w["type"] == "alarm"]
    assert len(widget["properties"]["alarms"]) == len(alarms(two))


# ------------------------------------------------------------------------------ validation


def _monitoring(**overrides):
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_sns as sns

    stack = cdk.Stack()
    vpc = ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0)
    instance = ec2.Instance(
        stack,
        "H",
        vpc=vpc,
        instance_type=ec2.InstanceType("c6g.xlarge"),
        machine_image=ec2.MachineImage.latest_amazon_linux2023(
            cpu_type=ec2.AmazonLinuxCpuType.ARM_64
        ),
    )
    host = mon.MonitoredHost("h", instance, TuningProfile.for_vcpus(4))
    assert host.instance_id == instance.instance_id
    props = dict(
        deployment="prod",
        hosts=[host],
        slo_p50_us=5,
        slo_p99_us=20,
        slo_p999_us=50,
        runbook_base_url=RUNBOOK_BASE,
        alarm_topic=sns.Topic(stack, "T"),
    )
    props.update(overrides)
    if callable(props["hosts"]):
        props["hosts"] = props["hosts"](host)
    return mon.Monitoring(stack, "Monitoring", **props)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"deployment": "prod eu"}, "deployment = 'prod eu'"),
        ({"hosts": []}, "at least one host"),
        ({"hosts": lambda h: [h, h]}, "repeat"),
        ({"slo_p99_us": 100}, "p50 <= p99 <= p99.9"),
        ({"slo_p50_us": 0}, "0 < p50"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _monitoring(**overrides)


def test_attributes(two):
    m = _monitoring()
    assert m.dashboard_name == "prod-lowlat"
    # its one host trades with no exchange: no session alarm
    assert len(m.alarms) == len(catalog.ALARMS) - len(EXCHANGE_ONLY) + len(SECOND_ALARMS)
    assert m.dashboard is not None


# ------------------------------------------------------------------------------ the tables


def _snake(words: str) -> str:
    """``TickToOrderP99High`` -> ``tick_to_order_p99_high``; ``Tick-to-order latency`` ->
    ``tick_to_order_latency``: the function name a catalog alarm or widget gets."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|\W+", "_", words).lower()


def _functions_taking(module, parameters: tuple[str, ...]) -> set:
    """The functions ``module`` defines whose parameters are named ``parameters``."""
    return {
        f
        for f in vars(module).values()
        if inspect.isfunction(f)
        and f.__module__ == module.__name__
        and tuple(inspect.signature(f).parameters) == parameters
    }


@pytest.mark.parametrize(
    ("module", "table", "entries", "function_name", "parameters"),
    [
        (
            mon_alarms,
            mon_alarms.RULES,
            catalog.ALARM_NAMES,
            lambda kind: _snake(kind.removeprefix(catalog.ALARM_PREFIX)),
            ("w", "host"),
        ),
        (mon_dashboard, mon_dashboard.WIDGETS, catalog.WIDGET_TITLES, _snake, ("w", "title")),
    ],
    ids=["alarms", "widgets"],
)
def test_one_function_per_catalog_entry_and_back(module, table, entries, function_name, parameters):
    """RULES has one function per catalog alarm, WIDGETS one per catalog widget, each named
    after its entry, and the module defines no other function of that signature."""
    assert sorted(table) == sorted(entries)
    assert len(table) == len(entries)
    assert len(set(table.values())) == len(table)
    for entry, function in table.items():
        assert function.__name__ == function_name(entry), entry
    assert set(table.values()) == _functions_taking(module, parameters)


# ------------------------------------------------------------------------------ quality gates


def test_cdk_nag_finds_nothing_in_monitoring():
    template = synth(TWO_HOSTS, nag=True)
    ours = {
        path: found
        for path, found in template["Metadata"]["nag"].items()
        if path.startswith("/MonitoringTest/Monitoring/")
    }
    assert ours == {}
    # the pack did run: the bare test stack's own VPC, instances and topic have findings
    assert template["Metadata"]["nag"], "cdk-nag reported nothing at all: did it run?"


def test_cfn_lint_finds_nothing_in_monitoring(two, tmp_path):
    cfn_lint = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    path = tmp_path / "monitoring.json"
    template = dict(two)
    template.pop("Metadata", None)
    path.write_text(json.dumps(template))
    result = subprocess.run(
        [cfn_lint, "--format", "parseable", str(path)], capture_output=True, text=True
    )
    # the whole test stack (VPC, instances, topic, Monitoring): no error, warning or info
    assert result.returncode == 0, result.stdout + result.stderr


def test_description_names_the_widget_to_open(two):
    for name, props in by_name(two).items():
        entry = catalog.alarm(kind_of(name))
        assert f'Dashboard prod-lowlat, widget "{entry.widget}". ' in props["AlarmDescription"]
        assert entry.widget in catalog.WIDGET_TITLES


# ------------------------------------------------------------------------------ snapshot

SNAPSHOT = Path(__file__).parent / "snapshots" / "monitoring_two_hosts.json"


def test_snapshot(two):
    """Safety net over the assertions above: any change to what Monitoring synthesizes shows
    up here. After a deliberate change: UPDATE_SNAPSHOTS=1 pytest tests/infra/test_monitoring.py
    """
    ours = {k: v for k, v in two["Resources"].items() if k.startswith("Monitoring")}
    text = json.dumps(ours, indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
        if os.environ.get("UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"wrote a new snapshot {SNAPSHOT}: check it in and run again")
    assert json.loads(text) == json.loads(SNAPSHOT.read_text())
