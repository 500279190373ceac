"""The real CDK CLI (``aws-cdk@2.1148.1``, installed under tools/cdk-cli by ``make test``) runs
``cdk synth`` through cdk.json with no AWS credentials in the environment: synthesis must need
no account, no lookup and no network. Skipped, saying why, when the CLI is not installed."""

from __future__ import annotations

import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from infra.host import unz85
from tests.support.paths import REPO

ROOT = REPO
LOCAL_CLI = ROOT / "tools" / "cdk-cli" / "node_modules" / ".bin" / "cdk"
CLI = str(LOCAL_CLI) if LOCAL_CLI.exists() else shutil.which("cdk")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CLI is None,
        reason="CDK CLI not installed: `make test` installs it (npm install --prefix "
        "tools/cdk-cli aws-cdk@2.1148.1), which needs node and npm",
    ),
]


def _cdk(*args: str, outdir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        CDK_DISABLE_CLI_TELEMETRY="true",  # the CLI would otherwise try to send usage data
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20",
    )
    return subprocess.run(
        [CLI, "synth", "--no-notices", "--quiet", "--output", str(outdir), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _outputs(outdir: Path) -> set[str]:
    template = json.loads((outdir / "TradingHostStack.template.json").read_text())
    return set(template["Outputs"])


def test_cdk_synth_two_hosts_without_credentials(tmp_path):
    result = _cdk("-c", "hostCount=2", "-c", "allowedCidrs=203.0.113.0/24", outdir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "TunedAmiStack.template.json").exists()
    outputs = _outputs(tmp_path)
    assert {"Host1InstanceId", "Host2InstanceId", "Host2SsmCommand", "HostCount"} <= outputs
    assert "AwsSolutions-" not in result.stderr  # no unacknowledged cdk-nag finding


def test_cdk_synth_default_without_credentials(tmp_path):
    result = _cdk(outdir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = _outputs(tmp_path)
    assert "Host1InstanceId" in outputs and "Host2InstanceId" not in outputs


def test_cdk_synth_reports_a_bad_value_in_one_line(tmp_path):
    result = _cdk("-c", "instanceType=c5.xlarge", outdir=tmp_path)
    assert result.returncode != 0
    assert "lowlat: context instanceType='c5.xlarge': use a Graviton" in result.stderr
    assert "Traceback" not in result.stderr


def _archive(user_data: str) -> dict[str, str]:
    """The files the user data unpacks (its Z85 xz-compressed tar), by host path."""
    encoded = user_data.split("--no-same-owner\n")[1].split("\nEOF")[0]
    data = lzma.decompress(unz85(encoded))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {"/" + m.name: tar.extractfile(m).read().decode() for m in tar}


def test_cdk_synth_ubuntu_hosts_use_apt_and_grub(tmp_path):
    result = _cdk("-c", "hostOs=ubuntu2404", outdir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AwsSolutions-" not in result.stderr
    hosts = json.loads((tmp_path / "TradingHostStack.template.json").read_text())
    (instance,) = [r for r in hosts["Resources"].values() if r["Type"] == "AWS::EC2::Instance"]
    user_data = instance["Properties"]["UserData"]["Fn::Base64"]
    assert "apt-get -o DPkg::Lock::Timeout=600" in user_data and "dnf " not in user_data
    files = _archive(user_data)
    assert "GRUB_CMDLINE_LINUX_DEFAULT" in files["/etc/default/grub.d/99-lowlat.cfg"]
    assert "update-grub" in files["/usr/local/sbin/lowlat-apply-kernel-args"]
    assert 'os = "ubuntu2404"' in files["/etc/lowlat/profile.toml"]
    ami = json.loads((tmp_path / "TunedAmiStack.template.json").read_text())
    (recipe,) = [r for r in ami["Resources"].values() if r["Type"].endswith("ImageRecipe")]
    assert recipe["Properties"]["ParentImage"].startswith("ssm:/aws/service/canonical/ubuntu/")
