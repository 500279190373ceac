"""The one numba setting every lowlat kernel is compiled with, and where its cache lives.

Import ``kernel`` (the decorator) from here, never ``numba.njit`` directly, so that every
kernel is cached in the same writable directory and compiled the same way.

The cache directory is chosen before any kernel is decorated: ``NUMBA_CACHE_DIR`` when set,
else ``numba/`` in lowlat's cache directory (``contracts.constants.cache_dir``: systemd's
``CACHE_DIRECTORY``, ``$XDG_CACHE_HOME/lowlat`` or ``~/.cache/lowlat``). numba keys its cache
on the CPU model, so a cache warmed on another instance type is recompiled, not misused.

Inside it, lowlat's kernels are filed by ``SOURCE_DIGEST``, one digest of every source file of
the ``service`` and ``contracts`` packages, instead of numba's default, the absolute path of each
source file (``ReleaseCacheLocator``). Every release lives in its own directory, so by path a
redeploy of the same code, or the lab's second deploy, compiled everything again (minutes on a
small host); by digest it loads what the last one compiled. One digest for all the files, not
numba's per-file one, because a kernel inlines kernels of other modules: a change to any of them
must recompile it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numba
from numba.core.caching import UserProvidedCacheLocator

from contracts.constants import cache_dir

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds service/ and contracts/
DIGESTED_PACKAGES = ("service", "contracts")
# kernels defined in these packages are filed by the digest too: a test's kernel compiles in
# the layout constants of ``contracts``, and numba's own locator, which checks only the test
# file's time stamp, would load one compiled against the layout before a change
DIGEST_FILED_PACKAGES = (*DIGESTED_PACKAGES, "tests")


def source_digest(root: Path = PACKAGE_ROOT) -> str:
    """One digest of the source files of ``DIGESTED_PACKAGES`` under ``root``."""
    digest = hashlib.sha256()
    for package in DIGESTED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


SOURCE_DIGEST = source_digest()


class ReleaseCacheLocator(UserProvidedCacheLocator):
    """numba's cache for lowlat's kernels under ``<cache>/<SOURCE_DIGEST>/<package dir>``: the
    same for every installation of the same sources, wherever the release directory is."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        super().__init__(py_func, py_file)
        relative = Path(py_file).resolve().parent.relative_to(PACKAGE_ROOT)
        base = numba.config.CACHE_DIR  # type: ignore[attr-defined]  # set below, at import
        self._cache_path = os.path.join(base, SOURCE_DIGEST, *relative.parts)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if not py_func.__module__.startswith(tuple(p + "." for p in DIGEST_FILED_PACKAGES)):
            return None  # not ours: numba's own locators below
        return super().from_function(py_func, py_file)


def numba_cache_dir() -> Path:
    """Where the kernels' compiled code is cached (see the module docstring)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return cache_dir("numba")


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


CACHE_DIR = numba_cache_dir()
# numba refuses to decorate a cached function it has nowhere to cache ("no locator available"),
# which would stop `run`, `top` and `kill-switch` alike: compile in memory instead, and say so.
CACHING = _writable(CACHE_DIR)
if not CACHING:
    logging.getLogger(__name__).warning(
        "numba cache %s is not writable by this user: compiling every kernel anew at each "
        "start (set NUMBA_CACHE_DIR or CACHE_DIRECTORY to a writable directory)",
        CACHE_DIR,
    )
numba.config.CACHE_DIR = str(CACHE_DIR)  # type: ignore[attr-defined]  # set at run time
# Ours first, then numba's own, in numba's order (numba.core.caching.CacheImpl).
numba.config.CACHE_LOCATOR_CLASSES = ",".join(  # type: ignore[attr-defined]
    (f"{__name__}.ReleaseCacheLocator", "UserProvidedCacheLocator", "InTreeCacheLocator",
     "UserWideCacheLocator", "IPythonCacheLocator", "ZipCacheLocator")
)  # fmt: skip

# nogil: stages never hold the GIL. error_model numpy: no Python exception checks on division.
# _nrt=False: compile without numba's reference-counting runtime. With it, every call from one
# kernel to another increments and decrements each array argument's refcount with atomic
# instructions: a ring push+pop measured 148 ns with it and 4.4 ns without, on this machine.
# Without it a kernel cannot allocate at all, so "no allocation on the hot path" is enforced
# at compile time. The flag is numba-internal; tests/service/kernels/test_hot_path_allocation.py
# catches a
# numba that ignores it.
KERNEL_OPTIONS: dict[str, Any] = {  # Any: _nrt is not in numba's typed signature
    "nogil": True,
    "cache": CACHING,
    "error_model": "numpy",
    "boundscheck": False,
    "_nrt": False,
}
kernel = numba.njit(**KERNEL_OPTIONS)

# For the small per-message kernels a stage calls for every record (book_set_level, ...):
# numba inlines them into the caller at IR level, so LLVM optimises the update together with
# the loop around it. A book update measured 27.9 ns as a call and 14.0 ns inlined here.
inline_kernel = numba.njit(inline="always", **KERNEL_OPTIONS)

# For the larger helpers that call each other (the order-level book's hash, levels and queues):
# numba compiles each once and LLVM inlines the machine-level function into every caller
# (``alwaysinline``). numba's own inlining above copies and re-types the whole call tree at
# each call site: the order book's apply took 33-52 s to compile that way and 12 s this way,
# at the same speed (25-28 M msgs/s both; docs/performance.md).
llvm_inline_kernel = numba.njit(forceinline=True, **KERNEL_OPTIONS)
