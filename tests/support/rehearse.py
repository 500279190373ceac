"""Run a rendered host script for real, in a scratch tree, with every program it calls stubbed.

Every lowlat script prefixes its paths with ``$LOWLAT_ROOT`` (unset on a host), so a test can
point it at a temporary directory and never touch this machine's /sys or /etc. ``PATH`` holds
only stubs that record their argument vectors and exit as told: a command the test did not
expect is "command not found" (in stderr), never a real program.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# between arguments and between calls: no profile value can hold these control characters
UNIT_SEP, RECORD_SEP = "\x1f", "\x1e"
BASH = "/bin/bash"


@dataclass(frozen=True)
class Rehearsal:
    result: subprocess.CompletedProcess[str]
    calls: list[list[str]]  # one argument vector per stubbed program run, in order

    @property
    def unexpected(self) -> list[str]:
        """Lines where bash looked for a program that is not stubbed."""
        return [line for line in self.result.stderr.splitlines() if "command not found" in line]


def rehearse(script: str, root: Path, commands: tuple[str, ...], **exit_codes: int) -> Rehearsal:
    """Run ``script`` with LOWLAT_ROOT=``root`` and stubs for ``commands``."""
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f".{root.name}-rehearsal"
    stubs = work / "bin"
    stubs.mkdir(parents=True, exist_ok=True)
    log = work / "calls"
    log.write_text("")
    for name in commands:
        stub = stubs / name
        stub.write_text(
            "#!/bin/bash\n"
            f"printf '%s{UNIT_SEP}' {name} \"$@\" >> {log}\n"
            f"printf '{RECORD_SEP}' >> {log}\n"
            f"exit {exit_codes.get(name, 0)}\n"
        )
        stub.chmod(0o755)
    path = work / "script"
    path.write_text(script)
    env = {"PATH": str(stubs), "LOWLAT_ROOT": str(root), "LC_ALL": "C"}
    result = subprocess.run([BASH, str(path)], capture_output=True, text=True, env=env)
    calls = [record.split(UNIT_SEP)[:-1] for record in log.read_text().split(RECORD_SEP) if record]
    return Rehearsal(result, calls)
