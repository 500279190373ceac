"""``fab bench --publish``: the figures land in CloudWatch (moto's server mode on 127.0.0.1)
under exactly the namespace, names and dimensions the dashboard reads (ami/cloudwatch.py).

boto3 reaches moto through ``AWS_ENDPOINT_URL`` and dummy credentials in the environment,
as it would reach AWS: ``ops.publish`` has no test hook. The end-to-end ``fab bench
--publish`` run is in tests/test_fab_bench.py.
"""

from __future__ import annotations

import datetime as dt

import boto3
import pytest

from ami.cloudwatch import BENCH_DIMENSIONS, BENCH_METRICS, NAMESPACE
from ops import publish
from ops.hosts import OpsError
from tests.support.bench_docs import bench_doc


@pytest.fixture
def aws(moto_server, monkeypatch):
    moto_server.reset()
    for key, value in moto_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("cloudwatch")


def test_metric_data_names_dimensions_units():
    doc = bench_doc()
    data = publish.metric_data(doc)
    assert len(data) == len(BENCH_METRICS) * len(doc["runs"])
    assert {d["MetricName"] for d in data} == set(BENCH_METRICS)
    for d in data:
        assert tuple(dim["Name"] for dim in d["Dimensions"]) == BENCH_DIMENSIONS
        assert d["Unit"] == (
            "Seconds"
            if d["MetricName"].endswith("_seconds")
            else {"bench_achieved_rate": "Count/Second", "bench_slo_missed": "Count"}[
                d["MetricName"]
            ]
        )


def test_publish_lands_what_list_metrics_and_get_metric_data_return(aws):
    doc = bench_doc()
    assert publish.publish(doc) == len(BENCH_METRICS) * 2
    listed = aws.list_metrics(Namespace=NAMESPACE)["Metrics"]
    seen = {
        (m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in listed
    }
    expected = {
        (name, (("InstanceId", doc["instance_id"]), ("OfferedRate", label)))
        for name in BENCH_METRICS
        for label in doc["runs"]
    }
    assert seen == expected

    when = dt.datetime.fromisoformat(doc["finished_at"])
    for label, run in doc["runs"].items():
        dims = [
            {"Name": "InstanceId", "Value": doc["instance_id"]},
            {"Name": "OfferedRate", "Value": label},
        ]
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dims},
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
            for i, name in enumerate(BENCH_METRICS)
        ]
        response = aws.get_metric_data(
            MetricDataQueries=queries,
            StartTime=when - dt.timedelta(minutes=5),
            EndTime=when + dt.timedelta(minutes=5),
        )
        got = {r["Id"]: r["Values"] for r in response["MetricDataResults"]}
        values = {name: got[f"m{i}"] for i, name in enumerate(BENCH_METRICS)}
        lat = run["latency_ns"]
        assert values["bench_tick_to_order_p50_seconds"] == [pytest.approx(lat["p50"] / 1e9)]
        assert values["bench_tick_to_order_p99_seconds"] == [pytest.approx(lat["p99"] / 1e9)]
        assert values["bench_tick_to_order_p999_seconds"] == [pytest.approx(lat["p999"] / 1e9)]
        assert values["bench_tick_to_order_max_seconds"] == [pytest.approx(lat["max"] / 1e9)]
        assert values["bench_achieved_rate"] == [pytest.approx(run["achieved_rate"])]
        assert values["bench_slo_missed"] == [0.0 if run["verdict"]["pass"] else 1.0]


def test_no_region_or_credentials_is_one_line(monkeypatch, tmp_path):
    for key in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(key, raising=False)
    # no config or credentials files, and no instance metadata to fall back on
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(OpsError, match="no AWS region"):
        publish.preflight()
    with pytest.raises(OpsError, match="no AWS region"):
        publish.publish(bench_doc())
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # boto3 reads this one
    with pytest.raises(OpsError, match="no AWS credentials"):
        publish.preflight()


def test_a_run_without_figures_sends_no_made_up_latency():
    doc = bench_doc()
    run = doc["runs"]["1m"]
    run["latency_ns"] = {k: None for k in run["latency_ns"]}
    run["achieved_rate"] = None
    run["verdict"]["pass"] = False
    names = [
        d["MetricName"] for d in publish.metric_data(doc) if d["Dimensions"][1]["Value"] == "1m"
    ]
    assert names == ["bench_slo_missed"]
