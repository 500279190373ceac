"""Talking to the lab host: plain ``ssh`` for the lab's own probes, and the real ``fab`` CLI.

The lab writes an SSH config (``Host lowlat-lab`` -> 127.0.0.1 and the forwarded port, the lab's
key, the login user of Debian's images) and a Fabric config (``lowlat:`` settings for a real
host: sudo, systemd, the journal), so that ``fab TASK --host lowlat-lab`` runs exactly as an
operator runs it against an EC2 host.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ami.hostos import ADAPTERS

HOST = "lowlat-lab"
LOGIN_USER = ADAPTERS["debian12"].login_user
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Remote:
    workdir: Path
    port: int
    key: Path

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    @property
    def fabric_config(self) -> Path:
        return self.workdir / "fabric.yaml"

    def write_configs(self, ready_timeout_s: int) -> None:
        self.ssh_config.write_text(
            f"Host {HOST}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {LOGIN_USER}\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ServerAliveInterval 15\n"
        )
        self.fabric_config.write_text(
            "lowlat:\n"
            f"  ready_timeout_s: {ready_timeout_s}  # the JIT under software emulation\n"
            "  connect_timeout_s: 60\n"
            f"  wheelhouse_cache: {self.workdir.parent / 'wheelhouse'}\n"
        )

    def ssh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``command`` on the host as the login user (``sudo`` inside it when needed)."""
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-o", "ConnectTimeout=20", HOST, command],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def sudo(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.ssh(f"sudo -n sh -c {shlex.quote(command)}", timeout)

    def fab(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        """The real ``fab`` CLI from the project directory, against the lab host."""
        fab = Path(sys.executable).parent / "fab"
        return subprocess.run(
            [str(fab), "--config", str(self.fabric_config), "-S", str(self.ssh_config), *args,
             "--host", HOST],
            cwd=REPO, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
