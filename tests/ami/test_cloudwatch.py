"""The CloudWatch agent config: valid for the agent's own schema, and naming only what
/metrics exports."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from ami import cloudwatch as C
from contracts import metric_names as N
from contracts.profile import TuningProfile
from tests.support.names import EXPORTED_NAMES
from tests.support.paths import SUPPORT

SCHEMA_PATH = SUPPORT / "data" / "cloudwatch-agent-schema.json"  # see data/README.md


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)  # "$ref"s are resolved within the document


PROFILES = [
    TuningProfile.for_vcpus(4),
    TuningProfile.for_vcpus(16, nic="ens5", telemetry_port=9100),
]


def _errors(validator, config) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(config)]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: f"{p.vcpus}vcpu")
@pytest.mark.parametrize("asg", [False, True])
def test_agent_config_validates_against_the_agents_schema(validator, profile, asg):
    config = C.agent_config(profile, auto_scaling_group=asg)
    assert _errors(validator, config) == []
    assert json.loads(C.agent_config_json(profile, auto_scaling_group=asg)) == config


def test_schema_catches_a_broken_config(validator):
    """The validation is real: a wrong type and an unknown prometheus key are both reported."""
    config = C.agent_config(PROFILES[0])
    config["metrics"]["metrics_collected"]["cpu"]["totalcpu"] = "no"
    config["logs"]["metrics_collected"]["prometheus"]["scrape_everything"] = True
    errors = _errors(validator, config)
    assert any("totalcpu" in e for e in errors)
    assert any("scrape_everything" in e for e in errors)


def test_per_core_cpu_and_host_metrics():
    metrics = C.agent_config(PROFILES[0], namespace="LowlatTest")["metrics"]
    assert metrics["namespace"] == "LowlatTest"
    assert metrics["append_dimensions"] == {
        "InstanceId": "${aws:InstanceId}",
        "InstanceType": "${aws:InstanceType}",
    }
    collected = metrics["metrics_collected"]
    cpu = collected["cpu"]
    assert cpu["totalcpu"] is False
    assert cpu["resources"] == ["*"]
    for m in ("usage_active", "usage_idle", "usage_system", "usage_user", "usage_iowait"):
        assert m in cpu["measurement"]
    assert cpu["metrics_collection_interval"] == 10
    assert {"mem", "swap", "disk"} <= collected.keys()
    assert collected["disk"]["resources"] == ["/"]


def test_asg_dimension_is_optional():
    config = C.agent_config(PROFILES[0], auto_scaling_group=True)
    dims = config["metrics"]["append_dimensions"]
    assert dims["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"


def test_procstat_watches_both_service_processes():
    procstat = C.agent_config(PROFILES[0])["metrics"]["metrics_collected"]["procstat"]
    assert [p["pattern"] for p in procstat] == ["trading-service run", "trading-service telemetry"]
    for entry in procstat:
        assert {"pid_count", "cpu_usage", "memory_rss"} <= set(entry["measurement"])
    # the patterns are regexes over the whole command line, as ami.units starts the processes
    engine = "/opt/lowlat/current/venv/bin/python /opt/lowlat/current/venv/bin/trading-service run"
    telemetry = engine.removesuffix("run") + "telemetry --config /etc/lowlat/service.toml"
    assert re.search(procstat[0]["pattern"], engine)
    assert not re.search(procstat[0]["pattern"], telemetry)
    assert re.search(procstat[1]["pattern"], telemetry)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.nic)
def test_ethtool_reads_the_ena_allowance_counters_of_the_profiles_nic(profile):
    ethtool = C.agent_config(profile)["metrics"]["metrics_collected"]["ethtool"]
    if profile.nic == "auto":  # the default route's NIC, named only on the host: all but lo
        assert ethtool["interface_exclude"] == ["lo"] and "interface_include" not in ethtool
    else:
        assert ethtool["interface_include"] == [profile.nic]
    assert set(ethtool["metrics_include"]) == {
        "bw_in_allowance_exceeded",
        "bw_out_allowance_exceeded",
        "pps_allowance_exceeded",
        "conntrack_allowance_exceeded",
        "linklocal_allowance_exceeded",
    }


def test_logs_collect_the_service_log_files():
    files = C.agent_config(PROFILES[0])["logs"]["logs_collected"]["files"]["collect_list"]
    assert [f["file_path"] for f in files] == ["/var/log/lowlat/*.log"]


def _prometheus(config) -> dict:
    return config["logs"]["metrics_collected"]["prometheus"]


def test_prometheus_section_points_at_the_scrape_config():
    prom = _prometheus(C.agent_config(PROFILES[0]))
    assert prom["prometheus_config_path"] == (
        "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml"
    )
    assert prom["cluster_name"] and prom["log_group_name"]
    assert prom["emf_processor"]["metric_declaration"]


def _selector_names(config) -> list[str]:
    declarations = _prometheus(config)["emf_processor"]["metric_declaration"]
    return [s for d in declarations for s in d["metric_selectors"]]


def test_every_selector_matches_exactly_one_exported_name():
    """The selectors and /metrics agree: each selects one family and only it."""
    exported = list(EXPORTED_NAMES)
    # what the agent sees: histogram families as their _bucket/_count/_sum samples
    samples = [
        f"{spec.name}{suffix}"
        for spec in N.FAMILIES
        for suffix in (("_bucket", "_count", "_sum") if spec.kind == "histogram" else ("",))
    ]
    selected = []
    for selector in _selector_names(C.agent_config(PROFILES[0])):
        matches = [name for name in samples if re.search(selector, name)]
        assert len(matches) == 1, f"{selector} matches {matches}"
        assert matches[0] in exported
        selected.append(matches[0])
    assert selected == sorted(set(selected), key=selected.index)  # no family declared twice
    assert sorted(selected) == sorted(C.dashboard_metric_names())


def test_dashboards_get_the_families_they_chart():
    names = set(C.dashboard_metric_names())
    by_name = {spec.name: spec for spec in N.FAMILIES}
    assert names <= set(EXPORTED_NAMES)
    for wanted in (
        "trading_up",
        "trading_md_messages_processed_total",
        "trading_orders_sent_total",
        "trading_orders_rejected_total",
        "trading_md_ring_occupancy",
        "trading_md_ring_full_total",
        "trading_sequence_gaps_total",
        "trading_kill_switch",
    ):
        assert wanted in names
    assert all(by_name[n].kind != "histogram" for n in names)


def test_labelled_families_get_their_label_as_a_dimension():
    declarations = _prometheus(C.agent_config(PROFILES[0]))["emf_processor"]["metric_declaration"]
    by_name = {spec.name: spec for spec in N.FAMILIES}
    for declaration in declarations:
        assert declaration["source_labels"] == ["job"]
        assert re.fullmatch(declaration["label_matcher"], C.SCRAPE_JOB)
        for selector in declaration["metric_selectors"]:
            spec = by_name[selector.strip("^$").replace("\\", "")]
            assert declaration["dimensions"] == [["instance_id", *spec.labels]]
    rejects = [
        d for d in declarations if "^trading_orders_rejected_total$" in d["metric_selectors"]
    ]
    assert rejects[0]["dimensions"] == [["instance_id", "reason"]]


def test_histograms_are_left_out_because_the_agent_drops_them():
    dropped = C.agent_dropped_histograms()
    assert "trading_tick_to_order_seconds" in dropped
    selectors = " ".join(_selector_names(C.agent_config(PROFILES[0])))
    for name in dropped:
        assert name not in selectors


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: str(p.telemetry_port))
def test_scrape_yaml_targets_the_telemetry_port(profile):
    config = yaml.safe_load(C.prometheus_scrape_yaml(profile))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == C.SCRAPE_JOB
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "10s"
    (static,) = job["static_configs"]
    assert static["targets"] == [f"127.0.0.1:{profile.telemetry_port}"]
    assert static["labels"] == {"instance_id": C.INSTANCE_ID_PLACEHOLDER}
    filled = yaml.safe_load(C.prometheus_scrape_yaml(profile, instance_id="i-0123456789abcdef0"))
    assert filled["scrape_configs"][0]["static_configs"][0]["labels"] == {
        "instance_id": "i-0123456789abcdef0"
    }


def test_agent_unit_dropin_fills_in_the_instance_id(tmp_path):
    """The drop-in's command, run by sh as systemd would ($$ -> $), writes the scrape config."""
    import subprocess

    dropin = C.agent_unit_dropin()
    (line,) = [x for x in dropin.splitlines() if x.startswith("ExecStartPre=")]
    command = line.removeprefix("ExecStartPre=/bin/sh -c '").removesuffix("'").replace("$$", "$")
    id_file, template, out = tmp_path / "asset_tag", tmp_path / "tmpl", tmp_path / "out"
    id_file.write_text("i-0abc\n")
    template.write_text(C.prometheus_scrape_yaml(PROFILES[0]))
    command = (
        command.replace(C.NITRO_INSTANCE_ID_FILE, str(id_file))
        .replace(C.PROMETHEUS_TEMPLATE_PATH, str(template))
        .replace(C.PROMETHEUS_CONFIG_PATH, str(out))
    )
    subprocess.run(["/bin/sh", "-c", command], check=True)
    config = yaml.safe_load(out.read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["labels"] == {"instance_id": "i-0abc"}


def test_agent_files_are_the_config_the_scrape_template_and_the_dropin():
    files = C.agent_files(PROFILES[0])
    assert json.loads(files[C.AGENT_CONFIG_PATH]) == C.agent_config(PROFILES[0])
    assert files[C.PROMETHEUS_TEMPLATE_PATH] == C.prometheus_scrape_yaml(PROFILES[0])
    assert C.AGENT_UNIT_DROPIN_PATH.startswith("/etc/systemd/system/amazon-cloudwatch-agent")


def test_a_missing_family_is_a_loud_error():
    with pytest.raises(KeyError, match="no_such_metric"):
        C._family("no_such_metric")
