"""Reading a host under ``root``: files, CPU lists and masks, processes, /proc/interrupts.

Every reader returns None (or an empty result) for a file that is missing or unreadable, never
raises: a check then fails or is not applicable, and says why. ``Host`` holds what several
checks share (the command line, the kernel config, one scan of /proc) so each is read once.
"""

from __future__ import annotations

import gzip
import re
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from contracts.profile import TuningProfile, parse_cpulist

PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000  # the kernel binds the thread's CPUs itself; nobody can move it


def read_text(root: Path, rel: str) -> str | None:
    """The text of ``root/rel``, or None when it cannot be read."""
    try:
        return (root / rel.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def cpus(text: str | None) -> tuple[int, ...] | None:
    """A cpulist ("0-3,5") as CPUs; "" and "(null)" are none; None when unreadable."""
    if text is None:
        return None
    text = text.strip()
    if text in ("", "(null)"):
        return ()
    try:
        return parse_cpulist(text)
    except ValueError:
        return None


def mask_cpus(text: str | None) -> tuple[int, ...] | None:
    """A hex cpumask as /sys prints it ("f", "00000000,0000000f") as CPUs; None when unreadable."""
    if text is None:
        return None
    try:
        mask = int(text.strip().replace(",", ""), 16)
    except ValueError:
        return None
    return tuple(c for c in range(mask.bit_length()) if mask >> c & 1)


def key_values(text: str | None) -> dict[str, str]:
    """ "key=value" lines (a state file) as a dict; comments and other lines are skipped."""
    found = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            found[key.strip()] = value.strip()
    return found


def count_cpus(root: Path = Path("/")) -> int:
    """vCPUs under ``root``: /sys/devices/system/cpu/possible, else /proc/cpuinfo (0 if neither)."""
    possible = cpus(read_text(root, "sys/devices/system/cpu/possible"))
    if possible:
        return len(possible)
    cpuinfo = read_text(root, "proc/cpuinfo") or ""
    return len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))


def detect_platform(root: Path = Path("/")) -> str:
    """ "graviton" for an Arm (implementer 0x41) / aarch64 /proc/cpuinfo, else "x86"."""
    cpuinfo = read_text(root, "proc/cpuinfo") or ""
    if re.search(r"^CPU implementer\s*:\s*0x41", cpuinfo, re.MULTILINE | re.IGNORECASE):
        return "graviton"
    return "graviton" if "aarch64" in cpuinfo.lower() else "x86"


def parse_interrupts(text: str) -> dict[str, dict[int, int]]:
    """/proc/interrupts -> {"24 (IO-APIC 5-edge ACPI:Ged)": {cpu: count}}."""
    lines = text.splitlines()
    if not lines:
        return {}
    columns = [int(c[3:]) for c in lines[0].split() if c.startswith("CPU") and c[3:].isdigit()]
    table: dict[str, dict[int, int]] = {}
    for line in lines[1:]:
        label, sep, rest = line.partition(":")
        if not sep:
            continue
        tokens = rest.split()
        counts = []
        for token in tokens[: len(columns)]:
            if not token.isdigit():
                break
            counts.append(int(token))
        desc = " ".join(tokens[len(counts) :])
        label = label.strip()
        name = f"{label} ({desc})" if desc else label
        table[name] = dict(zip(columns, counts, strict=False))
    return table


@dataclass(frozen=True)
class Proc:
    """One process as /proc/<pid>/{stat,cmdline,status} show it."""

    pid: int
    comm: str
    flags: int
    cmdline: tuple[str, ...]
    status: str

    @property
    def kthread(self) -> bool:
        return not self.cmdline and bool(self.flags & PF_KTHREAD)

    @property
    def kernel_bound(self) -> bool:
        """A kernel thread whose CPUs only the kernel sets (kthread_bind: PF_NO_SETAFFINITY)."""
        return self.kthread and bool(self.flags & PF_NO_SETAFFINITY)

    def field(self, key: str) -> str | None:
        """A line of /proc/<pid>/status ("Cpus_allowed_list", "PPid"), without its key."""
        match = re.search(rf"^{key}:\s*(.*)$", self.status, re.MULTILINE)
        return match.group(1).strip() if match else None

    @property
    def allowed(self) -> tuple[int, ...] | None:
        return cpus(self.field("Cpus_allowed_list"))


def _proc(path: Path) -> Proc | None:
    try:
        stat = (path / "stat").read_text()
        cmdline = (path / "cmdline").read_bytes()
        status = (path / "status").read_text()
    except OSError:
        return None  # exited while we looked
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        flags = int(rest[6])
    except (IndexError, ValueError):
        return None
    args = tuple(a.decode(errors="replace") for a in cmdline.split(b"\0") if a)
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    return Proc(int(path.name), comm, flags, args, status)


class Host:
    """The host under ``root`` as the checks see it, judged against ``profile``."""

    def __init__(self, root: Path, profile: TuningProfile) -> None:
        self.root = root
        self.profile = profile
        self.now = time.time()  # wall clock: the age of the state files other units write
        self.release = (self.read("proc/sys/kernel/osrelease") or "").strip() or None
        self.cmdline_text = self.read("proc/cmdline")
        self.cmdline = self.cmdline_text or ""

    def read(self, rel: str) -> str | None:
        return read_text(self.root, rel)

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def glob(self, pattern: str) -> list[Path]:
        try:
            return sorted(self.root.glob(pattern.lstrip("/")))
        except OSError:
            return []

    def age_s(self, rel: str) -> float | None:
        """Seconds since ``rel`` was last written, or None when it is not there."""
        try:
            return self.now - self.path(rel).stat().st_mtime
        except OSError:
            return None

    def cmdline_arg(self, name: str) -> str | None:
        """The first ``name=...`` (or bare ``name``) argument of /proc/cmdline."""
        return next(
            (a for a in self.cmdline.split() if a == name or a.startswith(f"{name}=")), None
        )

    @cached_property
    def kernel_config(self) -> tuple[str | None, str]:
        """(the kernel config text or None, where it came from)."""
        if self.release:
            text = self.read(f"boot/config-{self.release}")
            if text is not None:
                return text, f"/boot/config-{self.release}"
        try:
            with gzip.open(self.root / "proc/config.gz", "rt", errors="replace") as f:
                return f.read(), "/proc/config.gz"
        except (OSError, EOFError):
            return None, "no kernel config found"

    def config_option(self, option: str) -> bool | None:
        """Whether the kernel was built with ``option=y`` (None: no config to tell)."""
        config, _ = self.kernel_config
        return None if config is None else f"{option}=y" in config.splitlines()

    @cached_property
    def pid_dirs(self) -> list[Path]:
        try:
            return [p for p in (self.root / "proc").iterdir() if p.name.isdigit()]
        except OSError:
            return []

    @cached_property
    def processes(self) -> list[Proc]:
        return [p for p in map(_proc, self.pid_dirs) if p is not None]

    @property
    def sees_kernel_threads(self) -> bool:
        """A host always runs kernel threads (root's): none visible means /proc is filtered
        (ProtectProc=invisible in a unit's sandbox) or is a tree without processes."""
        return any(p.kthread for p in self.processes)

    def running(self, name: str) -> list[Proc]:
        """User processes named ``name`` (their comm, or their program's file name)."""
        return [
            p
            for p in self.processes
            if not p.kthread and (p.comm == name or (p.cmdline and Path(p.cmdline[0]).name == name))
        ]
