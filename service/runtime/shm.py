"""Named shared-memory segments: create, attach, detect what a crashed run left, unlink.

A segment is a file in ``shm_dir`` (``/dev/shm``, which is what POSIX ``shm_open`` uses on
Linux, or a hugetlbfs mount on a tuned host) mapped ``MAP_SHARED``. Files instead of
``multiprocessing.shared_memory`` because its resource tracker unlinks segments behind our back
when a child exits, and because a hugetlbfs directory is then just a config value.

Every segment starts with a 128-byte header naming its kind, its layout version and the run
that owns it (pid and that process's start time, so a recycled pid is not mistaken for the
owner). Creating a segment whose name is taken by a dead owner replaces it; one owned by a live
process is refused with :class:`SegmentInUse`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
from pathlib import Path

import numpy as np

from contracts.segments import HEADER_BYTES

MAGIC = int.from_bytes(b"LOWLATSH", "little")
LAYOUT_VERSION = 1

# int64 words of the segment header
_H_MAGIC, _H_VERSION, _H_KIND, _H_PID, _H_PID_START, _H_SIZE, _H_CREATED_NS, _H_PARAM0 = range(8)
HEADER_PARAMS = 8  # words _H_PARAM0 .. _H_PARAM0+7 are free for the segment's kind


class SegmentError(RuntimeError):
    """A segment is missing, foreign or of the wrong layout: the message says which and why."""


class SegmentInUse(SegmentError):
    """The segment belongs to a process that is still running."""


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def _round_up(size: int, block: int) -> int:
    return (size + block - 1) // block * block


class Segment:
    """One mapped segment; ``words`` is its header as int64, ``array()`` gives typed views."""

    def __init__(self, path: Path, fd: int, size: int, writable: bool):
        self.path = path
        self.size = size
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        # MAP_POPULATE: fault every page in now, not on the hot path's first touch
        self._mmap = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=prot)
        os.close(fd)
        self.header = np.frombuffer(self._mmap, dtype=np.int64, count=HEADER_BYTES // 8)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> int:
        return int(self.header[_H_KIND])

    @property
    def owner_pid(self) -> int:
        return int(self.header[_H_PID])

    @property
    def created_ns(self) -> int:
        """CLOCK_MONOTONIC time of creation (comparable with time.monotonic_ns())."""
        return int(self.header[_H_CREATED_NS])

    def param(self, i: int) -> int:
        return int(self.header[_H_PARAM0 + i])

    def array(self, dtype, offset: int, count: int) -> np.ndarray:
        """A numpy view of ``count`` items of ``dtype`` at byte ``offset`` of the segment."""
        return np.frombuffer(self._mmap, dtype=dtype, count=count, offset=offset)

    @classmethod
    def create(
        cls, shm_dir: Path, name: str, size: int, kind: int, params: tuple[int, ...] = ()
    ) -> Segment:
        """Create ``shm_dir/name`` of at least ``size`` bytes, zeroed and pre-touched.

        A segment of that name left by a process that no longer runs is replaced; one whose
        owner still runs raises :class:`SegmentInUse`.
        """
        shm_dir = Path(shm_dir)
        path = shm_dir / name
        if path.exists():
            _remove_if_stale(path)
        size = _round_up(max(size, HEADER_BYTES), os.statvfs(shm_dir).f_bsize)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o660)
        except FileExistsError as exc:  # another process won the race since the check
            raise SegmentInUse(f"{path}: created by another process just now") from exc
        try:
            os.ftruncate(fd, size)
            segment = cls(path, fd, size, writable=True)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        segment.array(np.uint8, 0, size)[:] = 0  # pre-touch: allocate every page now
        h = segment.header
        h[_H_VERSION], h[_H_KIND], h[_H_SIZE] = LAYOUT_VERSION, kind, size
        h[_H_PID], h[_H_PID_START] = os.getpid(), process_start_time(os.getpid()) or 0
        h[_H_CREATED_NS] = time.monotonic_ns()
        for i, value in enumerate(params):
            h[_H_PARAM0 + i] = value
        h[_H_MAGIC] = MAGIC  # last: an attacher that sees the magic sees a whole header
        return segment

    @classmethod
    def attach(cls, shm_dir: Path, name: str, kind: int, writable: bool = True) -> Segment:
        """Map an existing segment after checking that it is a lowlat segment of ``kind``."""
        path = Path(shm_dir) / name
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise SegmentError(f"{path}: no such segment (is the service running?)") from None
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            os.close(fd)
            raise SegmentError(f"{path}: {size} bytes is too small to be a lowlat segment")
        segment = cls(path, fd, size, writable)
        h = segment.header
        problem = None
        if int(h[_H_MAGIC]) != MAGIC:
            problem = "is not a lowlat segment (bad magic)"
        elif int(h[_H_VERSION]) != LAYOUT_VERSION:
            problem = f"has layout version {int(h[_H_VERSION])}, this build reads {LAYOUT_VERSION}"
        elif int(h[_H_KIND]) != kind:
            problem = f"is a segment of kind {int(h[_H_KIND])}, expected kind {kind}"
        if problem:
            segment.close()
            raise SegmentError(f"{path} {problem}")
        return segment

    def owner_alive(self) -> bool:
        return _owner_alive(self.header)

    def close(self) -> None:
        """Unmap. Views from ``array()`` must be dropped first (numpy holds the buffer)."""
        self.header = np.zeros(0, dtype=np.int64)  # closed: the mapping may go, nothing to read
        # a view may still be alive: then the mapping goes when the process exits
        with contextlib.suppress(BufferError):
            self._mmap.close()

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)


def _owner_alive(header: np.ndarray) -> bool:
    pid, start = int(header[_H_PID]), int(header[_H_PID_START])
    return pid > 0 and process_start_time(pid) == start


def _remove_if_stale(path: Path) -> None:
    """Unlink ``path`` unless a live process owns it (then raise SegmentInUse)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        return
    if len(raw) == HEADER_BYTES:
        header = np.frombuffer(raw, dtype=np.int64)
        if (
            int(header[_H_MAGIC]) == MAGIC
            and _owner_alive(header)
            and int(header[_H_PID]) != os.getpid()
        ):
            raise SegmentInUse(
                f"{path} belongs to running process {int(header[_H_PID])}: stop that service "
                "first, or give this run another shm_prefix"
            )
    path.unlink(missing_ok=True)


def stale_segments(shm_dir: Path, prefix: str) -> list[Path]:
    """Segments named ``prefix.*`` in ``shm_dir`` whose owner no longer runs."""
    found = []
    for path in sorted(Path(shm_dir).glob(f"{prefix}.*")):
        try:
            with open(path, "rb") as f:
                raw = f.read(HEADER_BYTES)
        except OSError:
            continue
        if len(raw) < HEADER_BYTES or not _owner_alive(np.frombuffer(raw, dtype=np.int64)):
            found.append(path)
    return found
