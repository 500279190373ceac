"""Every alarm in the synthesized Monitoring template links a runbook file that exists.

The description of each alarm ends with ``Runbook: <runbookBaseUrl>/runbooks/<AlarmKind>.md``;
the path after the base URL must be a file of this repository, named exactly like the catalog
alarm the AlarmName starts with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import alarms as catalog
from tests.support.paths import REPO
from tests.support.synth_monitoring import RUNBOOK_BASE, alarms, synth


@pytest.fixture(scope="module")
def described() -> dict[str, str]:
    """AlarmName -> AlarmDescription of every alarm, for two hosts."""
    return {p["AlarmName"]: p["AlarmDescription"] for p in alarms(synth((4, 8))).values()}


def test_every_alarm_links_an_existing_runbook(described):
    missing = []
    for name, description in described.items():
        _, sep, url = description.rpartition("Runbook: ")
        assert sep and url.startswith(f"{RUNBOOK_BASE}/"), f"{name}: no runbook link"
        relative = url.removeprefix(f"{RUNBOOK_BASE}/")
        kind = Path(relative).stem
        assert relative == f"runbooks/{kind}.md", f"{name}: {url}"
        assert name.startswith(f"{kind}-") and kind in catalog.ALARM_NAMES, (name, kind)
        if not (REPO / relative).is_file():
            missing.append(f"{name} -> {relative}")
    assert not missing, "runbooks missing:\n" + "\n".join(sorted(set(missing)))


def test_every_catalog_alarm_has_a_runbook():
    missing = [a.runbook for a in catalog.ALARMS if not (REPO / a.runbook).is_file()]
    assert not missing, f"runbooks missing: {missing}"
