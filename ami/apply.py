"""Write the rendered tuning files under a root directory, idempotently.

``apply(files, root)`` puts each rendered file at ``root`` + its host path: "/" on the image
being built, a temporary directory in tests and for a look at what would be installed. A file
whose content and mode already match is not touched (its mtime stays, so nothing downstream sees
a change); others are written to a temporary file in the same directory and renamed over the
old one, so a reader (systemd, sysctl, a crash mid-run) never sees half a file.

Nor is a run ever half done: before anything is written, every directory a file goes in is
checked (a directory, writable) and the free space counted; then every file is written to its
temporary, and only when all are there are they renamed into place. A bad root is an
``InputError`` (one line: what, where, what would be right) and leaves the root as it was; so
does a write that fails all the same (a full disk), as the ``OSError`` it is.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ami.render import file_mode
from contracts.errors import LowlatError

CREATED, CHANGED, UNCHANGED = "created", "changed", "unchanged"
BLOCK = 4096  # what a small file takes on disk, at least
SPARE_BYTES = 1 << 20  # left free after the files, for whatever else is writing there


class InputError(LowlatError, ValueError):
    """A bad input to ``python -m ami`` (a root, a profile, a path): the message is one line
    saying what is wrong, where, and what would be right. ``python -m ami`` prints it and exits
    2; nothing has been written. ``prog`` is the command it concerns, when known."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


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


def check_root(root: Path) -> None:
    """``root`` is a directory, or can be made one; ``InputError`` otherwise."""
    try:
        not_a_directory = root.exists() and not root.is_dir()
    except (OSError, ValueError) as exc:  # a NUL in the name, a name too long
        raise InputError(f"--root {root}: cannot look at it ({exc})") from None
    if not_a_directory:
        raise InputError(f"--root {root}: not a directory; give the directory to write under")


def plan(files: dict[str, str], root: Path) -> list[Change]:
    """What ``apply`` would do for each file, without writing anything."""
    check_root(root)
    changes = []
    for path, text in files.items():
        dest, mode = target(root, path), file_mode(path)
        try:
            old = dest.read_bytes()
            old_mode = stat.S_IMODE(dest.stat().st_mode)
        except FileNotFoundError:
            changes.append(Change(path, CREATED, mode))
            continue
        except IsADirectoryError:
            raise InputError(
                f"{dest}: a directory where {path} goes; move it away, or choose another --root"
            ) from None
        except NotADirectoryError:
            raise InputError(
                f"{dest}: a file stands where a directory on the way to {path} should be; "
                "move it away, or choose another --root"
            ) from None
        except OSError as exc:
            raise InputError(f"{dest}: cannot read the installed file ({exc.strerror})") from None
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


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def preflight(files: dict[str, str], root: Path, changes: list[Change]) -> None:
    """Before the first write: every directory the files go in is (or can be made under) a
    writable directory, and there is room for them all. ``InputError`` otherwise."""
    todo = [c for c in changes if c.action != UNCHANGED]
    if not todo:
        return
    checked: set[Path] = set()
    for change in todo:
        where = _nearest_existing(target(root, change.path).parent)
        if where in checked:
            continue
        checked.add(where)
        if not where.is_dir():
            raise InputError(
                f"{where}: not a directory, where {target(root, change.path).parent} should be; "
                "move it away, or choose another --root"
            )
        if not os.access(where, os.W_OK | os.X_OK):
            raise InputError(
                f"{where}: not writable by this user (uid {os.geteuid()}), or on a read-only "
                "file system; run as a user who may write there, or choose another --root"
            )
    need = sum(-(-max(len(files[c.path].encode()), 1) // BLOCK) * BLOCK for c in todo)
    free = shutil.disk_usage(_nearest_existing(Path(root))).free
    if free < need + SPARE_BYTES:
        raise InputError(
            f"{root}: {free} bytes free, and the {len(todo)} files need {need} (and 1 MiB to "
            "spare); free some space, or choose another --root"
        )


def _make_dirs(directory: Path) -> list[Path]:
    """``mkdir -p directory``; the directories it made, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    made = []
    for d in reversed(missing):
        d.mkdir()
        made.append(d)
    return made


def _stage(dest: Path, text: str, mode: int) -> Path:
    """``text`` in a temporary file next to ``dest``, with ``mode``, on disk."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(dest: Path, text: str, mode: int) -> None:
    """Replace ``dest`` with ``text`` in one rename; the mode is set before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_stage(dest, text, mode), dest)


def apply(files: dict[str, str], root: Path, dry_run: bool = False) -> list[Change]:
    """Write every file that is missing or differs under ``root``; return what was done.

    All or nothing: every file is staged next to its destination first, and renamed into
    place only when all are staged; a failure removes the temporaries and the directories
    made for them, and raises (``InputError`` for a bad root, found before any write)."""
    changes = plan(files, root)
    if dry_run:
        return changes
    preflight(files, root, changes)
    made: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    renamed = 0
    try:
        for change in changes:
            if change.action == UNCHANGED:
                continue
            dest = target(root, change.path)
            made += _make_dirs(dest.parent)
            staged.append((_stage(dest, files[change.path], change.mode), dest))
        for tmp, dest in staged:  # renames in one directory tree: they do not fail for space
            os.replace(tmp, dest)
            renamed += 1
    except BaseException as exc:
        if renamed:  # a rename failed (it hardly can): say how far it got
            exc.add_note(f"{renamed} of {len(staged)} changed files were already in place")
        for tmp, _ in staged[renamed:]:
            tmp.unlink(missing_ok=True)
        if not renamed:  # leave no directory made for nothing
            for directory in reversed(made):
                with contextlib.suppress(OSError):  # not empty after all: leave it
                    directory.rmdir()
        raise
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
