"""A real engine (`trading-service run`, simulator) in a private directory, for tests that read
it while it runs. Its stages busy-poll: on a shared machine run such tests under
`flock /tmp/lowlat-spin.lock`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from contracts import stats_layout as L
from service.runtime.segments import attach_stats
from service.runtime.stats import describe, snapshot

CLI = [sys.executable, "-m", "service.cli"]


def _published(config_dir: Path, prefix: str) -> bool:
    """Every stage running and the engine's market section published at least once."""
    try:
        _, stats = attach_stats(config_dir, f"{prefix}.stats", writable=False)
    except Exception:  # not created yet
        return False
    states = describe(snapshot(stats))["stages"]
    running = all(s["state"] == "running" for s in states.values())
    return running and stats[L.MARKET_SECTION + L.HEARTBEAT_NS] != 0


@contextlib.contextmanager
def running_engine(workdir: Path, extra: str = "", timeout: float = 300.0) -> Iterator[Path]:
    """Start the engine with its segments in ``workdir`` (``extra``: more config TOML), yield
    its config file once it runs and has published, then stop it: it must exit 0 and leave
    no segment behind."""
    prefix = f"lltest-live-{uuid.uuid4().hex[:8]}"
    config = workdir / "service.toml"
    config.write_text(
        f'[service]\nshm_dir = "{workdir}"\nshm_prefix = "{prefix}"\ndrain_timeout_s = 20.0\n'
        f"{extra}"
    )
    proc = subprocess.Popen(
        [*CLI, "run", "--config", str(config), "--duration", str(timeout)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _published(workdir, prefix):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.05)
        yield config
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    leftovers = list(workdir.glob(f"{prefix}.*"))
    assert not leftovers, f"segments left behind: {leftovers}"
