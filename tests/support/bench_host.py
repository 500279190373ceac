"""A deployed lowlat host for ``fab bench`` under a throwaway root on the loopback sshd.

``BenchHost`` writes what a deploy leaves behind (the installed profile, service.toml with the
given ``[slo]``, a release whose venv is this one), with a stand-in for systemctl that records
every call; ``fab`` runs the real ``fab`` CLI against it.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.net import free_port
from tests.support.paths import REPO

VENV_BIN = Path(sys.executable).parent
FAB = VENV_BIN / "fab"


LOOSE_SLO = (
    "[slo]\ntick_to_order_p50_us = 1e6\ntick_to_order_p99_us = 1e6\ntick_to_order_p999_us = 1e6\n"
)


TIGHT_SLO = (
    "[slo]\ntick_to_order_p50_us = 0.1\ntick_to_order_p99_us = 0.1\ntick_to_order_p999_us = 0.1\n"
)


class BenchHost:
    """A deployed host's state under a throwaway root, and a Fabric config pointing at it."""

    def __init__(self, workdir: Path, slo: str):
        self.root = workdir / "root"
        self.shm_dir = Path("/dev/shm") / f"lowlat-bench-test-{uuid.uuid4().hex[:8]}"
        self.shm_dir.mkdir()
        profile = workdir / "profile.toml"
        profile.write_text(
            f"vcpus = {os.cpu_count()}\n"
            f'shm_dir = "{self.shm_dir}"\n'
            f"telemetry_port = {free_port()}\n"
            f'service_user = "{getpass.getuser()}"\n'
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ami",
                "apply",
                "--root",
                str(self.root),
                "--profile",
                str(profile),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        etc = self.root / "etc/lowlat"
        (etc / "profile.toml").write_text(profile.read_text())
        with open(etc / "service.toml", "a") as f:
            f.write("\n" + slo)
        release = self.root / "opt/lowlat/releases/test"
        (release / "venv/bin").mkdir(parents=True)
        for name in ("trading-service", "python"):
            (release / "venv/bin" / name).symlink_to(VENV_BIN / name)
        (self.root / "opt/lowlat/current").symlink_to("releases/test")
        # stand-in for systemctl: records every call, says lowlat-engine is active
        self.systemctl_log = workdir / "systemctl.log"
        self.systemctl = workdir / "fake-systemctl"
        self.systemctl.write_text(f'#!/bin/sh\necho "$*" >> {self.systemctl_log}\nexit 0\n')
        self.systemctl.chmod(0o755)
        self.fab_config = workdir / "fabric.yaml"
        self.fab_config.write_text(
            f"lowlat:\n  root: {self.root}\n  sudo: false\n  systemctl: {self.systemctl}\n"
        )

    def systemctl_calls(self) -> list[str]:
        return self.systemctl_log.read_text().splitlines() if self.systemctl_log.exists() else []

    def cleanup(self) -> None:
        for leftover in self.shm_dir.iterdir():
            leftover.unlink()
        self.shm_dir.rmdir()


def fab(host: BenchHost, ssh_server, *args: str, env: dict | None = None, timeout=600):
    command = [str(FAB), "--config", str(host.fab_config), "-S", str(ssh_server.ssh_config)]
    return subprocess.run(
        [*command, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
