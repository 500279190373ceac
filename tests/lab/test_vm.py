"""The lab's machine never outlives the lab: a VM that does not boot is stopped with the
console's last lines in the error; Ctrl-C stops QEMU and frees its forwarded ports.

Real QEMU and Debian's UEFI firmware (scripts/lab-deps installs them; skipped without them).
The disk is blank, so the firmware finds nothing to boot and no SSH ever answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import image, vm
from tests.support.paths import REPO

pytestmark = pytest.mark.skipif(
    shutil.which(vm.QEMU) is None or not vm.FIRMWARE.is_file(),
    reason="QEMU for arm64 and its UEFI firmware are not installed (scripts/lab-deps)",
)


def blank_disk(path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def qemu_pids(marker: str) -> list[int]:
    """QEMU processes whose command line holds ``marker`` (a path under the test's tmp_path)."""
    pattern = f"^{vm.QEMU} .*{re.escape(marker)}"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_a_machine_that_does_not_boot_is_stopped_with_the_consoles_last_lines(tmp_path):
    seed = tmp_path / "seed.iso"
    seed.write_bytes(b"\0" * 4096)
    machine = vm.Machine(blank_disk(tmp_path / "base.qcow2"), tmp_path, seed, (vm.GUEST_SSH,))
    machine.create_disk()
    with machine:
        machine.start()
        port = machine.ports[vm.GUEST_SSH]
        deadline = time.monotonic() + 30
        while port_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_free(port)  # QEMU holds the forwarded port, on 127.0.0.1 only
        with pytest.raises(vm.VMError) as error:
            machine.wait_for_ssh(timeout=40)
    assert "no SSH after 40 s" in str(error.value)
    assert "console's last lines" in str(error.value)  # what the firmware printed
    assert not machine.running() and not qemu_pids(str(tmp_path))
    assert port_free(port)


def test_ctrl_c_stops_qemu_and_frees_its_ports(tmp_path):
    cache = tmp_path / "cache"
    built = cache / "lowlat" / "lab" / image.cache_key()
    built.mkdir(parents=True)
    blank_disk(built / "disk.qcow2")
    (built / "image.json").write_text("{}\n")  # a cached image whose disk boots nothing
    results = tmp_path / "results"
    lab = subprocess.Popen(
        [sys.executable, "-m", "lab", "--steps", "boot", "--results", str(results)],
        cwd=REPO, env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # the boot step synthesizes the CDK app first
        while not qemu_pids(str(results)) and time.monotonic() < deadline:
            assert lab.poll() is None, lab.stdout.read() if lab.stdout else ""
            time.sleep(1)
        [pid] = qemu_pids(str(results))
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
        ports = [int(p) for p in re.findall(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-", command)]
        assert len(ports) == 2  # SSH and the telemetry port
        lab.send_signal(signal.SIGINT)
        output, _ = lab.communicate(timeout=60)
    finally:
        if lab.poll() is None:
            lab.kill()
    assert lab.returncode == 1, output
    summary = json.loads((results / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["ok"] is False
    assert not qemu_pids(str(results))
    assert all(port_free(port) for port in ports)
