"""What the lab host is given at boot, as EC2 would give it: the CDK app's user data, and a key.

``synth_user_data`` runs the CDK app (``app.py``, as ``cdk synth`` runs it: the context in
``CDK_CONTEXT_JSON``, the assembly in ``CDK_OUTDIR``) for ``hostOs=debian12`` and takes the first
host's ``UserData`` from the synthesized TradingHostStack template, resolving the few
CloudFormation intrinsics it may hold (``Fn::Base64``, ``Fn::Join``, ``Fn::Sub`` and the pseudo
parameters). ``write_seed`` puts it on a NoCloud volume (an ISO 9660 image labelled ``cidata``)
with meta-data that carries the SSH public key, which cloud-init installs for the login user as
EC2's key pair would be.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST_OS = "debian12"
# The lab boots the c6g.large shape (lab.vm.SMP, 2 vCPUs), so the CDK app renders that profile.
INSTANCE_TYPE = "c6g.large"
# Where this machine's connections come from, as the host sees them through QEMU's user
# networking: the operator's address, admitted by the security group and the host firewall.
OPERATOR_CIDR = "10.0.2.2/32"
STACK = "TradingHostStack"
PSEUDO = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "lowlat-lab",
    "AWS::NoValue": "",
}


class SeedError(Exception):
    """The user data could not be made: one line."""


def synth_user_data(
    python: str = sys.executable, context: dict[str, str] | None = None, keep: Path | None = None
) -> str:
    """The first host's user data, as ``cdk synth -c hostOs=debian12 -c instanceType=c6g.large``
    writes it."""
    cdk_json = json.loads((REPO / "cdk.json").read_text())
    merged = {
        **cdk_json.get("context", {}),
        "hostOs": HOST_OS,
        "instanceType": INSTANCE_TYPE,
        "allowedCidrs": OPERATOR_CIDR,
        **(context or {}),
    }
    with tempfile.TemporaryDirectory(prefix="lowlat-lab-synth-") as out:
        env = {**os.environ, "CDK_OUTDIR": out, "CDK_CONTEXT_JSON": json.dumps(merged)}
        result = subprocess.run(
            [python, str(REPO / "app.py")], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise SeedError(f"cdk synth (app.py, hostOs={HOST_OS}) failed: {last}")
        template_path = Path(out) / f"{STACK}.template.json"
        template = json.loads(template_path.read_text())
        if keep:  # the alarms' metric names, for the Prometheus step
            (keep / template_path.name).write_text(template_path.read_text())
    return user_data(template)


def user_data(template: dict[str, Any]) -> str:
    """The user data of the template's first EC2 instance, intrinsics resolved."""
    instances = sorted(
        name
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::EC2::Instance"
    )
    if not instances:
        raise SeedError(f"{STACK} has no AWS::EC2::Instance")
    raw = template["Resources"][instances[0]]["Properties"].get("UserData")
    if raw is None:
        raise SeedError(f"{instances[0]} has no UserData")
    text = resolve(raw)
    if not isinstance(text, str):
        raise SeedError(f"{instances[0]}'s UserData resolves to {type(text).__name__}, not text")
    return text


def resolve(value: Any) -> Any:
    """``value`` with the intrinsics user data can hold evaluated; SeedError for any other."""
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: resolve(v) for k, v in value.items()}
    ((key, arg),) = value.items()
    if key == "Fn::Base64":
        return str(resolve(arg))  # EC2 decodes it again: what the host sees is the text
    if key == "Fn::Join":
        separator, parts = arg
        return str(separator).join(str(p) for p in resolve(parts))
    if key == "Ref" and arg in PSEUDO:
        return PSEUDO[arg]
    if key == "Fn::Sub" and isinstance(arg, str):
        return re.sub(r"\$\{([^}!]+)\}", lambda m: _pseudo(m.group(1)), arg)
    if key.startswith("Fn::") or key == "Ref":
        raise SeedError(
            f"user data holds {key} {json.dumps(arg)[:80]}, which the lab cannot resolve"
        )
    return {key: resolve(arg)}


def _pseudo(name: str) -> str:
    if name not in PSEUDO:
        raise SeedError(f"user data refers to ${{{name}}}, which the lab cannot resolve")
    return PSEUDO[name]


def meta_data(public_key: str, instance_id: str = "i-0lowlatlab00000") -> str:
    key = public_key.strip()
    return f"instance-id: {instance_id}\nlocal-hostname: lowlat-lab\npublic-keys:\n  - {key}\n"


def write_seed(path: Path, user_data_text: str, public_key: str) -> Path:
    """The NoCloud volume (ISO 9660, label cidata) with ``user-data`` and ``meta-data``."""
    with tempfile.TemporaryDirectory(prefix="lowlat-lab-seed-") as tmp:
        (Path(tmp) / "user-data").write_text(user_data_text)
        (Path(tmp) / "meta-data").write_text(meta_data(public_key))
        result = subprocess.run(
            ["genisoimage", "-quiet", "-output", str(path), "-volid", "cidata", "-joliet",
             "-rock", f"{tmp}/user-data", f"{tmp}/meta-data"],
            capture_output=True, text=True,
        )  # fmt: skip
    if result.returncode != 0:
        raise SeedError(f"genisoimage failed: {result.stderr.strip()[-200:]}")
    return path


def decode_if_base64(text: str) -> str:
    """User data as a person reads it (EC2 accepts it base64-encoded too)."""
    try:
        return base64.b64decode(text, validate=True).decode()
    except ValueError:
        return text


def alarm_metric_names(workdir: Path) -> list[str]:
    """The /metrics families the synthesized alarms read (``trading_*`` metric names)."""
    template = json.loads((workdir / f"{STACK}.template.json").read_text())
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("MetricName")
            if isinstance(name, str) and name.startswith("trading_"):
                found.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::CloudWatch::Alarm":
            walk(resource)
    return sorted(found)
