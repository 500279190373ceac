"""Compiled kernels are cached by the sources' digest, not by where a release is installed: a
second installation of the same code loads them; a change to any source file recompiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

# hist_index compiled (or loaded) in a fresh interpreter; numba's dispatcher counts both
PROBE = (
    "import json; from service.kernels.histogram import hist_index as k; k(1000); "
    "from service.kernels.jit import SOURCE_DIGEST; "
    "print(json.dumps({'hits': sum(k.stats.cache_hits.values()), "
    "'misses': sum(k.stats.cache_misses.values()), 'digest': SOURCE_DIGEST}))"
)


def install(root: Path) -> Path:
    """A copy of the packages at another path, as a new release directory is."""
    for package in ("service", "contracts"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    return root


def probe(release: Path, cache: Path) -> dict[str, object]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(release)}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=release, env=env, capture_output=True, text=True,
        timeout=300, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.splitlines()[-1]))


def test_a_second_release_of_the_same_sources_loads_the_compiled_kernels(tmp_path):
    cache = tmp_path / "cache"
    first = probe(install(tmp_path / "releases/a"), cache)
    assert (first["hits"], first["misses"]) == (0, 1)
    second = probe(install(tmp_path / "releases/b"), cache)
    assert (second["hits"], second["misses"]) == (1, 0)
    assert second["digest"] == first["digest"]
    assert [p.name for p in cache.iterdir()] == [first["digest"]]


def test_a_change_to_any_source_file_recompiles(tmp_path):
    """A kernel inlines kernels of other modules: a change elsewhere must not load stale code."""
    cache = tmp_path / "cache"
    probe(install(tmp_path / "releases/a"), cache)
    changed = install(tmp_path / "releases/b")
    ring = changed / "service/kernels/ring.py"
    ring.write_text(ring.read_text() + "\n# a change in another module\n")
    after = probe(changed, cache)
    assert (after["hits"], after["misses"]) == (0, 1)
    assert len(list(cache.iterdir())) == 2
