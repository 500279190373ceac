"""Snapshots of the synthesized templates, one per host OS (default context, and the default
context with ``-c hostOs=ubuntu2404``): a safety net that shows any change to what `cdk deploy`
would do, on top of the assertions in tests/infra/test_stacks.py.

After an intended change, review the diff and refresh the snapshots:

    LOWLAT_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/infra/test_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.infra_apps import synth

SNAPSHOTS = Path(__file__).parent / "snapshots"
# variant of tests/support/infra_apps.py -> its snapshot file
FILES = {"default": "infra_default.json", "ubuntu2404": "infra_ubuntu2404.json"}


def _templates(variant: str) -> dict:
    s = synth(variant)
    return {stack: json.loads(path.read_text()) for stack, path in s.templates().items()}


@pytest.mark.parametrize("variant", list(FILES))
def test_templates_match_the_snapshot(variant):
    snapshot = SNAPSHOTS / FILES[variant]
    got = _templates(variant)
    if os.environ.get("LOWLAT_UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(snapshot.read_text())
    for stack in expected:
        assert got[stack] == expected[stack], (
            f"{stack} differs from {snapshot.name}; if intended, refresh it: "
            "LOWLAT_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/infra/test_snapshot.py"
        )
    assert set(got) == set(expected)
