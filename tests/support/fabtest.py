"""Helpers for the Fabric task tests: a throwaway lowlat host under a root, and running ``fab``.

``LoopbackHost`` is "a lowlat image" as far as the tasks can tell, on the loopback sshd: an
installed tuning profile at ``ROOT/etc/lowlat/profile.toml`` (the image writes it; here the
test does), a unique shared-memory directory, a free telemetry port, and a Fabric config file
that points the tasks at ROOT and at the test supervisor in place of systemctl (no systemd runs
as PID 1 here; see tests/support/unit_supervisor.py). ``fab(...)`` runs the real ``fab`` CLI against
it as a subprocess from the project directory, like an operator would.

``tmpfs`` mounts a small file system where a test wants a disk that is full, nearly full or
read-only (the tests run as root; without the right to mount they skip), and ``DiskFiller``
fills one up at the moment a deploy reaches a given step, from a thread of the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.paths import REPO

PROJECT = REPO
FAB = Path(sys.executable).with_name("fab")
SUPERVISOR = PROJECT / "tests/support/bin/lowlat-test-systemctl"
PROFILE = "etc/lowlat/profile.toml"
UNITS = ("lowlat-engine.service", "lowlat-telemetry.service")


@dataclass
class LoopbackHost:
    root: Path
    shm_dir: Path
    telemetry_port: int
    config: Path  # the Fabric config file (lowlat: settings)
    ssh_config: Path

    @property
    def prefix(self) -> Path:
        return self.root / "opt/lowlat"

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.telemetry_port}/ready"

    def profile_text(self, **overrides) -> str:
        values = {
            "vcpus": os.cpu_count() or 2,
            "platform": "x86",
            "install_prefix": "/opt/lowlat",
            "shm_dir": str(self.shm_dir),
            "telemetry_port": self.telemetry_port,
            "service_user": os.environ.get("USER") or "root",
            **overrides,
        }
        return "".join(
            f"{k} = {v}\n" if isinstance(v, int) else f'{k} = "{v}"\n' for k, v in values.items()
        )

    def write_profile(self, **overrides) -> None:
        path = self.root / PROFILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.profile_text(**overrides))

    def fab(self, *args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
        """``fab --config CFG -S SSH_CONFIG ARGS...`` from the project directory."""
        return run_fab("--config", str(self.config), "-S", str(self.ssh_config), *args,
                       timeout=timeout, env=env)  # fmt: skip

    def supervisor(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SUPERVISOR), str(self.root), *args], capture_output=True, text=True, timeout=120
        )

    def engine_pid(self) -> int | None:
        try:
            return int((self.root / "run/lowlat-test-supervisor" / f"{UNITS[0]}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> None:
        """Stop both units and kill whatever is left of their process groups."""
        self.supervisor("stop", *UNITS)
        for unit in UNITS:
            pid_file = self.root / "run/lowlat-test-supervisor" / f"{unit}.pid"
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.killpg(int(pid_file.read_text()), 9)
        shutil.rmtree(self.shm_dir, ignore_errors=True)


def make_host(workdir: Path, ssh_config: Path, wheelhouse_cache: Path, **settings) -> LoopbackHost:
    root = workdir / "root"
    root.mkdir(parents=True, exist_ok=True)
    shm_dir = Path("/dev/shm") / f"lowlat-test-{uuid.uuid4().hex[:8]}"
    shm_dir.mkdir()
    config = workdir / "fabric.yaml"
    host = LoopbackHost(root, shm_dir, free_port(), config, ssh_config)
    lowlat = {
        "root": str(root),
        "sudo": False,
        "systemctl": f"{SUPERVISOR} {root}",
        # No journal here: the tasks fall back to the units' log files.
        "journalctl": "lowlat-test-no-journalctl",
        "ready_timeout_s": 240,
        "wheelhouse_cache": str(wheelhouse_cache),
        **settings,
    }
    config.write_text("lowlat:\n" + "".join(f"  {k}: {_yaml(v)}\n" for k, v in lowlat.items()))
    host.write_profile()
    return host


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# pip with no way to any package index: a deploy from a warm wheelhouse cache must not need one
NO_PACKAGE_INDEX = {
    "PIP_CONFIG_FILE": "/dev/null",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # the discard port: nothing answers
    "PIP_EXTRA_INDEX_URL": None,
    "PIP_FIND_LINKS": None,
    "PIP_NO_CACHE_DIR": "1",
    "PIP_RETRIES": "0",
    "PIP_DEFAULT_TIMEOUT": "3",
}


def run_fab(*args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    """``fab ARGS`` from the project directory; ``env`` adds variables (None removes one)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [str(FAB), *args], cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env
    )


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


# ------------------------------------------------------------------------- small disks

MIB = 2**20


@contextlib.contextmanager
def tmpfs(where: Path, size: int, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``where`` (made if need be) for the block; skips the
    test when this process may not mount (not root, or no CAP_SYS_ADMIN in a container)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip() or mount.returncode}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: Callable[[], int]) -> None:
    """Allocate ``path`` (a new file) until its file system has no more than ``leave()`` bytes
    free, in chunks, asking ``leave()`` again before each (what is left may be shrinking)."""
    chunk, offset = 16 * MIB, 0
    with open(path, "wb") as f:
        while chunk >= 64 * 1024:
            room = free_bytes(path.parent) - leave()
            if room <= 0:
                return
            n = min(chunk, room)
            try:
                os.posix_fallocate(f.fileno(), offset, n)
                offset += n
            except OSError:  # someone else took the space meanwhile: smaller bites
                chunk //= 2


class DiskFiller(threading.Thread):
    """Fills the file system of ``mount`` (a file ``.filler`` there) as soon as ``trigger()``
    is true, leaving ``leave()`` bytes free: a disk that fills up while a task writes to it."""

    def __init__(self, mount: Path, trigger: Callable[[], bool], leave: Callable[[], int]):
        super().__init__(daemon=True)
        self.mount, self.trigger, self.leave = mount, trigger, leave
        self.filled = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if self.trigger():
                fill(self.mount / ".filler", self.leave)
                self.filled.set()
                return
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
