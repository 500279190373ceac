"""The CloudWatch agent's config for a tuned host, and the Prometheus scrape config it reads.

What the agent collects (``agent_config``), every 10 s:

- ``metrics``: per-core CPU (``"totalcpu": false``: an isolated core busy-polling at 100 % is the
  expected picture, a housekeeping core at 100 % is not, and the host average hides both), memory,
  swap (it should stay off), the root file system, ``procstat`` for the engine
  (``trading-service run``) and the telemetry API (``trading-service telemetry``): ``pid_count``
  is their liveness as the OS sees it, plus CPU and RSS; and ``ethtool`` for the ENA allowance
  counters of the profile's NIC (packets or bandwidth shaped by the instance's allowances are
  latency nobody sees in the service's own figures).
- ``logs.logs_collected.files``: ``/var/log/lowlat/*.log``, where the two units append their
  output (``ami/units.py``; rotated by /etc/logrotate.d/lowlat). Files rather than the agent's
  ``journald`` section: that section is in the current schema but not in every agent build
  AL2023's repository ships, and an agent that does not know a section refuses the whole config.
- ``logs.metrics_collected.prometheus``: the agent scrapes the telemetry API's ``/metrics``
  (``prometheus_scrape_yaml``) and its EMF processor turns the declared families into CloudWatch
  metrics. Counters arrive as the delta since the previous scrape, gauges as read.

Histograms: the agent's Prometheus pipeline supports counters, gauges and summaries only and
*drops histogram families whole* (AWS docs, "Prometheus metric type conversion by the CloudWatch
agent"), ``_bucket``, ``_count`` and ``_sum`` samples included. So no latency histogram is
declared here: a selector for one would promise a metric that never arrives
(``agent_dropped_histograms()`` names them). Latency reaches CloudWatch two ways instead: every
histogram is also exported as a summary of its recent window,
``trading_<name>_recent_seconds`` (declared below, with ``quantile`` as a dimension), and
``fab bench --publish`` sends a benchmark's percentiles.

Dimensions: every declared family has an ``instance_id`` label, a static label of the scrape
job. An AMI is baked once and booted many times, so its value is a placeholder
(``INSTANCE_ID_PLACEHOLDER``) in ``PROMETHEUS_TEMPLATE_PATH``; a drop-in of the agent's unit
(``agent_unit_dropin``) writes the real scrape config from it at every agent start, with the
instance id Nitro publishes in ``/sys/devices/virtual/dmi/id/board_asset_tag``.

Every ``trading_`` name comes from ``contracts.metric_names`` (``FAMILIES``, itself derived from
``contracts.stats_layout.CATALOG``); ``DASHBOARD_FAMILIES`` refers to families by their catalog
names and a lookup fails loudly when one disappears.

This module is light: it imports ``contracts`` and PyYAML, never numba.
"""

from __future__ import annotations

import json
import re

import yaml

from contracts import metric_names as M
from contracts import stats_layout as L
from contracts.profile import AUTO_NIC, TuningProfile

AGENT_ETC = "/opt/aws/amazon-cloudwatch-agent/etc"
AGENT_CONFIG_PATH = f"{AGENT_ETC}/amazon-cloudwatch-agent.json"
PROMETHEUS_CONFIG_PATH = f"{AGENT_ETC}/prometheus.yaml"
PROMETHEUS_TEMPLATE_PATH = f"{AGENT_ETC}/prometheus.yaml.tmpl"
AGENT_UNIT_DROPIN_PATH = "/etc/systemd/system/amazon-cloudwatch-agent.service.d/lowlat.conf"
INSTANCE_ID_PLACEHOLDER = "@INSTANCE_ID@"
NITRO_INSTANCE_ID_FILE = "/sys/devices/virtual/dmi/id/board_asset_tag"

NAMESPACE = "Lowlat"  # every lowlat metric: the agent's host metrics, /metrics via EMF, bench
INTERVAL_S = 10
SCRAPE_JOB = "lowlat"
CLUSTER_NAME = "lowlat"
LOG_DIR = "/var/log/lowlat"
LOG_GROUP = "/lowlat/service"
PROMETHEUS_LOG_GROUP = "/lowlat/prometheus"
INSTANCE_LABEL = "instance_id"  # the dimension of every /metrics family (EMF)
INSTANCE_DIMENSION = "InstanceId"  # the dimension of every host metric the agent collects
# The agent also publishes each host metric rolled up to these dimension sets, so dashboards and
# alarms name a host metric by its instance (and core) alone: the full set carries dimensions
# only the host knows (device, fstype, interface, driver, InstanceType).
AGGREGATION_DIMENSIONS = ((INSTANCE_DIMENSION,), (INSTANCE_DIMENSION, "cpu"))

# procstat: (regex over the whole command line, what it watches)
SERVICE_PROCESSES = (
    ("trading-service run", "the engine: supervisor and one process per stage"),
    ("trading-service telemetry", "the telemetry API the agent scrapes"),
)
PROCSTAT_MEASUREMENTS = ("pid_count", "cpu_usage", "memory_rss")
CPU_MEASUREMENTS = (
    "usage_active",
    "usage_idle",
    "usage_system",
    "usage_user",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
)
MEM_MEASUREMENTS = ("mem_used_percent", "mem_available", "mem_used")
SWAP_MEASUREMENTS = ("swap_used", "swap_used_percent")
DISK_MEASUREMENTS = ("used_percent", "inodes_free")
# ENA's per-interface counters of packets queued or dropped because the instance went over one
# of its allowances (ethtool -S): the network's share of the latency budget.
ENA_ALLOWANCE_COUNTERS = (
    "bw_in_allowance_exceeded",
    "bw_out_allowance_exceeded",
    "pps_allowance_exceeded",
    "conntrack_allowance_exceeded",
    "linklocal_allowance_exceeded",
)


# The CloudWatch names of the host metrics the agent publishes: "<plugin>_<measurement>".
def host_metric(plugin: str, measurement: str) -> str:
    """The CloudWatch metric name of one measurement of one agent plugin, checked against the
    config: ``host_metric("cpu", "usage_idle")`` is ``cpu_usage_idle``."""
    collected = {
        "cpu": CPU_MEASUREMENTS,
        "mem": MEM_MEASUREMENTS,
        "swap": SWAP_MEASUREMENTS,
        "disk": DISK_MEASUREMENTS,
        "ethtool": ENA_ALLOWANCE_COUNTERS,
    }
    if measurement not in collected.get(plugin, ()):
        raise KeyError(f"the agent config collects no {plugin} measurement {measurement!r}")
    # the agent accepts mem's measurements with their prefix ("mem_used_percent") and keeps it
    return measurement if measurement.startswith(f"{plugin}_") else f"{plugin}_{measurement}"


# What `fab bench --publish` sends (dimensions InstanceId and OfferedRate, unit Seconds or
# Count/Second): the dashboard's benchmark widget reads exactly these.
BENCH_DIMENSIONS = (INSTANCE_DIMENSION, "OfferedRate")
BENCH_METRICS = (
    "bench_tick_to_order_p50_seconds",
    "bench_tick_to_order_p99_seconds",
    "bench_tick_to_order_p999_seconds",
    "bench_tick_to_order_max_seconds",
    "bench_achieved_rate",
    "bench_slo_missed",
)

# The families the dashboards and alarms read, by the name the service knows them under: a
# CATALOG metric name, or an engine family's name without the prefix. Order is dashboard order.
DASHBOARD_FAMILIES = (
    "up",
    "stage_up",
    "stage_heartbeat_age_seconds",
    "kill_switch",
    "md_messages_processed",
    "md_messages_dropped",
    "md_messages_lost",
    "sequence_gaps",
    "feed_gaps",
    "md_messages_recovered",
    "md_messages_given_up",
    "exchange_connected",
    "exchange_sessions",
    "exchange_drops",
    "orders_open",
    "orders_resent",
    "orders_sent",
    "orders_rejected",
    "fills",
    "md_ring_occupancy",
    "order_ring_occupancy",
    "fill_ring_occupancy",
    "md_ring_full",
    "order_ring_full",
    "fill_ring_full",
    "stale_books",
    # latency: the summary of recent quantiles (the agent drops the histogram itself)
    "tick_to_order_recent_seconds",
    # the host as the telemetry API sees it: check-host's verdict, hugepages
    "host_tuned",
    "host_checks_failed",
    "hugepages_free",
    "hugepages_reserved",
)


def _family(base: str) -> M.FamilySpec:
    """The family spec of a catalog metric or engine family named ``base``."""
    by_name = {spec.name: spec for spec in M.FAMILIES}
    catalog = {metric.name: metric for metric in L.CATALOG}
    name = M.prometheus_name(catalog[base]) if base in catalog else f"{M.PREFIX}{base}"
    try:
        return by_name[name]
    except KeyError:
        raise KeyError(f"{base!r}: contracts.metric_names has no family {name!r}") from None


def dashboard_families() -> list[M.FamilySpec]:
    """The families declared to the agent's EMF processor (no histograms: the agent drops them)."""
    specs = [_family(base) for base in DASHBOARD_FAMILIES]
    histograms = [spec.name for spec in specs if spec.kind == "histogram"]
    if histograms:
        raise ValueError(f"the CloudWatch agent drops histogram families: {histograms}")
    return specs


def dashboard_metric_names() -> list[str]:
    """The exposed names of the families the agent publishes (for the dashboards and alarms)."""
    return [spec.name for spec in dashboard_families()]


def agent_dropped_histograms() -> list[str]:
    """The histogram families /metrics exposes that the agent's Prometheus pipeline drops."""
    return [spec.name for spec in M.FAMILIES if spec.kind == "histogram"]


def _selector(name: str) -> str:
    """An anchored regex that matches exactly ``name`` (the agent's selectors are regexes)."""
    return f"^{re.escape(name)}$"


def metric_declarations() -> list[dict]:
    """One EMF metric declaration per label set: families without labels share one."""
    by_labels: dict[tuple[str, ...], list[str]] = {}
    for spec in dashboard_families():
        by_labels.setdefault(spec.labels, []).append(spec.name)
    return [
        {
            "source_labels": ["job"],
            "label_matcher": f"^{SCRAPE_JOB}$",
            "dimensions": [[INSTANCE_LABEL, *labels]],
            "metric_selectors": [_selector(name) for name in names],
        }
        for labels, names in by_labels.items()
    ]


def agent_config(
    profile: TuningProfile, namespace: str = NAMESPACE, *, auto_scaling_group: bool = False
) -> dict:
    """The agent's JSON config (as a dict) for a host tuned by ``profile``.

    ``auto_scaling_group`` adds the AutoScalingGroupName dimension to the host metrics: only for
    hosts launched by an Auto Scaling group (the agent reads it from the instance's tags).
    """
    append_dimensions = {
        "InstanceId": "${aws:InstanceId}",
        "InstanceType": "${aws:InstanceType}",
    }
    if auto_scaling_group:
        append_dimensions["AutoScalingGroupName"] = "${aws:AutoScalingGroupName}"
    procstat = [
        {
            "pattern": pattern,
            "measurement": list(PROCSTAT_MEASUREMENTS),
            "metrics_collection_interval": INTERVAL_S,
        }
        for pattern, _ in SERVICE_PROCESSES
    ]
    return {
        "agent": {
            "metrics_collection_interval": INTERVAL_S,
            "logfile": "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log",
        },
        "metrics": {
            "namespace": namespace,
            "append_dimensions": append_dimensions,
            "aggregation_dimensions": [list(dims) for dims in AGGREGATION_DIMENSIONS],
            "metrics_collected": {
                "cpu": {
                    "resources": ["*"],
                    "totalcpu": False,
                    "measurement": list(CPU_MEASUREMENTS),
                    "metrics_collection_interval": INTERVAL_S,
                },
                "mem": {
                    "measurement": list(MEM_MEASUREMENTS),
                    "metrics_collection_interval": INTERVAL_S,
                },
                "swap": {
                    "measurement": list(SWAP_MEASUREMENTS),
                    "metrics_collection_interval": 60,
                },
                "disk": {
                    "resources": ["/"],
                    "measurement": list(DISK_MEASUREMENTS),
                    "metrics_collection_interval": 60,
                },
                "procstat": procstat,
                "ethtool": {
                    # nic=auto: every interface but loopback (a c6g has the one ENA)
                    **(
                        {"interface_exclude": ["lo"]}
                        if profile.nic == AUTO_NIC
                        else {"interface_include": [profile.nic]}
                    ),
                    "metrics_include": list(ENA_ALLOWANCE_COUNTERS),
                },
            },
        },
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": f"{LOG_DIR}/*.log",
                            "log_group_name": LOG_GROUP,
                            "log_stream_name": "{instance_id}",
                            "timezone": "UTC",
                        }
                    ]
                }
            },
            "metrics_collected": {
                "prometheus": {
                    "cluster_name": CLUSTER_NAME,
                    "log_group_name": PROMETHEUS_LOG_GROUP,
                    "prometheus_config_path": PROMETHEUS_CONFIG_PATH,
                    "emf_processor": {
                        "metric_namespace": namespace,
                        "metric_declaration": metric_declarations(),
                    },
                }
            },
        },
    }


def agent_config_json(profile: TuningProfile, namespace: str = NAMESPACE, **options) -> str:
    """``agent_config`` as the file the agent reads (``AGENT_CONFIG_PATH``)."""
    return json.dumps(agent_config(profile, namespace, **options), indent=2) + "\n"


def prometheus_scrape_config(profile: TuningProfile, instance_id: str = INSTANCE_ID_PLACEHOLDER):
    """The agent's Prometheus scrape config: the telemetry API on loopback every 10 s."""
    return {
        "global": {"scrape_interval": f"{INTERVAL_S}s", "scrape_timeout": "5s"},
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "metrics_path": "/metrics",
                "scrape_interval": f"{INTERVAL_S}s",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{profile.telemetry_port}"],
                        "labels": {INSTANCE_LABEL: instance_id},
                    }
                ],
            }
        ],
    }


def prometheus_scrape_yaml(
    profile: TuningProfile, instance_id: str = INSTANCE_ID_PLACEHOLDER
) -> str:
    """``prometheus_scrape_config`` as YAML; by default the template with the placeholder."""
    header = (
        "# Rendered by ami.cloudwatch from the tuning profile; the agent's unit drop-in fills in\n"
        f"# {INSTANCE_ID_PLACEHOLDER} from {NITRO_INSTANCE_ID_FILE} at every start.\n"
    )
    body = yaml.safe_dump(prometheus_scrape_config(profile, instance_id), sort_keys=False)
    return header + body


def agent_unit_dropin() -> str:
    """systemd drop-in for the agent: write the scrape config from its template before start.

    ``$$`` is a literal ``$`` for systemd; the shell then substitutes the instance id.
    """
    command = (
        f"id=$$(cat {NITRO_INSTANCE_ID_FILE}) && "
        f'sed "s/{INSTANCE_ID_PLACEHOLDER}/$$id/" {PROMETHEUS_TEMPLATE_PATH} '
        f"> {PROMETHEUS_CONFIG_PATH}"
    )
    return (
        "# Rendered by ami.cloudwatch: the scrape config's instance_id label for this instance\n"
        "[Service]\n"
        f"ExecStartPre=/bin/sh -c '{command}'\n"
    )


def agent_files(profile: TuningProfile, namespace: str = NAMESPACE) -> dict[str, str]:
    """Every file the agent setup installs: absolute path -> content.

    The scrape config is written twice: the template, and a first copy with the placeholder so
    that ``amazon-cloudwatch-agent-ctl -a fetch-config`` finds it at image build time; the unit
    drop-in rewrites the copy from the template at every agent start.
    """
    scrape = prometheus_scrape_yaml(profile)
    return {
        AGENT_CONFIG_PATH: agent_config_json(profile, namespace),
        PROMETHEUS_TEMPLATE_PATH: scrape,
        PROMETHEUS_CONFIG_PATH: scrape,
        AGENT_UNIT_DROPIN_PATH: agent_unit_dropin(),
    }
