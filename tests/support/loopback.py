"""Real stand-ins for remote parts, on 127.0.0.1: an OpenSSH server and moto's server mode.

``SshServer`` runs Debian's ``sshd`` on a free port with a throwaway host key and a throwaway
user key, for the current user; ``ssh_config`` is the client side (an ``~/.ssh/config`` block
written to a file) so Fabric finds user, port and key the usual way. ``MotoServer`` runs
``moto_server`` as its own process; its ``env`` points boto3 at it (``AWS_ENDPOINT_URL``) with
dummy credentials, so the code under test needs no hook of its own.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, stop_process

SSHD = "/usr/sbin/sshd"


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lowlat-test", "-f", str(path)],
        check=True,
    )
    return path


class SshServer:
    """sshd on 127.0.0.1:<free port>, accepting only a throwaway key for the current user."""

    HOST_ALIAS = "lowlat-loopback"

    def __init__(self, workdir: Path):
        if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
            pytest.skip("openssh-server is not installed (Debian package openssh-server)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = _keygen(workdir / "ssh_host_ed25519_key")
        self.user_key = _keygen(workdir / "id_ed25519")
        self.wrong_key = _keygen(workdir / "id_wrong")
        authorized = workdir / "authorized_keys"
        authorized.write_text((workdir / "id_ed25519.pub").read_text())
        authorized.chmod(0o600)
        self.log_path = workdir / "sshd.log"
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "MaxStartups 100:30:200\n"
            "MaxSessions 50\n"
            f"Subsystem sftp {self._sftp_server()}\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory (as root)
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=open(self.log_path, "wb"),  # noqa: SIM115 -- the child owns it
            stderr=subprocess.STDOUT,
        )
        self.ssh_config = workdir / "ssh_config"
        self.ssh_config.write_text(
            f"Host {self.HOST_ALIAS}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {self.user}\n"
            f"  IdentityFile {self.user_key}\n"
            "  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n"
        )
        self._wait_listening()

    @staticmethod
    def _sftp_server() -> str:
        for candidate in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server"):
            if Path(candidate).exists():
                return candidate
        return "internal-sftp"

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"sshd exited {self.process.returncode}:\n{self.log_tail()}")
            probe = subprocess.run(
                ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", self.HOST_ALIAS, "true"],
                capture_output=True,
                timeout=15,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        pytest.fail(f"sshd on port {self.port} did not accept the test key:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.process)


class MotoServer:
    """``moto_server`` on 127.0.0.1:<free port>; ``env`` is what boto3 needs to use it."""

    REGION = "us-east-1"

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        workdir.mkdir(parents=True, exist_ok=True)
        moto_server = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.log_path, "wb"),  # noqa: SIM115 -- the child owns it
            stderr=subprocess.STDOUT,
        )
        self.env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_REGION": self.REGION,
        }
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"moto_server exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=2, trust_env=False)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"moto_server not up on {self.url}:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=5, trust_env=False)

    def stop(self) -> None:
        stop_process(self.process)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, for a child such as ``fab``."""
    return {**os.environ, **extra}
