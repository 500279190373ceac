"""infra.config: context values in, a validated DeploymentConfig out; bad values are one line
naming the key, the value and what is allowed (also through app.py, as the CDK CLI runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from contracts.profile import TuningProfile
from infra.config import (
    CONTEXT_KEYS,
    DEFAULTS,
    GRAVITON_FAMILIES,
    SIZE_VCPUS,
    ConfigError,
    DeploymentConfig,
    unknown_keys,
)
from service.config import SloConfig
from tests.support.paths import REPO

ROOT = REPO


def config(**context) -> DeploymentConfig:
    return DeploymentConfig.from_context(context.get)


def test_defaults():
    c = config()
    assert c == DeploymentConfig()
    assert (c.instance_type, c.host_count, c.allowed_cidrs) == ("c6g.xlarge", 1, ())
    assert (c.telemetry_port, c.ami_mode, c.termination_protection) == (8000, "userdata", False)
    assert c.host_os == "al2023" and c.profile.os == "al2023"
    assert c.runbook_base_url.startswith("https://")
    slo = SloConfig()
    assert (c.slo_p50_us, c.slo_p99_us, c.slo_p999_us) == (
        slo.tick_to_order_p50_us,
        slo.tick_to_order_p99_us,
        slo.tick_to_order_p999_us,
    )


def test_cdk_json_documents_exactly_the_defaults():
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    ours = {k: v for k, v in context.items() if k in CONTEXT_KEYS}
    assert ours == {k: list(v) if isinstance(v, tuple) else v for k, v in DEFAULTS.items()}
    assert unknown_keys(context) == []  # feature flags (@aws-cdk/...) are not ours to check


def test_cli_strings_are_parsed():
    # `-c key=value` reaches the app as strings
    c = config(
        hostCount="3",
        allowedCidrs="203.0.113.0/24, 198.51.100.7/32",
        terminationProtection="true",
        telemetryPort="9100",
        sloTickToOrderP99Us="40",
    )
    assert c.host_count == 3
    assert c.allowed_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert c.termination_protection is True
    assert c.telemetry_port == 9100
    assert c.slo_p99_us == 40.0


def test_lists_accept_json_and_real_lists():
    assert config(allowedCidrs='["10.0.0.0/8"]').allowed_cidrs == ("10.0.0.0/8",)
    assert config(allowedCidrs=["10.0.0.0/8", "10.0.0.0/8"]).allowed_cidrs == ("10.0.0.0/8",)
    assert config(allowedCidrs="").allowed_cidrs == ()


def test_existing_vpc_needs_subnets_and_their_zones():
    c = config(
        vpcId="vpc-0123456789abcdef0",
        subnetIds="subnet-0123456789abcdef0",
        availabilityZones="eu-west-1a",
    )
    assert c.subnet_ids == ("subnet-0123456789abcdef0",)
    with pytest.raises(ConfigError, match="subnetIds"):
        config(vpcId="vpc-0123456789abcdef0")
    with pytest.raises(ConfigError, match="availabilityZones"):
        config(vpcId="vpc-0123456789abcdef0", subnetIds="subnet-0123456789abcdef0")
    with pytest.raises(ConfigError, match="only with vpcId"):
        config(subnetIds="subnet-0123456789abcdef0")


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("instanceType", "c5.xlarge", "Graviton"),
        ("instanceType", "t3.micro", "Graviton"),
        ("instanceType", "t4g.large", "known families"),  # burstable: credits throttle polling
        ("instanceType", "c6g.medium", "needs >= large"),
        ("instanceType", "is4gen.medium", "needs >= large"),
        ("instanceType", "c6g.48xlarge", "c6g comes in"),
        ("hostCount", "0", "from 1 to 16"),
        ("hostCount", "two", "from 1 to 16"),
        ("hostCount", True, "from 1 to 16"),
        ("allowedCidrs", "10.0.0.1/8", "host bits set: write 10.0.0.0/8"),
        ("allowedCidrs", "0.0.0.0/0", "whole IPv4 internet"),
        ("allowedCidrs", "not-a-cidr", "is not a CIDR; use networks like"),
        ("allowedCidrs", "2001:DB8::/32", "write 2001:db8::/32"),
        ("allowedCidrs", "203.0.113.7", "write 203.0.113.7/32"),
        ("allowedCidrs", ",".join(f"198.51.{i}.0/24" for i in range(31)), "at most 30"),
        ("hostCount", "\u0663", "from 1 to 16"),  # ARABIC-INDIC DIGIT THREE: int() takes it
        ("hostCount", "9" * 5000, "from 1 to 16"),
        ("hostCount", 2.0, "from 1 to 16"),
        ("sloTickToOrderP50Us", "nan", "microseconds"),
        ("sloTickToOrderP50Us", "inf", "microseconds"),
        ("subnetIds", "[" * 100_000, "JSON list"),  # deeper than json can recurse
        ("subnetIds", "[" + "9" * 5000 + "]", "JSON list"),  # more digits than int() takes
        ("availabilityZones", "eu-west-\u0661a", "zone names"),
        ("availabilityZones", "eu-west-1a,eu-west-1a", "each zone once"),
        ("availabilityZones", "eu-west-1a,us-east-1b", "one region only"),
        ("alarmEmail", "on\x00call@example.com", "email address"),
        ("runbookBaseUrl", "https://[::1", "https URL"),  # urlparse raises ValueError
        ("runbookBaseUrl", "https://example.com/a b", "https URL"),
        ("runbookBaseUrl", "https://example.com/" + "a" * 300, "at most 200"),
        ("wheelS3Uri", "s3://bucket/*.whl", "s3://BUCKET"),  # an IAM wildcard
        ("wheelS3Uri", "s3://bucket/x'$(reboot)'.whl", "s3://BUCKET"),  # in a bash line
        ("wheelS3Uri", "s3://[/x.whl", "s3://BUCKET"),
        ("allowedCidrs", "[1, 2]", "list of strings"),
        ("alarmEmail", "oncall", "email address"),
        ("vpcId", "vpc-xyz", "vpc-0123456789abcdef0"),
        ("telemetryPort", "80", "from 1024 to 65535"),
        ("amiMode", "docker", "bake"),
        ("amiId", "ami-XYZ", "ami-0123456789abcdef0"),
        ("runbookBaseUrl", "http://example.com/lowlat", "https URL"),
        ("terminationProtection", "yes", "true or false"),
        ("sloTickToOrderP50Us", "fast", "microseconds"),
        ("sloTickToOrderP99Us", "1", "grow with the percentile"),
        ("deploymentName", "Lowlat_Prod", "a-z"),
        ("wheelS3Uri", "https://example.com/x.whl", "s3://"),
        ("hostOs", "ubuntu", "al2023 (Amazon Linux 2023), ubuntu2404 (Ubuntu 24.04 LTS)"),
        ("hostOs", "centos7", "debian12 (Debian 12)"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as info:
        config(**{key: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"context {key}=")
    assert allowed in message


@pytest.mark.parametrize(
    ("instance_type", "vcpus", "isolated"),
    [("c6g.large", 2, (1,)), ("c6g.xlarge", 4, (1, 2, 3)), ("c7g.2xlarge", 8, tuple(range(1, 8)))],
)
def test_profile_follows_the_instance_size(instance_type, vcpus, isolated):
    profile = config(instanceType=instance_type).profile
    assert profile.vcpus == vcpus
    assert profile.isolated == isolated


@pytest.mark.parametrize("raw", ["ubuntu2404", " Ubuntu2404 "])
def test_host_os_names_the_profiles_os(raw):
    c = config(hostOs=raw)
    assert c.host_os == "ubuntu2404"
    assert c.profile.os == "ubuntu2404"
    assert c.profile == TuningProfile.for_vcpus(4, os="ubuntu2404")


def test_debian12_boots_from_user_data_only():
    c = config(hostOs="debian12")
    assert (c.host_os, c.ami_mode, c.profile.os) == ("debian12", "userdata", "debian12")
    with pytest.raises(ConfigError) as info:
        config(hostOs="debian12", amiMode="bake", wheelS3Uri="s3://bucket/lowlat-0.1.0.whl")
    message = str(info.value)
    assert (
        message.startswith("context amiMode=") and "Image Builder cannot build Debian 12" in message
    )
    assert "hostOs=al2023 or ubuntu2404" in message


def test_every_listed_size_has_a_vcpu_count():
    for family, sizes in GRAVITON_FAMILIES.items():
        assert family[-1] in "gdn" or "g" in family, family
        assert set(sizes) <= set(SIZE_VCPUS), family


def test_telemetry_leaves_loopback_only_when_cidrs_are_allowed():
    assert config().profile.telemetry_host == "127.0.0.1"
    opened = config(allowedCidrs="203.0.113.0/24", telemetryPort="9100").profile
    assert (opened.telemetry_host, opened.telemetry_port) == ("0.0.0.0", 9100)


def test_unknown_keys_catch_typos_not_cdk_flags():
    context = {"hostcount": 2, "hostCount": 2, "@aws-cdk/core:foo": True, "aws:cdk:x": 1}
    assert unknown_keys(context) == ["hostcount"]


def _run_app(context: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["CDK_CONTEXT_JSON"] = json.dumps(context)
    env["CDK_OUTDIR"] = "/nonexistent-never-written"  # it must fail before synthesizing
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_app_reports_a_bad_value_in_one_line_and_exits_2():
    result = _run_app({"instanceType": "c5.xlarge"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lowlat: context instanceType='c5.xlarge': use a Graviton")
    assert "Traceback" not in result.stderr


def test_app_reports_an_unknown_key():
    result = _run_app({"hostcount": "2"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("lowlat: unknown context key(s) hostcount; known:")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ the exchange

EXCHANGE = {
    "marketData": "239.192.0.1:31001",
    "recovery": "10.50.0.10:31002",
    "orders": "10.50.0.11:31003",
    "cidrs": ["10.50.0.0/24"],
}


def test_no_exchange_is_the_simulated_one():
    c = config()
    assert c.exchange is None and c.profile.exchange is None
    assert c.profile == TuningProfile.for_vcpus(4)  # the host is rendered as before


@pytest.mark.parametrize("as_text", [False, True], ids=["cdk.json", "-c"])
def test_an_exchange_reaches_the_profile(as_text):
    c = config(exchange=json.dumps(EXCHANGE) if as_text else EXCHANGE)
    assert c.exchange is not None
    assert str(c.exchange.market_data) == "239.192.0.1:31001" and c.exchange.market_data.multicast
    assert (str(c.exchange.recovery), str(c.exchange.orders)) == (
        "10.50.0.10:31002",
        "10.50.0.11:31003",
    )
    profile = c.profile
    assert profile.exchange == c.exchange
    assert (profile.exchange_market_data, profile.exchange_cidrs) == (
        "239.192.0.1:31001",
        ("10.50.0.0/24",),
    )


def test_the_service_config_on_the_host_names_the_exchange():
    from ami.render import service_toml
    from service.config import from_dict

    exchange = {**EXCHANGE, "session": "ACME 0001"}
    text = service_toml(config(exchange=exchange).profile)
    service = from_dict(tomllib.loads(text), "service.toml")
    assert (service.feed.source, service.gateway.exchange) == ("udp", "tcp")
    x = service.exchange
    assert (x.market_data, x.recovery, x.orders, x.session) == (
        "239.192.0.1:31001",
        "10.50.0.10:31002",
        "10.50.0.11:31003",
        "ACME 0001",
    )
    # without an exchange: the simulator and the simulated exchange, as before
    plain = from_dict(tomllib.loads(service_toml(config().profile)), "service.toml")
    assert (plain.feed.source, plain.gateway.exchange) == ("simulator", "simulated")


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"orders": "exchange.example.com:31003"}, "exchange.orders", "host names are not allowed"),
        ({"recovery": "10.50.0.10"}, "exchange.recovery", "has no port: use IP:port"),
        ({"orders": "10.50.0.10:99999"}, "exchange.orders", "from 1 to 65535"),
        ({"orders": "10.60.0.1:31003"}, "exchange.orders", "outside the exchange's ranges"),
        ({"recovery": "239.1.1.1:31002"}, "exchange.recovery", "is a multicast group"),
        ({"marketData": "10.42.0.5:31001"}, "exchange.marketData", "multicast group, e.g."),
        ({"marketData": "224.0.0.1:31001"}, "exchange.marketData", "link-local protocols"),
        ({"marketData": "[ff15::1]:31001"}, "exchange.cidrs", "IPv6 ranges"),
        ({"marketData": "fd00::1:31001"}, "exchange.marketData", "in brackets"),
        ({"cidrs": ["0.0.0.0/0"]}, "exchange.cidrs", "whole IPv4 internet"),
        ({"cidrs": "10.50.0.1/24"}, "exchange.cidrs", "write 10.50.0.0/24 for the network"),
        ({"cidrs": []}, "exchange.cidrs", "name the exchange's ranges"),
        ({"orders": None}, "exchange.orders", "missing"),
        ({"session": "far too long"}, "exchange.session", "1 to 10 printable ASCII"),
        ({"marketdata": "239.1.1.1:1"}, "exchange.marketdata", "use marketData, recovery"),
    ],
)
def test_bad_exchange_values_name_their_own_key(change, key, words):
    exchange = {k: v for k, v in {**EXCHANGE, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        config(exchange=exchange)
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(f"context {key}=") and "\n" not in message
    assert words in message, message


@pytest.mark.parametrize("raw", ["239.192.0.1:31001", "[1, 2]", '{"marketData": ', "{}"])
def test_an_exchange_that_is_no_object_says_what_one_looks_like(raw):
    with pytest.raises(ConfigError) as info:
        config(exchange=raw)
    message = str(info.value)
    assert message.startswith("context exchange") and "\n" not in message
    if raw != "{}":  # {} is an object, missing its addresses
        assert '{"marketData": "239.192.0.1:31001"' in message


def test_app_reports_a_bad_exchange_address_in_one_line():
    result = _run_app({"exchange": {**EXCHANGE, "orders": "10.9.9.9:31003"}})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lowlat: context exchange.orders='10.9.9.9:31003': is outside")
    assert "10.50.0.0/24" in lines[0]
