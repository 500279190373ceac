"""Check an output file before the work that produces it: never a long run lost at the end.

``check_output`` refuses, with one line, a path that cannot be written: a directory, a missing
or unwritable parent, an existing file that cannot be replaced, or too little free space for
what will be written. Writers still write atomically (temporary, fsync, rename); this only moves
the refusal to before the work.
"""

from __future__ import annotations

import os
from pathlib import Path

from contracts.errors import LowlatError


def check_output(path: Path, what: str, need_bytes: int = 0) -> None:
    """Raise LowlatError unless ``path`` can be written with ``need_bytes`` of room."""
    path = Path(path)
    where = f"{what} {path}"
    if path.is_dir():
        raise LowlatError(f"{where}: is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise LowlatError(f"{where}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LowlatError(f"{where}: directory {parent} is not writable by this user")
    if path.exists() and not os.access(path, os.W_OK):
        raise LowlatError(f"{where}: exists and is not writable by this user")
    if need_bytes:
        st = os.statvfs(parent)
        free = st.f_bavail * st.f_frsize
        if free < need_bytes:
            raise LowlatError(
                f"{where}: needs {need_bytes / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free "
                f"in {parent}; make room or write elsewhere"
            )


def check_output_dir(path: Path, what: str, need_bytes: int = 0) -> None:
    """Raise LowlatError unless ``path`` is a writable directory, or one that can be made."""
    path = Path(path)
    where = f"{what} {path}"
    if path.exists() and not path.is_dir():
        raise LowlatError(f"{where}: is a file; give a directory for the report")
    existing = path if path.is_dir() else path.parent
    if not existing.is_dir():
        raise LowlatError(f"{where}: directory {existing} does not exist; create it first")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LowlatError(f"{where}: directory {existing} is not writable by this user")
    check_output(existing / ".lowlat-probe", what, need_bytes)
