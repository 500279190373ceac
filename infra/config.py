"""The CDK app's typed deployment config: CDK context in, one validated ``DeploymentConfig`` out.

``app.py`` reads the context once (``cdk.json`` merged with ``-c key=value`` overrides, which
the CLI passes as strings) and hands ``DeploymentConfig.from_context`` a getter; stacks and
constructs only ever see the typed config. The defaults live here (``DEFAULTS``) and nowhere
else: ``cdk.json`` may repeat them as documentation, and a test proves the two agree.

A bad value raises ``ConfigError`` whose message is one line naming the context key, the value
and what is allowed; ``app.py`` prints it and exits 2 with no traceback. Whatever the context
holds (any JSON from cdk.json, any string from -c), nothing else is raised:
tests/infra/test_fuzz_context.py fuzzes it. ``allowedCidrs`` is judged as the host firewall
judges its ranges (``contracts.profile.admitted_cidrs``: one spelling, and no union of ranges
wider than a /8 of the IPv4 internet or a /32 of the IPv6 one, however it is split up).

This module is light (standard library, ``contracts``, ``ami.hostos`` and ``service.config``):
no aws_cdk import, so it can be tested and imported without jsii.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ami.hostos import ADAPTERS, BAKEABLE, DEPLOYABLE
from contracts.errors import LowlatError
from contracts.profile import (
    EXCHANGE_EXAMPLES,
    CidrError,
    Exchange,
    ExchangeError,
    TuningProfile,
    admitted_cidrs,
    check_exchange,
    one_line,
    shown,
)
from contracts.slo import MAX_OBJECTIVE_US, MIN_OBJECTIVE_US, default_objectives_us

AMI_MODES = {
    "userdata": "hosts boot hostOs's stock arm64 image, tune themselves on first boot, reboot once",
    "bake": "hosts boot the tuned image TunedAmiStack's Image Builder pipeline published",
}

# vCPUs per size, shared by every Graviton family (sizes a family lacks are listed per family).
SIZE_VCPUS = {
    "medium": 1,
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "12xlarge": 48,
    "16xlarge": 64,
    "24xlarge": 96,
    "48xlarge": 192,
    "metal": 64,
    "metal-24xl": 96,
    "metal-48xl": 192,
}
_G2_G3 = (
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "12xlarge",
    "16xlarge",
    "metal",
)
_TO_16XL = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
_G4 = (
    *("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
    *("24xlarge", "48xlarge", "metal-24xl", "metal-48xl"),
)
# Graviton (arm64) families with fixed performance: Graviton2 (6g), Graviton3 (7g), Graviton4
# (8g). Burstable t4g is left out on purpose: CPU credits throttle a busy-polling core.
GRAVITON_FAMILIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("c6g", "c6gd", "m6g", "m6gd", "r6g", "r6gd"), _G2_G3),
    "c6gn": _TO_16XL,
    **dict.fromkeys(("c7g", "c7gd", "m7g", "m7gd", "r7g", "r7gd"), _G2_G3),
    "c7gn": (*_TO_16XL, "metal"),
    **dict.fromkeys(("c8g", "m8g", "r8g"), _G4),
    "x2gd": (*_TO_16XL, "metal"),
    "im4gn": _TO_16XL,
    "is4gen": ("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge"),
}
MIN_VCPUS = 2  # one housekeeping CPU and at least one isolated CPU (TuningProfile)

# Every pattern is matched whole (fullmatch) and is ASCII only: \d or \s would let other
# scripts' digits and blanks through.
_NAME = re.compile(r"[a-z][a-z0-9-]{0,23}")
_EMAIL = re.compile(
    r"(?=.{3,254}$)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_VPC_ID = re.compile(r"vpc-[0-9a-f]{8,17}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
_AZ = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9][a-z]")
_AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")
_KEY_NAME = re.compile(r"[\x20-\x7e]{1,255}")
_WHOLE = re.compile(r"-?[0-9]{1,20}")
_DECIMAL = re.compile(r"-?([0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][-+]?[0-9]{1,3})?")
# runbookBaseUrl lands in every alarm's description (at most 1024 characters) and in the
# dashboard's markdown: a host, and a path of characters that need no quoting anywhere
_HTTPS_URL = re.compile(
    r"https://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~%+=:@,-]*)*"
)
MAX_URL = 200
# wheelS3Uri reaches a bash line of the image build (basename '...') and the build role's IAM
# resource (arn:...:s3:::bucket/key, where * would be a wildcard): a bucket name as S3 names
# them, and a key of safe characters only, ending in .whl
S3_WHEEL = re.compile(
    r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([A-Za-z0-9_+=-][A-Za-z0-9._+=-]*/)*"
    r"[A-Za-z0-9_+=-][A-Za-z0-9._+=-]*\.whl"
)
MAX_S3_URI = 5 + 63 + 1 + 1024  # s3:// + the longest bucket name + / + the longest key
# Each allowed CIDR is two security-group rules (SSH, telemetry); a group holds 60 inbound
# rules per IP version by default, so more ranges would fail at deploy time, not here.
MAX_CIDRS_PER_VERSION = 30


class ConfigError(LowlatError, ValueError):
    """A context value is wrong; the message is one line: key, value, what is allowed (a long
    value is cut short, and nothing in it can start a second line)."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(one_line(f"context {key}={shown(value)}: {allowed}"))


# context key -> (DeploymentConfig field, what it is); also the list of keys that are ours
CONTEXT_KEYS = {
    "deploymentName": ("deployment_name", "prefix of every stack and resource name"),
    "instanceType": ("instance_type", "Graviton (arm64) instance type of each host"),
    "hostCount": ("host_count", "number of hosts (a cluster placement group when > 1)"),
    "allowedCidrs": ("allowed_cidrs", "CIDRs admitted to SSH and the telemetry port"),
    "sshKeyName": ("ssh_key_name", "existing EC2 key pair for SSH (optional)"),
    "alarmEmail": ("alarm_email", "address subscribed to the alarm topic (optional)"),
    "vpcId": ("vpc_id", "existing VPC (optional; default: a new VPC)"),
    "subnetIds": ("subnet_ids", "public subnets of vpcId (with vpcId)"),
    "availabilityZones": ("availability_zones", "AZs of subnetIds, or of the new VPC"),
    "telemetryPort": ("telemetry_port", "port of the telemetry API on each host"),
    "amiMode": ("ami_mode", "bake or userdata"),
    "hostOs": ("host_os", "the hosts' operating system: al2023, ubuntu2404 or debian12 (userdata)"),
    "amiId": ("ami_id", "pin the hosts' image (else each deploy follows the SSM parameter)"),
    "runbookBaseUrl": ("runbook_base_url", "https URL under which runbooks/<Alarm>.md lives"),
    "terminationProtection": ("termination_protection", "protect stacks and instances"),
    "wheelS3Uri": ("wheel_s3_uri", "s3:// URI of the lowlat wheel the image build installs"),
    "sloTickToOrderP50Us": ("slo_p50_us", "tick-to-order p50 objective, microseconds"),
    "sloTickToOrderP99Us": ("slo_p99_us", "tick-to-order p99 objective, microseconds"),
    "sloTickToOrderP999Us": ("slo_p999_us", "tick-to-order p99.9 objective, microseconds"),
    "exchange": ("exchange", "the exchange the hosts trade with (optional; default simulated)"),
}
# the exchange's own keys (context exchange.<key>) -> contracts.profile.check_exchange's fields
EXCHANGE_KEYS = {
    "marketData": "market_data",
    "recovery": "recovery",
    "orders": "orders",
    "cidrs": "cidrs",
    "session": "session",
}
EXCHANGE_CONTEXT_KEY = {field: f"exchange.{key}" for key, field in EXCHANGE_KEYS.items()}

_SLO = default_objectives_us()


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything a deployment may choose, validated. Build it with ``from_context``."""

    deployment_name: str = "lowlat"
    instance_type: str = "c6g.xlarge"
    host_count: int = 1
    allowed_cidrs: tuple[str, ...] = ()
    ssh_key_name: str | None = None
    alarm_email: str | None = None
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    availability_zones: tuple[str, ...] = ()
    telemetry_port: int = 8000
    # userdata by default: one `cdk deploy` gives working hosts. bake needs a wheel in S3 and
    # a ~1 h image build first, and is the better choice once a fleet is replaced often.
    ami_mode: str = "userdata"
    # The OS of the hosts and of the image build (ami/hostos.py): its public image, packages,
    # boot loader and Python. AL2023 by default: AWS's own image, the one lowlat was built on.
    host_os: str = "al2023"
    # Hosts follow an SSM parameter (the OS's, or the pipeline's in bake mode), so a deploy
    # after a new image replaces them; a pinned id keeps them until someone changes it.
    ami_id: str | None = None
    runbook_base_url: str = "https://github.com/lowlat/lowlat/blob/main"
    termination_protection: bool = False
    wheel_s3_uri: str | None = None
    slo_p50_us: float = _SLO["tick_to_order_p50_us"]
    slo_p99_us: float = _SLO["tick_to_order_p99_us"]
    slo_p999_us: float = _SLO["tick_to_order_p999_us"]
    # None: the simulated exchange (the engine unit has no network at all)
    exchange: Exchange | None = None

    # ------------------------------------------------------------------ derived facts

    @property
    def vcpus(self) -> int:
        return SIZE_VCPUS[self.instance_type.split(".", 1)[1]]

    @property
    def profile(self) -> TuningProfile:
        """The host tuning for this instance type; telemetry leaves loopback only when the
        security group admits someone to its port, and the host firewall admits the same
        ranges as the security group."""
        host = "0.0.0.0" if self.allowed_cidrs else "127.0.0.1"
        return TuningProfile.for_vcpus(
            self.vcpus,
            os=self.host_os,
            telemetry_port=self.telemetry_port,
            telemetry_host=host,
            ssh_cidrs=self.allowed_cidrs,
            telemetry_cidrs=self.allowed_cidrs,
            **_exchange_profile(self.exchange),
        )

    @property
    def tuned_ami_parameter(self) -> str:
        """The SSM parameter the image pipeline writes its image id to (amiMode=bake)."""
        return f"/{self.deployment_name}/tuned-ami-id"

    # ------------------------------------------------------------------ building

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> DeploymentConfig:
        """Read every key through ``get`` (``app.node.try_get_context``); None means default."""
        values = {}
        for key, (name, _) in CONTEXT_KEYS.items():
            raw = get(key)
            if raw is None or raw == "":
                continue
            values[name] = _PARSERS[name](key, raw)
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Checks that span several keys (each key alone was checked while parsing)."""
        if self.vpc_id is None:
            if self.subnet_ids:
                raise ConfigError("subnetIds", list(self.subnet_ids), "set only with vpcId")
        else:
            if not self.subnet_ids:
                raise ConfigError(
                    "subnetIds", [], f"vpcId={self.vpc_id!r} needs its public subnet ids"
                )
            if len(set(self.subnet_ids)) != len(self.subnet_ids):
                raise ConfigError("subnetIds", list(self.subnet_ids), "name each subnet once")
            if len(self.availability_zones) != len(self.subnet_ids):
                raise ConfigError(
                    "availabilityZones",
                    list(self.availability_zones),
                    f"give one AZ per subnet in subnetIds ({len(self.subnet_ids)}), in order",
                )
        if self.vpc_id is None and len(set(self.availability_zones)) != len(
            self.availability_zones
        ):
            raise ConfigError(
                "availabilityZones", list(self.availability_zones), "name each zone once"
            )
        regions = sorted({zone[:-1] for zone in self.availability_zones})
        if len(regions) > 1:
            raise ConfigError(
                "availabilityZones",
                list(self.availability_zones),
                f"zones of one region only (these are in {', '.join(regions)})",
            )
        if self.ami_mode == "bake" and self.host_os not in BAKEABLE:
            raise ConfigError(
                "amiMode",
                self.ami_mode,
                f"EC2 Image Builder cannot build {ADAPTERS[self.host_os].title}: use "
                f"amiMode=userdata, or hostOs={' or '.join(BAKEABLE)}",
            )
        if not self.slo_p50_us <= self.slo_p99_us <= self.slo_p999_us:
            raise ConfigError(
                "sloTickToOrderP99Us",
                self.slo_p99_us,
                f"SLOs must grow with the percentile: p50 {self.slo_p50_us} <= p99 "
                f"{self.slo_p99_us} <= p99.9 {self.slo_p999_us}",
            )


def _exchange_profile(exchange: Exchange | None) -> dict[str, Any]:
    """The profile's exchange_* keys for ``exchange`` (none for the simulated exchange)."""
    if exchange is None:
        return {}
    return {
        "exchange_market_data": str(exchange.market_data),
        "exchange_recovery": str(exchange.recovery),
        "exchange_orders": str(exchange.orders),
        "exchange_cidrs": exchange.cidrs,
        "exchange_session": exchange.session,
    }


def unknown_keys(keys: Iterable[str]) -> list[str]:
    """Context keys that look like ours but are not (typos such as ``hostcount``): plain
    camelCase names without a colon, which CDK's own flags (``@aws-cdk/...``, ``aws:...``)
    always have."""
    return sorted(
        key for key in keys if re.fullmatch(r"[a-z][A-Za-z0-9]*", key) and key not in CONTEXT_KEYS
    )


# ---------------------------------------------------------------------- parsers per field


def _text(key: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(key, raw, "use a string")
    return raw.strip()


def _int_in(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(key: str, raw: Any) -> int:
        value = raw
        if isinstance(raw, str) and _WHOLE.fullmatch(raw.strip()):
            value = int(raw.strip())
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(key, raw, f"use a whole number from {low} to {high}")
        return value

    return parse


def _us(key: str, raw: Any) -> float:
    value = raw
    if isinstance(raw, str) and _DECIMAL.fullmatch(raw.strip()):
        value = float(raw.strip())
    low, high = MIN_OBJECTIVE_US, MAX_OBJECTIVE_US
    # NaN fails every comparison, so it is refused with the rest
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(key, raw, f"use a number of microseconds from {low:g} to {high:.0f}")
    return float(value)


def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ConfigError(key, raw, "use true or false")


def _list(key: str, raw: Any) -> list[str]:
    """A JSON list, or (from ``-c key=a,b``) a comma-separated string."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            # ValueError: bad JSON, or a number of more digits than int() takes;
            # RecursionError: lists nested thousands deep
            except (ValueError, RecursionError):
                raise ConfigError(key, text, "use a JSON list or comma-separated values") from None
        else:
            raw = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(key, raw, "use a list of strings (JSON or comma-separated)")
    return [v.strip() for v in raw]


def _instance_type(key: str, raw: Any) -> str:
    text = _text(key, raw).lower()
    family, _, size = text.partition(".")
    allowed = "a Graviton (arm64) type such as c6g.xlarge, c7g.2xlarge or c8g.4xlarge"
    if family not in GRAVITON_FAMILIES:
        families = ", ".join(sorted(GRAVITON_FAMILIES))
        raise ConfigError(key, raw, f"use {allowed}; known families: {families}")
    if SIZE_VCPUS.get(size, MIN_VCPUS) < MIN_VCPUS:
        raise ConfigError(
            key, raw, f"{size} has {SIZE_VCPUS[size]} vCPU; a tuned host needs >= large (2 vCPUs)"
        )
    if size not in GRAVITON_FAMILIES[family]:
        sizes = ", ".join(s for s in GRAVITON_FAMILIES[family] if SIZE_VCPUS[s] >= MIN_VCPUS)
        raise ConfigError(key, raw, f"{family} comes in {sizes}")
    return text


def _cidrs(key: str, raw: Any) -> tuple[str, ...]:
    """The ranges admitted to SSH and telemetry: the security group's rules and the host
    firewall's sets (the profile's ssh_cidrs and telemetry_cidrs), so both judge them alike
    (``contracts.profile.admitted_cidrs``: canonical spelling, not too wide however split)."""
    try:
        cidrs = admitted_cidrs(_list(key, raw))
    except CidrError as exc:
        raise ConfigError(key, raw, str(exc)) from None
    for version in (4, 6):
        mine = [c for c in cidrs if (":" in c) == (version == 6)]
        if len(mine) > MAX_CIDRS_PER_VERSION:
            raise ConfigError(
                key,
                raw,
                f"{len(mine)} IPv{version} ranges: each is two security-group rules and a group "
                f"holds 60 per IP version, so name at most {MAX_CIDRS_PER_VERSION} (merge "
                "neighbours into wider ranges)",
            )
    return cidrs


def _matching(pattern: re.Pattern, allowed: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        text = _text(key, raw)
        if not pattern.fullmatch(text):
            raise ConfigError(key, raw, allowed)
        return text

    return parse


def _list_matching(pattern: re.Pattern, allowed: str) -> Callable[[str, Any], tuple[str, ...]]:
    def parse(key: str, raw: Any) -> tuple[str, ...]:
        items = _list(key, raw)
        for item in items:
            if not pattern.fullmatch(item):
                raise ConfigError(key, item, allowed)
        return tuple(items)

    return parse


def _ami_mode(key: str, raw: Any) -> str:
    text = _text(key, raw)
    if text not in AMI_MODES:
        raise ConfigError(
            key, raw, "use one of " + "; ".join(f"{k} ({v})" for k, v in AMI_MODES.items())
        )
    return text


def _host_os(key: str, raw: Any) -> str:
    text = _text(key, raw).lower()
    if text not in DEPLOYABLE:
        why = ""
        if text in ADAPTERS:  # tuned by ami/, but with no public image for the CDK app to boot
            why = f"{ADAPTERS[text].title} has no public image to boot; "
        choices = ", ".join(f"{n} ({ADAPTERS[n].title})" for n in DEPLOYABLE)
        raise ConfigError(key, raw, f"{why}use one of {choices}")
    return text


def _https_url(key: str, raw: Any) -> str:
    text = _text(key, raw).rstrip("/")
    if len(text) > MAX_URL or not _HTTPS_URL.fullmatch(text):
        raise ConfigError(
            key,
            raw,
            f"use an https URL of at most {MAX_URL} characters, without query, blanks or "
            "quotes, e.g. https://github.com/ORG/lowlat/blob/main",
        )
    return text


def _s3_uri(key: str, raw: Any) -> str:
    text = _text(key, raw)
    if len(text) > MAX_S3_URI or not S3_WHEEL.fullmatch(text):
        raise ConfigError(
            key,
            raw,
            "use s3://BUCKET/path/lowlat-VERSION-py3-none-any.whl (a bucket name, then letters, "
            "digits and . _ + = - only)",
        )
    return text


def _exchange(key: str, raw: Any) -> Exchange:
    """``{"marketData": "239.192.0.1:31001", "recovery": "10.50.0.10:31002", "orders":
    "10.50.0.10:31003", "cidrs": ["10.50.0.0/24"]}`` (and an optional ``session``), from
    cdk.json or as JSON text from ``-c exchange=...``. Judged by
    ``contracts.profile.check_exchange``, as the host's profile is; a wrong value is reported
    under its own key (``exchange.orders``)."""
    example = "a JSON object like " + json.dumps(
        {k: EXCHANGE_EXAMPLES[f].split(" ")[0] for k, f in EXCHANGE_KEYS.items()}
    ).replace('"[', "[").replace(']"', "]").replace('\\"', '"')
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            raise ConfigError(key, raw, f"use {example}") from None
    if not isinstance(raw, dict):
        raise ConfigError(key, raw, f"use {example}")
    unknown = [k for k in raw if k not in EXCHANGE_KEYS]
    if unknown:
        typo = unknown[0]
        name = typo if typo.isprintable() and len(typo) <= 64 else shown(typo)
        raise ConfigError(
            f"{key}.{name}", raw[unknown[0]], f"not a key of {key}; use {', '.join(EXCHANGE_KEYS)}"
        )
    values: dict[str, Any] = {EXCHANGE_KEYS[k]: v for k, v in raw.items()}
    if "cidrs" in values:
        values["cidrs"] = list(_list(f"{key}.cidrs", values["cidrs"]))
    # a market data address that is not a group is an address of one host: the CDK app learns
    # its hosts' addresses only when they are deployed (and every host has its own), so the
    # context names the exchange's group; a unicast feed is set on the host itself
    try:
        exchange = check_exchange(**values)
    except ExchangeError as exc:
        value = raw.get(_camel(exc.field))
        raise ConfigError(EXCHANGE_CONTEXT_KEY[exc.field], value, _why(value, exc)) from None
    if not exchange.market_data.multicast:
        raise ConfigError(
            EXCHANGE_CONTEXT_KEY["market_data"],
            raw.get("marketData"),
            "a unicast feed is sent to one host's own address, which the CDK app cannot know "
            "before it deploys the hosts: name the exchange's multicast group, e.g. "
            f"{EXCHANGE_EXAMPLES['market_data']}",
        )
    return exchange


def _camel(field: str) -> str:
    return next(key for key, name in EXCHANGE_KEYS.items() if name == field)


def _why(value: Any, exc: ExchangeError) -> str:
    """The checker's message without the value it starts with (ConfigError shows the value)."""
    text = str(exc)
    for said in (repr(value), str(value)):
        if said and text.startswith(said):
            return text[len(said) :].lstrip(" :") or text
    return text


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "deployment_name": _matching(
        _NAME, "use 1-24 of a-z, 0-9 and -, starting with a letter (it prefixes resource names)"
    ),
    "instance_type": _instance_type,
    "host_count": _int_in(1, 16),
    "allowed_cidrs": _cidrs,
    "ssh_key_name": _matching(_KEY_NAME, "use the name of an existing EC2 key pair"),
    "alarm_email": _matching(_EMAIL, "use an email address like oncall@example.com"),
    "vpc_id": _matching(_VPC_ID, "use a VPC id like vpc-0123456789abcdef0"),
    "subnet_ids": _list_matching(_SUBNET_ID, "use subnet ids like subnet-0123456789abcdef0"),
    "availability_zones": _list_matching(_AZ, "use zone names like eu-west-1a"),
    "telemetry_port": _int_in(1024, 65535),
    "ami_mode": _ami_mode,
    "host_os": _host_os,
    "ami_id": _matching(_AMI_ID, "use an image id like ami-0123456789abcdef0 (arm64, this region)"),
    "runbook_base_url": _https_url,
    "termination_protection": _bool,
    "wheel_s3_uri": _s3_uri,
    "slo_p50_us": _us,
    "slo_p99_us": _us,
    "slo_p999_us": _us,
    "exchange": _exchange,
}

assert set(_PARSERS) == {f.name for f in dataclasses.fields(DeploymentConfig)}
assert {name for name, _ in CONTEXT_KEYS.values()} == set(_PARSERS)

# The defaults as context values (what cdk.json documents); a test compares the two.
DEFAULTS = {
    key: getattr(DeploymentConfig(), name)
    for key, (name, _) in CONTEXT_KEYS.items()
    if getattr(DeploymentConfig(), name) not in (None, ())
}
