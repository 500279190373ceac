"""systemd-analyze on rendered units, without a running systemd: where it is, the stock units a
``verify --root`` tree needs, and the exposure score of ``security --offline=true``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
STOCK_UNITS = Path("/usr/lib/systemd/system")


def exposure(path: Path) -> float:
    """The overall exposure level ``systemd-analyze security --offline=true`` gives a unit file."""
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))
