"""Snapshot of the synthesized templates (default context): a safety net that shows any change
to what `cdk deploy` would do, on top of the assertions in tests/infra/test_stacks.py.

After an intended change, review the diff and refresh the snapshot:

    LOWLAT_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/infra/test_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.infra_apps import synth

SNAPSHOT = Path(__file__).parent / "snapshots" / "infra_default.json"


def _templates() -> dict:
    s = synth("default")
    return {stack: json.loads(path.read_text()) for stack, path in s.templates().items()}


def test_templates_match_the_snapshot():
    got = _templates()
    if os.environ.get("LOWLAT_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for stack in expected:
        assert got[stack] == expected[stack], (
            f"{stack} differs from {SNAPSHOT.name}; if intended, refresh it: "
            "LOWLAT_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/infra/test_snapshot.py"
        )
    assert set(got) == set(expected)
