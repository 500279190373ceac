"""Small facts every layer uses: the cache line, exit codes and where lowlat caches things."""

from __future__ import annotations

import os
from pathlib import Path

# The unit of false-sharing isolation. Graviton's lines are 64 bytes, but its (and x86's)
# prefetchers pull lines in adjacent pairs, so words that two cores write sit 128 bytes apart.
CACHE_LINE_BYTES = 128
LINE_WORDS = CACHE_LINE_BYTES // 8  # int64 words per line

# Exit codes of every lowlat command: scripts and service managers rely on them.
EXIT_OK = 0
EXIT_FAILED = 1  # could not do it now (a stage died, a host is not ready, an SLO missed)
EXIT_USAGE = 2  # bad input: one line says what, where and what would be right


def cache_dir(what: str) -> Path:
    """Where lowlat caches ``what`` (``numba``, ``baseline``): first match wins.

    systemd's ``CACHE_DIRECTORY`` (from ``CacheDirectory=`` in the unit; under
    ``ProtectSystem=strict`` it is the writable place), ``$XDG_CACHE_HOME/lowlat``, then
    ``~/.cache/lowlat``.
    """
    if os.environ.get("CACHE_DIRECTORY"):
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / what
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lowlat" / what
