"""Write a report's files all or nothing: drawn in a hidden directory beside the output and
moved in once every one is there, so a report that cannot be finished (a full disk, a bad
figure) leaves nothing half-written where the reader looks."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_staged(out: Path, draw: Callable[[Path], list[str]]) -> list[Path]:
    """Call ``draw(staging)`` to write every file into a hidden directory beside ``out``, then
    move them into ``out`` (created); the paths written. The staging directory is gone
    afterwards, whether ``draw`` finished or raised."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        names = draw(staging)
        out.mkdir(exist_ok=True)
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names]
