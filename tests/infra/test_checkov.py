"""checkov (the Bridgecrew/Prisma Cloud IaC scanner, a rule suite we did not write) over every
synthesized template (both stacks, every variant of tests/support/infra_apps.py): no failed
check, and no skip but the ones listed here, each written by infra/checkov.py with its reason.

checkov runs once for the module, over one directory holding every template (and a canary
template with a known finding, which proves the run does catch one), offline: no API key,
``--skip-download``, ``BC_SKIP_MAPPING``, no update check, no SCA scan. It lives in its own venv
(``make checkov``, tools/checkov-venv, pinned to the Makefile's CHECKOV_VERSION): its own pins
(boto3, packaging, networkx) cannot share .venv. Skipped, saying why, when it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.checkov import SKIPS
from tests.support.infra_apps import VARIANTS, synth
from tests.support.paths import REPO

CHECKOV_VERSION = re.search(
    r"^CHECKOV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE
).group(1)
_CANDIDATES = (
    REPO / "tools" / "checkov-venv" / "bin" / "checkov",  # make checkov
    Path(sys.executable).parent / "checkov",  # or installed next to this interpreter
)
CHECKOV = next((path for path in _CANDIDATES if path.exists()), None)
TIMEOUT_S = 300  # a run takes about ten seconds; a hang (a download?) fails, never blocks

pytestmark = pytest.mark.skipif(
    CHECKOV is None,
    reason=f"checkov not installed: `make checkov` (or `make test`) installs checkov=="
    f"{CHECKOV_VERSION} into tools/checkov-venv",
)

# The canary: one resource checkov must fail (a log group without a KMS key, CKV_AWS_158).
CANARY = "canary.template.json"
CANARY_TEMPLATE = {
    "Resources": {"Plain": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}}}
}

# Every skip checkov may report: (template, check id, logical id). A new one fails this test
# until it is reviewed and added here, with its reason in infra/checkov.py.
PROVIDER_HANDLER = "CustomVpcRestrictDefaultSGCustomResourceProviderHandlerDC833E5E"
HOST1, HOST2 = "HostsHost160D38587", "HostsHost27BE836A0"
_NEW_VPC_HANDLER = {
    ("CKV_AWS_115", PROVIDER_HANDLER),
    ("CKV_AWS_116", PROVIDER_HANDLER),
    ("CKV_AWS_117", PROVIDER_HANDLER),
}
EXPECTED_SKIPS = {
    (f"{variant}.TradingHostStack.template.json", check, resource)
    for variant, skips in {
        "default": {*_NEW_VPC_HANDLER, ("CKV_AWS_88", HOST1)},
        "two_hosts": {*_NEW_VPC_HANDLER, ("CKV_AWS_88", HOST1), ("CKV_AWS_88", HOST2)},
        "bake": {*_NEW_VPC_HANDLER, ("CKV_AWS_88", HOST1), ("CKV_AWS_88", HOST2)},
        "existing_vpc": {("CKV_AWS_88", HOST1)},  # an imported VPC: no CDK handler
        "ubuntu2404": {*_NEW_VPC_HANDLER, ("CKV_AWS_88", HOST1)},
        "debian12": {*_NEW_VPC_HANDLER, ("CKV_AWS_88", HOST1)},
        "exchange": {*_NEW_VPC_HANDLER, ("CKV_AWS_88", HOST1)},  # no new skip for its rules
    }.items()
    for check, resource in skips
}  # TunedAmiStack: none


@dataclass(frozen=True)
class Scan:
    """What one checkov run over ``directory`` reported."""

    directory: Path
    templates: tuple[str, ...]  # file names, the canary's included
    results: dict  # checkov's "results": passed_checks, failed_checks, skipped_checks, ...
    version: str
    seconds: float

    def checks(self, kind: str, *, canary: bool = False) -> list[dict]:
        """``kind`` (passed, failed or skipped) checks of the lowlat templates, or the
        canary's."""
        return [
            check for check in self.results[f"{kind}_checks"] if (_file(check) == CANARY) == canary
        ]


def _file(check: dict) -> str:
    return Path(check["file_path"]).name


def _logical_id(check: dict) -> str:
    return check["resource"].split(".", 1)[1]  # "AWS::EC2::Instance.HostsHost160D38587"


def _environment() -> dict[str, str]:
    """This environment less anything that could point checkov at a platform or an account,
    plus the switches that keep it offline."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "BC_", "PRISMA_", "CKV_", "CHECKOV_"))
    }
    env.update(
        BC_SKIP_MAPPING="TRUE",  # no mapping or guideline download from the platform
        CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false",  # no package scan (it would query a service)
        CKV_SKIP_PACKAGE_UPDATE_CHECK="true",  # no "update available" query to PyPI
        LOG_LEVEL="WARNING",
    )
    return env


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Scan:
    directory = tmp_path_factory.mktemp("checkov")
    for variant in VARIANTS:
        for stack, path in synth(variant).templates().items():
            shutil.copy(path, directory / f"{variant}.{stack}.template.json")
    (directory / CANARY).write_text(json.dumps(CANARY_TEMPLATE))
    command = [
        str(CHECKOV),
        *("--directory", str(directory)),
        *("--framework", "cloudformation"),
        *("--output", "json"),
        "--compact",  # no code blocks in the report
        "--skip-download",
    ]
    started = time.monotonic()
    # cwd: the templates, so no .checkov.yaml of anyone else's applies
    result = subprocess.run(
        command,
        cwd=directory,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.monotonic() - started
    # exit status 1 means failed checks (the canary's, at least): read the report either way
    assert result.returncode in (0, 1), (
        f"checkov exited {result.returncode}: {result.stderr[-3000:]}"
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov printed no JSON report: {result.stdout[:500]} {result.stderr[-2000:]}"
        )
    reports = report if isinstance(report, list) else [report]
    (cloudformation,) = [r for r in reports if r.get("check_type") == "cloudformation"]
    return Scan(
        directory,
        tuple(sorted(p.name for p in directory.iterdir())),
        cloudformation["results"],
        cloudformation["summary"]["checkov_version"],
        seconds,
    )


def test_checkov_is_the_pinned_version(scan):
    # the expected skips below are what this release of the rules reports
    assert scan.version == CHECKOV_VERSION, "run `make checkov` (the Makefile's CHECKOV_VERSION)"


def test_every_template_was_scanned(scan):
    assert scan.results.get("parsing_errors", []) == []
    scanned = {_file(c) for kind in ("passed", "failed", "skipped") for c in scan.checks(kind)}
    assert scanned == set(scan.templates) - {CANARY}
    # every stack of every variant (TunedAmiStack only where Image Builder can build the OS)
    assert len(scan.templates) - 1 == sum(len(synth(v).templates()) for v in VARIANTS)


def test_no_failed_check(scan):
    failed = sorted(
        f"{c['check_id']} ({c['check_name']}): {c['resource']} in {_file(c)}"
        for c in scan.checks("failed")
    )
    assert failed == [], "fix it in infra/, or skip it with its reason in infra/checkov.py"


def test_the_scan_does_catch_a_finding(scan):
    failed = {(c["check_id"], _logical_id(c)) for c in scan.checks("failed", canary=True)}
    assert ("CKV_AWS_158", "Plain") in failed


def test_skips_are_the_reviewed_ones(scan):
    skipped = {(_file(c), c["check_id"], _logical_id(c)) for c in scan.checks("skipped")}
    assert skipped == EXPECTED_SKIPS


def test_skips_in_the_templates_are_infra_checkov_ones(scan):
    # what the templates carry is what checkov reported skipped, each with its reason from
    # infra/checkov.py's table, written nowhere else
    reasons = {(check, reason) for checks in SKIPS.values() for check, reason in checks.items()}
    found = set()
    for name in set(scan.templates) - {CANARY}:
        resources = json.loads((scan.directory / name).read_text())["Resources"]
        for logical_id, resource in resources.items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                found.add((name, skip["id"], logical_id))
                assert (skip["id"], skip["comment"]) in reasons, (name, logical_id, skip)
                assert len(skip["comment"]) >= 60, skip  # a reason, not a shrug
    assert found == EXPECTED_SKIPS
    # and no row of the table is dead
    assert {check for _, check, _ in found} == {check for check, _ in reasons}


def test_counts(scan):
    # per template: passed, failed, skipped (shown with -rA or on failure; never empty)
    counts = Counter(
        (_file(c), kind) for kind in ("passed", "failed", "skipped") for c in scan.checks(kind)
    )
    table = {
        name: tuple(counts[(name, kind)] for kind in ("passed", "failed", "skipped"))
        for name in sorted(set(scan.templates) - {CANARY})
    }
    print(f"checkov {scan.version} in {scan.seconds:.1f} s (passed, failed, skipped): {table}")
    assert all(passed > 0 for passed, _, _ in table.values()), table
