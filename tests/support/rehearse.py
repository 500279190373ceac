"""Run a rendered host script for real, in a scratch tree, with every program it calls stubbed.

Every lowlat script prefixes its paths with ``$LOWLAT_ROOT`` (unset on a host), so a test can
point it at a temporary directory and never touch this machine's /sys or /etc. ``PATH`` holds
only stubs that record their argument vectors and exit as told: a command the test did not
expect is "command not found" (in stderr), never a real program. A few may be let through to
the real program (``passthrough``: basenc, tar and the like, which only read and write under the
scratch tree they are given); a stub may also do a little (``effects``: print what the real one
would, or write what it would write under ``$LOWLAT_ROOT``); and programs a package would have
put at an absolute path are stubs under the root (``installed``).

``tree(root)`` is what a scratch tree holds, to show that running a script again changes
nothing.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# between arguments and between calls: no profile value can hold these control characters
UNIT_SEP, RECORD_SEP = "\x1f", "\x1e"
BASH = "/bin/bash"

# update-grub in miniature: grub-mkconfig sources /etc/default/grub and then each drop-in in
# /etc/default/grub.d with /bin/sh under set -e (dash, on Debian as on Ubuntu), and writes the
# default entry's linux line from GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT.
UPDATE_GRUB = """/bin/sh -e <<'SH'
. "$LOWLAT_ROOT/etc/default/grub"
for f in "$LOWLAT_ROOT"/etc/default/grub.d/*.cfg; do
    if [ -e "$f" ]; then . "$f"; fi
done
printf 'menuentry lowlat {\\n\\tlinux\\t/boot/vmlinuz root=LABEL=root ro %s %s\\n}\\n' \\
    "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT" > "$LOWLAT_ROOT/boot/grub/grub.cfg"
SH"""


@dataclass(frozen=True)
class Rehearsal:
    result: subprocess.CompletedProcess[str]
    calls: list[list[str]]  # one argument vector per stubbed program run, in order

    @property
    def unexpected(self) -> list[str]:
        """Lines where bash looked for a program that is not stubbed."""
        return [line for line in self.result.stderr.splitlines() if "command not found" in line]

    def called(self, name: str) -> list[list[str]]:
        """The runs of one program, in order."""
        return [call for call in self.calls if call[0] == name]


def _stub(path: Path, name: str, log: Path, body: str) -> None:
    # one record, one write: stubs in a pipeline (basenc | tar) log at the same time
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/bash\n"
        f"record=$(printf '%s{UNIT_SEP}' {name} \"$@\")\n"
        f"printf '%s{RECORD_SEP}' \"$record\" >> {log}\n"
        f"{body}\n"
    )
    path.chmod(0o755)


def rehearse(
    script: str,
    root: Path,
    commands: tuple[str, ...],
    *,
    passthrough: tuple[str, ...] = (),
    effects: Mapping[str, str] | None = None,
    installed: tuple[str, ...] = (),
    **exit_codes: int,
) -> Rehearsal:
    """Run ``script`` with LOWLAT_ROOT=``root`` and stubs for ``commands``; ``passthrough``
    programs run for real (and are recorded), ``effects`` are shell run by a stub before it
    exits, ``installed`` are absolute host paths of programs stubbed under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f".{root.name}-rehearsal"
    stubs = work / "bin"
    stubs.mkdir(parents=True, exist_ok=True)
    log = work / "calls"
    log.write_text("")
    effects = effects or {}
    for name in commands:
        body = f"{effects.get(name, '')}\nexit {exit_codes.get(name, 0)}"
        _stub(stubs / name, name, log, body)
    for name in passthrough:
        real = shutil.which(name)
        assert real, f"{name} is not on this machine's PATH"
        _stub(stubs / name, name, log, f'exec {real} "$@"')
    for host_path in installed:
        name = Path(host_path).name
        _stub(root / host_path.lstrip("/"), name, log, f"exit {exit_codes.get(name, 0)}")
    path = work / "script"
    path.write_text(script)
    env = {"PATH": str(stubs), "LOWLAT_ROOT": str(root), "LC_ALL": "C"}
    result = subprocess.run([BASH, str(path)], capture_output=True, text=True, env=env)
    calls = [record.split(UNIT_SEP)[:-1] for record in log.read_text().split(RECORD_SEP) if record]
    return Rehearsal(result, calls)


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Everything under ``root``: relative path -> (kind, mode, content or link target)."""
    found: dict[str, tuple[str, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel, mode = str(path.relative_to(root)), stat.S_IMODE(info.st_mode)
        if path.is_symlink():
            found[rel] = ("link", mode, str(path.readlink()).encode())
        elif path.is_dir():
            found[rel] = ("dir", mode, b"")
        else:
            found[rel] = ("file", mode, path.read_bytes())
    return found
