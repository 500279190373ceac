"""Synthesized lowlat CDK apps shared by the tests/infra/test_*.py modules.

Synthesis goes through jsii and takes seconds per app, so each variant is built once per test
run (``functools.cache``) with cdk.json's context (its feature flags included, as the CLI would
pass them) plus the variant's overrides, and with cdk-nag applied as app.py applies it.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk
from aws_cdk.assertions import Template

from infra.config import DeploymentConfig
from infra.stacks import TradingHostStack, TunedAmiStack, build_app

ROOT = REPO
CDK_JSON = ROOT / "cdk.json"

# name -> context overrides (as cdk.json or -c would give them)
VARIANTS = {
    "default": {},
    "two_hosts": {
        "hostCount": "2",  # as `-c hostCount=2` passes it: a string
        "allowedCidrs": "203.0.113.0/24,2001:db8::/32",
        "sshKeyName": "lowlat-ops",
        "alarmEmail": "oncall@example.com",
        "terminationProtection": "true",
    },
    "bake": {"amiMode": "bake", "hostCount": 2, "wheelS3Uri": "s3://bucket/lowlat-0.1.0.whl"},
    "existing_vpc": {
        "vpcId": "vpc-0123456789abcdef0",
        "subnetIds": '["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]',
        "availabilityZones": "eu-west-1a,eu-west-1b",
        "allowedCidrs": ["10.20.0.0/16"],
        "deploymentName": "lowlat-prod",
    },
    "ubuntu2404": {"hostOs": "ubuntu2404"},  # as `-c hostOs=ubuntu2404` passes it
    "debian12": {"hostOs": "debian12"},  # user data only: no TunedAmiStack
    "exchange": {  # trading with a real exchange: its addresses open, nothing else
        "exchange": {
            "marketData": "239.192.0.1:31001",
            "recovery": "10.50.0.10:31002",
            "orders": "10.50.0.11:31003",
            "cidrs": ["10.50.0.0/24", "fd00:50::/64"],
        },
        "allowedCidrs": "203.0.113.0/24",
    },
}


def cdk_json_context() -> dict:
    return json.loads(CDK_JSON.read_text())["context"]


@dataclass(frozen=True)
class Synthesized:
    config: DeploymentConfig
    ami: TunedAmiStack | None  # None for an OS Image Builder cannot build (debian12)
    hosts: TradingHostStack
    ami_template: Template | None
    hosts_template: Template
    outdir: Path

    def templates(self) -> dict[str, Path]:
        """Stack name -> the template file the assembly holds."""
        names = ("TunedAmiStack", "TradingHostStack") if self.ami else ("TradingHostStack",)
        return {name: self.outdir / f"{name}.template.json" for name in names}


@functools.cache
def synth(variant: str) -> Synthesized:
    context = {**cdk_json_context(), **VARIANTS[variant]}
    outdir = Path(tempfile.mkdtemp(prefix=f"lowlat-cdk-{variant}-"))
    app = cdk.App(context=context, outdir=str(outdir))
    config = DeploymentConfig.from_context(app.node.try_get_context)
    ami, hosts = build_app(app, config)
    app.synth()
    return Synthesized(
        config,
        ami,
        hosts,
        Template.from_stack(ami) if ami else None,
        Template.from_stack(hosts),
        outdir,
    )
