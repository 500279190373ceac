"""Write the rendered tuning files under a root directory, idempotently.

``apply(files, root)`` puts each rendered file at ``root`` + its host path: "/" on the image
being built, a temporary directory in tests and for a look at what would be installed. A file
whose content and mode already match is not touched (its mtime stays, so nothing downstream sees
a change); others are written to a temporary file in the same directory and renamed over the
old one, so a reader (systemd, sysctl, a crash mid-run) never sees half a file.
"""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ami.render import file_mode

CREATED, CHANGED, UNCHANGED = "created", "changed", "unchanged"


@dataclass(frozen=True)
class Change:
    """What applying one file does (or did): its host path, the action and, when changed, the
    unified diff from the old content (empty when only the mode differs)."""

    path: str
    action: str
    mode: int
    diff: str = ""


def target(root: Path, path: str) -> Path:
    """Where host path ``path`` lives under ``root``."""
    return Path(root) / path.lstrip("/")


def plan(files: dict[str, str], root: Path) -> list[Change]:
    """What ``apply`` would do for each file, without writing anything."""
    changes = []
    for path, text in files.items():
        dest, mode = target(root, path), file_mode(path)
        try:
            old = dest.read_bytes()
            old_mode = stat.S_IMODE(dest.stat().st_mode)
        except FileNotFoundError:
            changes.append(Change(path, CREATED, mode))
            continue
        if old == text.encode() and old_mode == mode:
            changes.append(Change(path, UNCHANGED, mode))
            continue
        old_text = old.decode(errors="replace")
        diff = "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (installed)",
                tofile=f"{path} (rendered)",
            )
        )
        if old_mode != mode:
            diff += f"mode {old_mode:04o} -> {mode:04o}\n"
        changes.append(Change(path, CHANGED, mode, diff))
    return changes


def write_atomic(dest: Path, text: str, mode: int) -> None:
    """Replace ``dest`` with ``text`` in one rename; the mode is set before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(files: dict[str, str], root: Path, dry_run: bool = False) -> list[Change]:
    """Write every file that is missing or differs under ``root``; return what was done."""
    changes = plan(files, root)
    if not dry_run:
        for change in changes:
            if change.action != UNCHANGED:
                write_atomic(target(root, change.path), files[change.path], change.mode)
    return changes


def summary(changes: list[Change], dry_run: bool = False) -> str:
    """One line: how many files were (or would be) created and changed."""
    created = sum(c.action == CREATED for c in changes)
    changed = sum(c.action == CHANGED for c in changes)
    if not created and not changed:
        return f"nothing to change ({len(changes)} files unchanged)"
    verb = "would change" if dry_run else "changed"
    return (
        f"{verb} {created + changed} of {len(changes)} files "
        f"({created} created, {changed} changed, {len(changes) - created - changed} unchanged)"
    )
