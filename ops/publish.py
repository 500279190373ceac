"""``fab bench --publish``: the bench's figures to CloudWatch, where the dashboard reads them.

Per offered rate, one datum of each of ``ami.cloudwatch.BENCH_METRICS`` in namespace
``NAMESPACE`` with exactly the dimensions ``BENCH_DIMENSIONS``: ``InstanceId`` (the host's EC2
instance id, else its host name) and ``OfferedRate`` (the rate's short name, "100k", "1m").
Latencies go in seconds (CloudWatch's base unit, as the service's Prometheus families), the
achieved rate in Count/Second, ``bench_slo_missed`` as 1 or 0.

Region, credentials and endpoint come from boto3's usual sources (``AWS_REGION``,
``AWS_PROFILE``, ``AWS_ENDPOINT_URL``...); their absence is one line, not a traceback.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict

from ami.cloudwatch import BENCH_DIMENSIONS, BENCH_METRICS, NAMESPACE
from ops.bench_doc import BenchDoc
from ops.hosts import OpsError

UNITS = {"bench_achieved_rate": "Count/Second", "bench_slo_missed": "Count"}


class Dimension(TypedDict):
    Name: str
    Value: str


class MetricDatum(TypedDict):
    """One entry of PutMetricData's ``MetricData``."""

    MetricName: str
    Dimensions: list[Dimension]
    Timestamp: dt.datetime
    Value: float
    Unit: str


def metric_data(doc: BenchDoc) -> list[MetricDatum]:
    """The ``MetricData`` entries for a bench document (``ops.bench``), every rate."""
    timestamp = dt.datetime.fromisoformat(doc["finished_at"])
    data: list[MetricDatum] = []
    for label, run in doc["runs"].items():
        lat = run["latency_ns"]
        values: dict[str, float | None] = {
            "bench_tick_to_order_p50_seconds": lat.get("p50"),
            "bench_tick_to_order_p99_seconds": lat.get("p99"),
            "bench_tick_to_order_p999_seconds": lat.get("p999"),
            "bench_tick_to_order_max_seconds": lat.get("max"),
            "bench_achieved_rate": run.get("achieved_rate"),
            "bench_slo_missed": 0.0 if run["verdict"]["pass"] else 1.0,
        }
        assert tuple(values) == BENCH_METRICS, "ops.publish is out of step with BENCH_METRICS"
        dims = dict(zip(BENCH_DIMENSIONS, (doc["instance_id"], label), strict=True))
        for name, value in values.items():
            if value is None:
                continue  # a run that recorded nothing: no datum rather than a made-up one
            if name.endswith("_seconds"):
                value = value / 1e9
            data.append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    "Timestamp": timestamp,
                    "Value": float(value),
                    "Unit": UNITS.get(name, "Seconds"),
                }
            )
    return data


NO_REGION = "--publish: no AWS region: set AWS_DEFAULT_REGION or a default region (aws configure)"
NO_CREDENTIALS = "--publish: no AWS credentials: configure them (aws configure, AWS_PROFILE)"


def preflight() -> None:
    """Fail before the bench, not after it, when CloudWatch cannot be reached for want of a
    region or credentials."""
    import boto3

    session = boto3.session.Session()
    if not session.region_name:
        raise OpsError(NO_REGION)
    if session.get_credentials() is None:
        raise OpsError(NO_CREDENTIALS)


def publish(doc: BenchDoc, client: Any = None) -> int:
    """Send the bench's figures; the number of data points sent. ``client``: a boto3
    CloudWatch client (untyped), by default one from boto3's usual configuration."""
    # only --publish needs them: boto3 loads slowly
    import boto3
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
    )

    data = metric_data(doc)
    try:
        client = client or boto3.client("cloudwatch")
        for start in range(0, len(data), 500):  # PutMetricData takes up to 1000 per call
            client.put_metric_data(Namespace=NAMESPACE, MetricData=data[start : start + 500])
    except NoRegionError:
        raise OpsError(NO_REGION) from None
    except NoCredentialsError:
        raise OpsError(NO_CREDENTIALS) from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise OpsError(f"--publish: CloudWatch refused the metrics: {message}") from None
    except BotoCoreError as exc:
        raise OpsError(f"--publish: {exc}") from None
    return len(data)
