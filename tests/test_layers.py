"""The import rules hold, statically and at run time.

Statically: ``lint-imports`` checks the contracts in pyproject.toml (``[tool.importlinter]``):
contracts at the bottom, the service's layers, and no JIT behind the CDK app, the host tuning or
the Fabric tasks. At run time: each light entry point, imported in a fresh interpreter with
``-X importtime``, loads none of the modules it must not (``cdk synth`` and ``fab --list`` never
compile a kernel; check-host and the tuning renderers start without numpy).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

JIT = ("numba", "llvmlite")
WEB = ("fastapi",)

# entry point -> top-level packages it must never load
LIGHT = {
    "app": JIT + WEB,
    "fabfile": JIT + WEB,
    "ops.release": JIT + WEB,
    "ops.remote": JIT + WEB,
    "ops.build": JIT + WEB,
    "ops.inspect": JIT + WEB,
    "ops.bench": JIT + WEB,
    "ops.bench_doc": JIT + WEB,
    "ops.report": (*JIT, *WEB, "matplotlib", "service"),  # matplotlib only when it draws
    "charts.draw": (*JIT, *WEB, "matplotlib", "service", "ops"),
    "charts.local_report": (*JIT, *WEB, "matplotlib", "service", "ops"),
    "lab.__main__": JIT + WEB,
    "lab.run": JIT + WEB,
    "ami.cloudwatch": JIT + WEB,
    "ami.imagebuilder": JIT + WEB,
    "infra.config": JIT,
    "infra.stacks": JIT,
    "infra.monitoring": JIT,
    "ami.render": (*JIT, *WEB, "numpy", "service"),
    "ami.apply": (*JIT, *WEB, "numpy", "service"),
    "ami.units": (*JIT, *WEB, "numpy", "service"),
    "ami.security": (*JIT, *WEB, "numpy", "service", "ami.check"),
    "ami.__main__": (*JIT, *WEB, "numpy", "service"),
    "ami.check": (*JIT, *WEB, "numpy"),
    "contracts.profile": (*JIT, *WEB, "numpy"),
    "contracts.stats_layout": JIT + WEB,
    "contracts.metric_names": JIT + WEB,
    "contracts.alarms": JIT + WEB,
    "contracts.records": JIT + WEB,
    "contracts.buckets": JIT + WEB,
    "service.config": JIT + WEB,
    "service.runtime.recording": JIT + WEB,
}


def imported_packages(module: str) -> set[str]:
    """Top-level packages that ``import module`` loads, from ``python -X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    packages = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                packages.add(name.split(".")[0])
    return packages


@pytest.mark.parametrize(("module", "forbidden"), sorted(LIGHT.items()))
def test_light_entry_points_load_no_heavy_module(module, forbidden):
    loaded = imported_packages(module)
    assert module.split(".")[0] in loaded  # the probe sees what it imports
    assert not loaded & set(forbidden), f"import {module} loads {sorted(loaded & set(forbidden))}"


def test_importtime_probe_sees_the_jit_where_it_is():
    assert {"numba", "llvmlite"} <= imported_packages("service.kernels.ring")


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
