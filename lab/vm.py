"""One lab host: the cached image booted under QEMU's software emulation, reachable on 127.0.0.1.

``Machine`` is a context manager. It boots an overlay of the cached image (the image itself is
never written), with a NoCloud seed volume, the serial console appended to ``console.log``, and
SSH and the telemetry port forwarded from 127.0.0.1 only. Leaving the ``with`` block, Ctrl-C,
an exception, or the death of this process (``PR_SET_PDEATHSIG``) stops QEMU: no process and no
forwarded port outlives the lab.

The shape: ``-machine virt -cpu neoverse-n1`` (Graviton2's core) with UEFI firmware from Debian's
qemu-efi-aarch64. ``SMP`` is 2, the c6g.large shape, not the c6g.xlarge's 4: the engine's stages
busy-poll their isolated vCPUs, and every emulated vCPU is a host thread, so three spinning vCPUs
on this machine's two cores would starve the housekeeping vCPU that runs SSH, systemd and the
deploys. With 2 vCPUs the profile fuses the stages on the one isolated CPU (cpu1), cpu0 keeps
housekeeping, and each has a host core.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

FIRMWARE = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
QEMU = "qemu-system-aarch64"
CPU = "neoverse-n1"
SMP = 2
MEMORY_MIB = 4096  # the profile's 1 GiB of hugepages, the engine's stages, a deploy's pip
GUEST_SSH = 22
PR_SET_PDEATHSIG = 1


class VMError(Exception):
    """The machine did not do what a step needed: one line, with the console's last lines."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Machine:
    image: Path  # the cached base image (qcow2), read only
    workdir: Path  # overlay, seed and console live here
    seed: Path  # the NoCloud volume (cidata)
    guest_ports: tuple[int, ...] = (GUEST_SSH,)
    ports: dict[int, int] = field(default_factory=dict)  # guest port -> 127.0.0.1 port
    process: subprocess.Popen[bytes] | None = None

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    @property
    def disk(self) -> Path:
        return self.workdir / "disk.qcow2"

    def create_disk(self) -> None:
        """A fresh overlay over the base image: this lab's writes never reach the cache."""
        self.disk.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.image),
             str(self.disk)],
            check=True, capture_output=True,
        )  # fmt: skip

    def command(self) -> list[str]:
        forwards = ",".join(
            f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in self.ports.items()
        )
        return [
            QEMU,
            "-machine", "virt", "-cpu", CPU, "-smp", str(SMP), "-m", str(MEMORY_MIB),
            "-accel", "tcg,thread=multi",
            "-bios", str(FIRMWARE),
            "-drive", f"if=virtio,format=qcow2,file={self.disk}",
            "-drive", f"if=virtio,format=raw,readonly=on,file={self.seed}",
            "-netdev", f"user,id=net0,{forwards}",
            "-device", "virtio-net-pci,netdev=net0",
            "-display", "none", "-monitor", "none",
            "-serial", f"file:{self.console}",  # a guest reboot resets the machine, as EC2's
        ]  # fmt: skip

    def start(self) -> None:
        """Boot (again, after a stop: the disk keeps what the guest wrote)."""
        if not FIRMWARE.is_file():
            raise VMError(f"no UEFI firmware at {FIRMWARE}: apt-get install qemu-efi-aarch64")
        self.ports = {guest: free_port() for guest in self.guest_ports}
        with open(self.console, "ab") as console:
            console.write(
                f"\n===== lowlat lab: boot at {time.strftime('%H:%M:%S')} =====\n".encode()
            )
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "qemu.err", "ab"),  # noqa: SIM115 -- the child keeps it
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C goes to the lab, which stops QEMU itself
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """QEMU gone, its ports with it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def wait_for_ssh(self, timeout: float) -> float:
        """Seconds until the guest's sshd answers with its banner; VMError after ``timeout``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.running():
                raise VMError(f"QEMU exited while booting{self.tail()}")
            address = ("127.0.0.1", self.ports[GUEST_SSH])
            with contextlib.suppress(OSError), socket.create_connection(address, 5) as s:
                s.settimeout(10)
                if s.recv(64).startswith(b"SSH-"):
                    return time.monotonic() - start
            time.sleep(2)
        raise VMError(f"no SSH after {timeout:.0f} s{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        """The console's last lines, for a failure message."""
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return ""
        last = [line for line in text.splitlines() if line.strip()][-lines:]
        return "; console's last lines:\n    " + "\n    ".join(last) if last else ""

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
