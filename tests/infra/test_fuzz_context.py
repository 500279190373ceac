"""Fuzzing the CDK context: whatever ``cdk.json`` or ``-c key=value`` gives, ``from_context``
returns a config that keeps its promises or raises ``ConfigError``: one line that names the key.
Never another exception, never a hang (each example has a time limit).

And the ingress ranges: however the address space is cut up and spelled, ranges that together
cover it are refused (through ``from_context``, and through app.py as ``cdk synth`` runs it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.profile import (
    EMBEDDED_IPV4,
    MAX_INTERNET_ADDRESSES,
    CidrError,
    TuningProfile,
    admitted_cidrs,
    internet_addresses,
)
from infra.config import (
    _AZ,
    _NAME,
    _SUBNET_ID,
    CONTEXT_KEYS,
    GRAVITON_FAMILIES,
    MAX_CIDRS_PER_VERSION,
    MAX_URL,
    MIN_VCPUS,
    SIZE_VCPUS,
    ConfigError,
    DeploymentConfig,
)
from tests.support.fuzz import time_limit
from tests.support.paths import REPO

EXAMPLE_SECONDS = 5  # far above what one example takes (well under 10 ms); a hang fails


# ------------------------------------------------------------------------------ strategies

# what JSON can hold (cdk.json), and then some: huge numbers, NaN and infinities
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e999",
        "-1",
        "0",
        "1_0",
        "+3",
        "0x10",
        "\u0663",  # ARABIC-INDIC DIGIT THREE
        "\uff13",  # FULLWIDTH DIGIT THREE
        "9" * 5000,
        "[" * 3000,
        "[" + "9" * 5000 + "]",
        '["a", ["b"]]',
        "[]",
        "{}",
        "null",
        "true",
        "TRUE",
        "a,b,,c",
        ",,,",
        "\x00",
        "\u2028",
        "\ud800",  # a lone surrogate
        "https://[::1",
        "s3://[/x.whl",
    ]
)


def near(examples: list[str]) -> st.SearchStrategy[str]:
    """Strings close to the good ones: the good ones, cut, padded, upper-cased, with a unicode
    or control character inserted."""
    good = st.sampled_from(examples)
    noise = st.text(alphabet=st.characters(codec="utf-8"), max_size=3)
    return st.one_of(
        good,
        st.builds(lambda s, n: s[: len(s) // 2] + n, good, noise),
        st.builds(lambda s, n: n + s + n, good, noise),
        good.map(str.upper),
        st.builds(lambda s, i, n: s[:i] + n + s[i:], good, st.integers(0, 30), noise),
    )


V4_SPLIT = ["0.0.0.0/1", "128.0.0.0/1", "0.0.0.0/2", "64.0.0.0/2"]
CIDRS = [
    "203.0.113.0/24",
    "198.51.100.7/32",
    "10.0.0.0/8",
    "2001:db8::/32",
    "0.0.0.0/0",
    "0.0.0.0/00",
    "000.0.0.0/0",
    "::/0",
    "0::0/0",
    "::ffff:0:0/96",
    "::ffff:1.2.3.0/120",
    "1.2.3.4/0",
    "1.2.3.4",
    "2002::/16",
    "2001:DB8::/32",
    "10.0.0.0/255.0.0.0",
    "fe80::1%eth0/64",
    *V4_SPLIT,
]

PLAUSIBLE: dict[str, list[str]] = {
    "deploymentName": ["lowlat", "lowlat-prod", "a", "x" * 24, "Lowlat"],
    "instanceType": ["c6g.xlarge", "c7g.2xlarge", "c8g.48xlarge", "c6g.medium", "t4g.large"],
    "hostCount": ["1", "2", "16", "17", "0"],
    "allowedCidrs": CIDRS,
    "sshKeyName": ["lowlat-ops", "my key"],
    "alarmEmail": ["oncall@example.com", "a@b.co", "oncall@example"],
    "vpcId": ["vpc-0123456789abcdef0", "vpc-12345678"],
    "subnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "availabilityZones": ["eu-west-1a", "eu-west-1b", "us-east-1a"],
    "telemetryPort": ["8000", "9100", "1024", "65535", "80", "65536"],
    "amiMode": ["userdata", "bake"],
    "hostOs": ["al2023", "ubuntu2404", "debian12"],
    "amiId": ["ami-0123456789abcdef0"],
    "runbookBaseUrl": ["https://github.com/lowlat/lowlat/blob/main", "http://example.com"],
    "terminationProtection": ["true", "false", "True"],
    "wheelS3Uri": [
        "s3://bucket/lowlat-0.1.0.whl",
        "s3://bucket/dist/lowlat-0.1.0-py3-none-any.whl",
    ],
    "sloTickToOrderP50Us": ["10", "25.5", "1e1", "0.5"],
    "sloTickToOrderP99Us": ["40", "100", "1e2"],
    "sloTickToOrderP999Us": ["100", "1000", "1e3"],
    "exchange": [
        json.dumps(
            {
                "marketData": "239.192.0.1:31001",
                "recovery": "10.50.0.10:31002",
                "orders": "10.50.0.10:31003",
                "cidrs": ["10.50.0.0/24"],
            }
        ),
        '{"marketData": "[ff15::1]:31001", "recovery": "[fd00:50::10]:2", "orders": '
        '"10.50.0.10:3", "cidrs": "10.50.0.0/24,fd00:50::/64", "session": "X"}',
        '{"marketData": "10.42.0.5:31001"}',
    ],
}
assert set(PLAUSIBLE) == set(CONTEXT_KEYS)


def value_for(key: str) -> st.SearchStrategy:
    plausible = near(PLAUSIBLE[key])
    return st.one_of(
        JSON,
        ODD_STRINGS,
        st.text(max_size=40),
        plausible,
        st.lists(plausible, max_size=4).map(",".join),  # as `-c key=a,b` gives a list
        st.lists(plausible, max_size=4),  # as cdk.json gives it
        st.lists(plausible, max_size=4).map(json.dumps),  # `-c key=["a","b"]`
    )


VALUES = {key: value_for(key) for key in sorted(CONTEXT_KEYS)}  # built once: drawing is cheap
# each known key present or not, with a value of any kind
CONTEXTS = st.fixed_dictionaries({}, optional=VALUES)


# Hypothesis spends some 7 ms drawing one context; the same kinds of values drawn from a
# random.Random (seeded by Hypothesis, so a failure replays) cost some 30 us. The batch test
# below uses it for thousands of contexts in a second; the tests above shrink what they find.
ODD_LIST = [
    "", " ", "\n", "nan", "inf", "-inf", "1e999", "-1", "0", "1_0", "+3", "\u0663", "\uff13",
    "9" * 5000, "[" * 3000, "[" + "9" * 5000 + "]", "[]", "{}", "null", "true", ",,,", "\x00",
    "\u2028", "\ud800", "https://[::1", "s3://[/x.whl",
]  # fmt: skip
ALPHABETS = [
    "0123456789./:,-[] ",
    "abcdefghijklmnopqrstuvwxyz-0123456789.",
    "\u0660\u0661\u0663\uff10\uff11\u00e9\u212a\u0130\u2028\x85\x00\t\n'\"$`;*%@ ",
]


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 2**31, 2**64, -(10**400), 10**400, rng.randint(-99, 99)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, float("nan"), float("inf"), -float("inf"), 3.0])
    if kind in (4, 5):
        return random_text(rng)
    if kind in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_text(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_text(rng: random.Random) -> str:
    alphabet = rng.choice(ALPHABETS)
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def random_near(rng: random.Random, key: str) -> str:
    good = rng.choice(PLAUSIBLE[key])
    i, noise = rng.randrange(len(good) + 1), random_text(rng)[:2]
    return rng.choice([good, good[:i], good[:i] + noise + good[i:], good.upper(), f" {good} "])


def random_value(rng: random.Random, key: str):
    kind = rng.randrange(7)
    if kind == 0:
        return random_json(rng)
    if kind == 1:
        return rng.choice(ODD_LIST)
    if kind == 2:
        return random_text(rng)
    if kind == 3:
        return random_near(rng, key)
    items = [random_near(rng, key) for _ in range(rng.randrange(5))]
    return [",".join(items), items, json.dumps(items)][kind - 4]


def random_context(rng: random.Random) -> dict:
    keys = rng.sample(sorted(CONTEXT_KEYS), rng.randrange(len(CONTEXT_KEYS) + 1))
    return {key: random_value(rng, key) for key in keys}


# ------------------------------------------------------------------------------ invariants


def assert_refusal(exc: ConfigError) -> None:
    message = str(exc)
    assert message.splitlines() == [message] and "\n" not in message, message
    # the exchange's own keys are named under it: exchange.orders
    assert exc.key in CONTEXT_KEYS or exc.key.startswith("exchange."), message
    assert message.startswith(f"context {exc.key}="), message
    assert len(message) < 2000, message  # a huge value is cut short


def assert_ingress_is_sane(cidrs: tuple[str, ...]) -> None:
    assert len(set(cidrs)) == len(cidrs)
    networks = [ipaddress.ip_network(c) for c in cidrs]
    assert [str(n) for n in networks] == list(cidrs)  # canonical spellings only
    for version in (4, 6):
        mine = [n for n in networks if n.version == version]
        assert len(mine) <= MAX_CIDRS_PER_VERSION
        assert internet_addresses(mine) <= MAX_INTERNET_ADDRESSES[version]
    for net in networks:
        assert not any(net.version == 6 and net.overlaps(block) for block in EMBEDDED_IPV4)


def assert_config_is_sane(config: DeploymentConfig) -> None:
    assert _NAME.fullmatch(config.deployment_name)
    family, size = config.instance_type.split(".")
    assert size in GRAVITON_FAMILIES[family] and SIZE_VCPUS[size] >= MIN_VCPUS
    assert type(config.host_count) is int and 1 <= config.host_count <= 16
    assert type(config.telemetry_port) is int and 1024 <= config.telemetry_port <= 65535
    assert_ingress_is_sane(config.allowed_cidrs)
    assert all(_SUBNET_ID.fullmatch(s) for s in config.subnet_ids)
    assert all(_AZ.fullmatch(z) for z in config.availability_zones)
    assert (config.vpc_id is None) == (not config.subnet_ids)
    assert config.slo_p50_us <= config.slo_p99_us <= config.slo_p999_us
    assert (
        config.runbook_base_url.startswith("https://") and len(config.runbook_base_url) <= MAX_URL
    )
    if config.wheel_s3_uri is not None:
        assert config.wheel_s3_uri.startswith("s3://") and config.wheel_s3_uri.endswith(".whl")
        assert not set("'\"*$` ;") & set(config.wheel_s3_uri)
    for value in (config.deployment_name, config.ssh_key_name, config.alarm_email):
        assert value is None or (value.isascii() and value.isprintable())
    # the host tuning follows, and its firewall admits exactly what the security group does
    profile = config.profile
    assert isinstance(profile, TuningProfile)
    assert profile.ssh_cidrs == profile.telemetry_cidrs == config.allowed_cidrs
    assert profile.exchange == config.exchange
    if config.exchange is not None:  # the addresses the security group and firewall open
        x = config.exchange
        assert_ingress_is_sane(x.cidrs)
        assert x.market_data.multicast
        networks = [ipaddress.ip_network(c) for c in x.cidrs]
        for ep in (x.recovery, x.orders):
            assert not ep.multicast and any(ep.ip in net for net in networks)


def from_context(context: dict) -> DeploymentConfig | None:
    with time_limit(EXAMPLE_SECONDS, "from_context"):
        try:
            config = DeploymentConfig.from_context(context.get)
        except ConfigError as exc:
            assert_refusal(exc)
            return None
    assert_config_is_sane(config)
    return config


# ------------------------------------------------------------------------------ the fuzzing

FUZZ = settings(
    max_examples=400,
    deadline=timedelta(seconds=EXAMPLE_SECONDS),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@FUZZ
@given(context=CONTEXTS)
def test_any_context_is_a_sane_config_or_one_line_naming_the_key(context):
    from_context(context)


@settings(max_examples=400, deadline=timedelta(seconds=EXAMPLE_SECONDS))
@given(key=st.sampled_from(sorted(CONTEXT_KEYS)), data=st.data())
def test_each_key_alone(key, data):
    """One key at a time, so each parser meets every kind of value (no other key's refusal
    comes first)."""
    from_context({key: data.draw(VALUES[key])})


BATCH = 250


@settings(max_examples=32, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_thousands_of_contexts_in_batches(seed):
    """32 seeds x 250 contexts: 8000 contexts, in a second or two."""
    rng = random.Random(seed)
    for _ in range(BATCH):
        context = random_context(rng)
        try:
            from_context(context)
        except AssertionError as exc:
            raise AssertionError(f"{exc} (context: {context!r:.2000})") from exc


def test_the_fuzzing_reaches_good_configs_too():
    """The strategies are not so wild that nothing is ever accepted."""
    context = {key: values[0] for key, values in PLAUSIBLE.items() if key != "vpcId"}
    config = from_context({**context, "subnetIds": "", "amiMode": "userdata"})
    assert config is not None and config.allowed_cidrs == ("203.0.113.0/24",)


# ------------------------------------------------------------------------------ the exchange

ADDRESSES = [
    "239.192.0.1:31001",
    "[ff15::1]:31001",
    "224.0.0.1:31001",
    "10.50.0.10:31002",
    "10.60.0.10:31003",
    "[fd00:50::10]:31003",
    "10.50.0.10",
    "10.50.0.10:0",
    "10.50.0.10:65536",
    "exchange.example.com:31003",
    "fd00:50::10:31003",
    "0.0.0.0:31003",
    "[::]:1",
]
EXCHANGE_CIDRS = ["10.50.0.0/24", "fd00:50::/64", "0.0.0.0/0", "10.50.0.1/24", "2002::/16"]
EXCHANGE_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "marketData": st.sampled_from(ADDRESSES) | JSON,
        "recovery": st.sampled_from(ADDRESSES) | JSON,
        "orders": st.sampled_from(ADDRESSES) | JSON,
        "cidrs": st.lists(st.sampled_from(EXCHANGE_CIDRS), max_size=3)
        | st.sampled_from(EXCHANGE_CIDRS)
        | JSON,
        "session": near(["LOWLAT0001", "X"]) | JSON,
        "marketdata": st.sampled_from(ADDRESSES),  # a typo of a key
    },
)


@FUZZ
@given(exchange=EXCHANGE_OBJECTS, as_text=st.booleans())
def test_any_exchange_is_one_the_host_can_open_or_one_line_naming_its_key(exchange, as_text):
    """Objects close to good ones (cdk.json's, or `-c exchange=<JSON>`): a sane exchange, or a
    refusal naming exchange.<key> (its own key, never only "exchange", unless it is no object)."""
    context = {"exchange": json.dumps(exchange) if as_text else exchange}
    with time_limit(EXAMPLE_SECONDS, "from_context"):
        try:
            config = DeploymentConfig.from_context(context.get)
        except ConfigError as exc:
            assert_refusal(exc)
            assert exc.key.startswith("exchange."), str(exc)
            return
    assert_config_is_sane(config)
    assert config.exchange is not None


# ------------------------------------------------------------------------------ the CIDRs


def split(rng: random.Random, whole: str, cuts: int) -> list:
    """``whole`` cut into CIDR pieces at random: ``cuts`` times, halve a random piece."""
    pieces = [ipaddress.ip_network(whole)]
    for _ in range(cuts):
        i = rng.randrange(len(pieces))
        if pieces[i].prefixlen < pieces[i].max_prefixlen:
            pieces[i : i + 1] = list(pieces[i].subnets(prefixlen_diff=1))
    rng.shuffle(pieces)
    return pieces


def spelled(net, how: int) -> str:
    """One piece as someone might write it: canonical, with the host bits of its last address,
    as an IPv4-mapped IPv6 range, or with a netmask."""
    if how == 1 and net.prefixlen < net.max_prefixlen:
        return f"{net.broadcast_address}/{net.prefixlen}"
    if how == 2 and net.version == 4:
        return f"::ffff:{net.network_address}/{96 + net.prefixlen}"
    if how == 3 and net.version == 4:
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def covering_list(rng: random.Random, whole: str, cuts: int) -> list[str]:
    """Ranges whose union is ``whole``, spelled in mixed ways, with repeats and a few harmless
    extra ranges, in random order."""
    names = [spelled(net, rng.choice([0, 0, 1, 2, 3])) for net in split(rng, whole, cuts)]
    names += rng.sample(names, rng.randrange(min(3, len(names)) + 1))
    names += rng.sample(["203.0.113.0/24", "10.0.0.0/8", "2001:db8::/32"], rng.randrange(3))
    rng.shuffle(names)
    return names


@settings(max_examples=250, deadline=timedelta(seconds=EXAMPLE_SECONDS))
@given(
    whole=st.sampled_from(["0.0.0.0/0", "::/0"]),
    cuts=st.integers(0, 64),
    seed=st.integers(0, 2**64 - 1),
)
def test_ranges_that_cover_the_whole_space_are_refused(whole, cuts, seed):
    cidrs = covering_list(random.Random(seed), whole, cuts)
    with pytest.raises(CidrError):
        admitted_cidrs(cidrs)
    for raw in (cidrs, ",".join(cidrs), json.dumps(cidrs)):
        with pytest.raises(ConfigError) as info:
            DeploymentConfig.from_context({"allowedCidrs": raw}.get)
        assert_refusal(info.value)
        assert info.value.key == "allowedCidrs"


@settings(max_examples=400, deadline=timedelta(seconds=EXAMPLE_SECONDS))
@given(
    cidrs=st.lists(
        st.one_of(
            st.builds(
                lambda a, p: str(ipaddress.ip_network((a, p), strict=False)),
                st.integers(0, 2**32 - 1),
                st.integers(0, 32),
            ),
            st.builds(
                lambda a, p: str(ipaddress.ip_network((a, p), strict=False)),
                st.integers(0, 2**128 - 1),
                st.integers(0, 128),
            ),
        ),
        max_size=12,
    )
)
def test_accepted_ranges_never_exceed_the_bound(cidrs):
    """Random canonical networks: accepted exactly when within the bound (and clear of the
    IPv6 blocks that stand for IPv4 hosts)."""
    networks = [ipaddress.ip_network(c) for c in cidrs]
    within = all(
        internet_addresses([n for n in networks if n.version == v]) <= MAX_INTERNET_ADDRESSES[v]
        for v in (4, 6)
    ) and not any(n.version == 6 and n.overlaps(b) for n in networks for b in EMBEDDED_IPV4)
    try:
        got = admitted_cidrs(cidrs)
    except CidrError as exc:
        assert not within, exc
        assert "\n" not in str(exc)
    else:
        assert within
        assert got == tuple(dict.fromkeys(cidrs))


@pytest.mark.parametrize(
    "cidrs",
    [
        "0.0.0.0/1,128.0.0.0/1",
        "0.0.0.0/00",
        "000.0.0.0/0",
        " 0.0.0.0/0",
        "::/0",
        "::ffff:0:0/96",
        "0::0/0",
        "1.2.3.4/0",
        "0.0.0.0/2",
        "0.0.0.0/0.0.0.0",
        "::ffff:0.0.0.0/97,::ffff:128.0.0.0/97",
        "2002::/16",  # 6to4: every IPv4 address
        "::/1,8000::/1",
        "1.0.0.0/8,2.0.0.0/8",  # two /8s of the internet
        "10.0.0.0/8,0.0.0.0/1,128.0.0.0/1",
    ],
)
def test_every_known_walk_around_is_refused(cidrs):
    with pytest.raises(ConfigError) as info:
        DeploymentConfig.from_context({"allowedCidrs": cidrs}.get)
    assert_refusal(info.value)


def test_the_refusal_says_which_ranges_were_combined():
    with pytest.raises(ConfigError) as info:
        DeploymentConfig.from_context({"allowedCidrs": "0.0.0.0/1,10.0.0.0/8,128.0.0.0/1"}.get)
    message = str(info.value)
    assert "0.0.0.0/1, 128.0.0.0/1 together cover 0.0.0.0/0" in message
    assert "whole IPv4 internet" in message and "/8's worth" in message


@pytest.mark.parametrize(
    ("cidrs", "words"),
    [
        ("::ffff:1.2.3.0/120", "IPv4-mapped, ::ffff:0:0/96"),
        ("2002:102:300::/40", "write 1.2.3.0/24"),
        ("::/64", "overlaps ::ffff:0:0/96"),
        ("2001:DB8::/32", "write 2001:db8::/32"),
        ("10.0.0.0/255.0.0.0", "write 10.0.0.0/8"),
        ("192.0.2.7/24", "host bits set: write 192.0.2.0/24 for the network, or 192.0.2.7/32"),
    ],
)
def test_other_spellings_say_the_one_to_write(cidrs, words):
    with pytest.raises(ConfigError) as info:
        DeploymentConfig.from_context({"allowedCidrs": cidrs}.get)
    assert words in str(info.value)


def test_private_ranges_and_a_slash_8_are_admitted():
    config = DeploymentConfig.from_context(
        {"allowedCidrs": "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,44.0.0.0/8,fd00::/8"}.get
    )
    assert config.allowed_cidrs[-1] == "fd00::/8"


# ------------------------------------------------------------------------------ through app.py


def _run_app(context: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["CDK_CONTEXT_JSON"] = json.dumps(context)
    env["CDK_OUTDIR"] = "/nonexistent-never-written"  # it must fail before synthesizing
    return subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_app_refuses_the_internet_in_two_halves_in_one_line():
    result = _run_app({"allowedCidrs": "0.0.0.0/1,128.0.0.0/1"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lowlat: context allowedCidrs='0.0.0.0/1,128.0.0.0/1': ")
    assert "whole IPv4 internet" in lines[0]
    assert result.stdout == ""


LOCAL_CLI = REPO / "tools" / "cdk-cli" / "node_modules" / ".bin" / "cdk"
CLI = str(LOCAL_CLI) if LOCAL_CLI.exists() else shutil.which("cdk")


@pytest.mark.slow
@pytest.mark.skipif(CLI is None, reason="CDK CLI not installed (`make cdk-cli` installs it)")
def test_cdk_synth_refuses_the_internet_in_two_halves(tmp_path):
    """The real CLI, as an operator types it: the app's one line reaches the terminal, no
    traceback, nothing synthesized."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        CDK_DISABLE_CLI_TELEMETRY="true", JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20"
    )
    result = subprocess.run(
        [CLI, "synth", "--no-notices", "--quiet", "--output", str(tmp_path / "out"),
         "-c", "allowedCidrs=0.0.0.0/1,128.0.0.0/1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode != 0
    line = "lowlat: context allowedCidrs='0.0.0.0/1,128.0.0.0/1': 0.0.0.0/1, 128.0.0.0/1 together"
    assert line in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "out").glob("*.template.json"))
