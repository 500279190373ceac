"""The light modules stay light: `cdk synth` and `fab --list` read metric names, the config and
the stats layout from them, and must never import (let alone compile) the numba hot path."""

from __future__ import annotations

import subprocess
import sys

LIGHT = [
    "service.stats_layout",
    "service.buckets",
    "service.metrics",
    "service.config",
    "service.records",
    "service.recording",
    "infra.config",  # app.py's typed config: read before any construct is built
    "infra.catalog",
]


def test_light_modules_do_not_import_numba():
    code = (
        f"import sys; import {', '.join(LIGHT)}; "
        "heavy = [m for m in ('numba', 'llvmlite', 'fastapi') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"heavy modules imported: {result.stdout} {result.stderr}"
