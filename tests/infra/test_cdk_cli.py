"""The real CDK CLI (``aws-cdk@2.1148.1``, installed under tools/cdk-cli by ``make test``) runs
``cdk synth`` through cdk.json with no AWS credentials in the environment: synthesis must need
no account, no lookup and no network. Skipped, saying why, when the CLI is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
