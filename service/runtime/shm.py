"""Named shared-memory segments: create, attach, detect what a crashed run left, unlink.

A segment is a file in ``shm_dir`` (``/dev/shm``, which is what POSIX ``shm_open`` uses on
Linux, or a hugetlbfs mount on a tuned host) mapped ``MAP_SHARED``. Files instead of
``multiprocessing.shared_memory`` because its resource tracker unlinks segments behind our back
when a child exits, and because a hugetlbfs directory is then just a config value.

Every segment starts with a 128-byte header: a magic, the header's version, the segment's kind
and size, the hash of its layout (``contracts.segments.layout_hash``, derived from the code that
defines the layout) and the run that owns it (pid and that process's start time, so a recycled
pid is not mistaken for the owner). An attacher checks all of them and refuses a foreign,
truncated or differently laid-out segment with the reason, so nobody serves its words as numbers.

Space is reserved when a segment is created (``posix_fallocate``): a ``shm_dir`` or hugetlbfs
pool too small for the segments is refused with the sizes needed and free, never found later by
a SIGBUS on first touch. Creating a segment whose name is taken by a dead owner replaces it; one
owned by a live process is refused with :class:`SegmentInUse`. ``stale_segments`` and
``remove_stale`` find and remove what dead runs left, warm-up shadows included.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import time
from pathlib import Path

import numpy as np

from contracts.constants import EXIT_USAGE
from contracts.errors import CannotRunNow
from contracts.segments import HEADER_BYTES, kind_layout

MAGIC = int.from_bytes(b"LOWLATSH", "little")
LAYOUT_VERSION = 2  # of the header below; 2 added the layout hash

# int64 words of the segment header
(_H_MAGIC, _H_VERSION, _H_KIND, _H_PID, _H_PID_START, _H_SIZE, _H_CREATED_NS, _H_LAYOUT,
 _H_PARAM0) = range(9)  # fmt: skip
HEADER_PARAMS = HEADER_BYTES // 8 - _H_PARAM0  # words free for the segment's kind
# a segment file younger than this with no complete header may be one being created right now
_CREATING_S = 10.0


class SegmentError(CannotRunNow, RuntimeError):
    """A segment is missing, foreign or of the wrong layout: the message says which and why."""


class SpaceError(SegmentError):
    """``shm_dir`` has not the room the segments need: a config or host-sizing mistake."""

    exit_code = EXIT_USAGE


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
        self.inode = os.fstat(fd).st_ino  # the file mapped: a new run's segment is another
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

    @property
    def layout(self) -> int:
        return int(self.header[_H_LAYOUT])

    def param(self, i: int) -> int:
        return int(self.header[_H_PARAM0 + i])

    def array(self, dtype, offset: int, count: int) -> np.ndarray:
        """A numpy view of ``count`` items of ``dtype`` at byte ``offset`` of the segment."""
        return np.frombuffer(self._mmap, dtype=dtype, count=count, offset=offset)

    @classmethod
    def create(
        cls,
        shm_dir: Path,
        name: str,
        size: int,
        kind: int,
        params: tuple[int, ...] = (),
        layout: int | None = None,
    ) -> Segment:
        """Create ``shm_dir/name`` of at least ``size`` bytes, space reserved, zeroed, touched.

        ``layout`` is the hash of what follows the header (default: the kind's own,
        ``contracts.segments.kind_layout``). A segment of that name left by a process that no
        longer runs is replaced; one whose owner still runs raises :class:`SegmentInUse`; a
        ``shm_dir`` without room for it raises :class:`SpaceError`.
        """
        shm_dir = Path(shm_dir)
        path = shm_dir / name
        if len(params) > HEADER_PARAMS:
            raise ValueError(
                f"a segment header holds {HEADER_PARAMS} parameters, not {len(params)}"
            )
        if path.exists():
            _remove_if_stale(path)
        size = segment_bytes(shm_dir, size)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o660)
        except FileExistsError as exc:  # another process won the race since the check
            raise SegmentInUse(f"{path}: created by another process just now") from exc
        except OSError as exc:
            raise SegmentError(f"{path}: cannot create the segment: {exc.strerror}") from None
        try:
            _reserve(fd, path, size)
            segment = cls(path, fd, size, writable=True)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        segment.array(np.uint8, 0, size)[:] = 0  # pre-touch: map every page now
        h = segment.header
        h[_H_VERSION], h[_H_KIND], h[_H_SIZE] = LAYOUT_VERSION, kind, size
        h[_H_LAYOUT] = kind_layout(kind) if layout is None else layout
        h[_H_PID], h[_H_PID_START] = os.getpid(), process_start_time(os.getpid()) or 0
        h[_H_CREATED_NS] = time.monotonic_ns()
        for i, value in enumerate(params):
            h[_H_PARAM0 + i] = value
        h[_H_MAGIC] = MAGIC  # last: an attacher that sees the magic sees a whole header
        return segment

    @classmethod
    def attach(
        cls,
        shm_dir: Path,
        name: str,
        kind: int,
        writable: bool = True,
        layout: int | None = None,
    ) -> Segment:
        """Map an existing segment after checking that it is a whole lowlat segment of ``kind``
        laid out as this build lays it out (``layout``: default the kind's own)."""
        path = Path(shm_dir) / name
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise SegmentError(f"{path}: no such segment (is the service running?)") from None
        except OSError as exc:
            raise SegmentError(f"{path}: cannot open the segment: {exc.strerror}") from None
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            os.close(fd)
            raise SegmentError(f"{path}: {size} bytes is too small to be a lowlat segment")
        segment = cls(path, fd, size, writable)
        expected = kind_layout(kind) if layout is None else layout
        problem = _header_problem(segment.header, kind, size, expected)
        if problem:
            segment.close()
            raise SegmentError(f"{path} {problem}")
        return segment

    def owner_alive(self) -> bool:
        return _owner_alive(self.header)

    def current(self) -> bool:
        """Still the segment under its name (no new run has replaced it), its creator alive?
        A reader holding an attached segment asks before each read, and attaches anew if not."""
        try:
            same = os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            return False
        return same and self.owner_alive()

    def close(self) -> None:
        """Unmap. Views from ``array()`` must be dropped first (numpy holds the buffer)."""
        self.header = np.zeros(0, dtype=np.int64)  # closed: the mapping may go, nothing to read
        # a view may still be alive: then the mapping goes when the process exits
        with contextlib.suppress(BufferError):
            self._mmap.close()

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)


def _header_problem(h: np.ndarray, kind: int, size: int, layout: int) -> str | None:
    """Why a header is not that of a whole segment of ``kind`` and ``layout``, else None."""
    if int(h[_H_MAGIC]) != MAGIC:
        return "is not a lowlat segment (bad magic)"
    if int(h[_H_VERSION]) != LAYOUT_VERSION:
        return (
            f"has header version {int(h[_H_VERSION])}, this build reads {LAYOUT_VERSION}: "
            "written by another lowlat version (restart the service with this one)"
        )
    if int(h[_H_KIND]) != kind:
        return f"is a segment of kind {int(h[_H_KIND])}, expected kind {kind}"
    if int(h[_H_SIZE]) != size:
        return f"says it is {int(h[_H_SIZE])} bytes but the file is {size}: truncated or foreign"
    if int(h[_H_LAYOUT]) != layout:
        return (
            f"has layout {int(h[_H_LAYOUT]) & 0xFFFFFFFFFFFFFFFF:016x}, this build's is "
            f"{layout & 0xFFFFFFFFFFFFFFFF:016x}: written by another build of lowlat "
            "(restart the service with this one)"
        )
    return None


def segment_bytes(shm_dir: Path, size: int) -> int:
    """What a segment of ``size`` bytes takes in ``shm_dir``: whole blocks (pages, or huge
    pages on hugetlbfs), the header included."""
    return _round_up(max(size, HEADER_BYTES), os.statvfs(shm_dir).f_bsize)


HUGEPAGES_SYSFS = Path("/sys/kernel/mm/hugepages")


def free_bytes(shm_dir: Path) -> int | None:
    """Room left in ``shm_dir`` for this user; None when the filesystem does not say.

    A filesystem mounted without a size limit reports no blocks at all: hugetlbfs without
    ``size=`` (a tuned host's /dev/hugepages) is then limited by its pool, the free huge pages
    of its page size; for anything else without a limit the room is unknown.
    """
    st = os.statvfs(shm_dir)
    if st.f_blocks:
        return st.f_bavail * st.f_frsize
    pool = HUGEPAGES_SYSFS / f"hugepages-{st.f_bsize // 1024}kB" / "free_hugepages"
    try:
        return int(pool.read_text()) * st.f_bsize
    except (OSError, ValueError):
        return None


def check_space(shm_dir: Path, sizes: list[int], freed: int = 0) -> None:
    """Refuse (:class:`SpaceError`) when ``shm_dir`` cannot hold segments of ``sizes`` bytes,
    ``freed`` counting what will be removed first. Checked before anything starts."""
    shm_dir = Path(shm_dir)
    need = sum(segment_bytes(shm_dir, size) for size in sizes)
    room = free_bytes(shm_dir)
    if room is None:
        return  # no limit the filesystem reports: fallocate finds a shortfall, one segment early
    free = room + freed
    if need > free:
        raise SpaceError(
            f"{shm_dir}: the {len(sizes)} segments need {_mib(need)}, only {_mib(free)} "
            "free: make room, enlarge it (on hugetlbfs: more huge pages) or set [service] "
            "shm_dir to a larger one"
        )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _reserve(fd: int, path: Path, size: int) -> None:
    """Give the file ``size`` bytes of real space now (a sparse file would SIGBUS on the first
    touch of a page the filesystem cannot back)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.ENOMEM):
            room = free_bytes(path.parent)
            free = "" if room is None else f"; at most {_mib(room + size)} free"
            raise SpaceError(
                f"{path.parent}: no room for segment {path.name} ({_mib(size)}{free}): make "
                "room, enlarge it (on hugetlbfs: more huge pages) or set [service] shm_dir to "
                "a larger one"
            ) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise SegmentError(f"{path}: cannot size the segment: {exc.strerror}") from None
        os.ftruncate(fd, size)  # no fallocate here: the pre-touch below finds a shortfall


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
    except OSError as exc:
        raise SegmentError(f"{path}: cannot read the segment to replace: {exc.strerror}") from None
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
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise SegmentError(f"{path}: cannot remove the stale segment: {exc.strerror}") from None


def segment_owner(path: Path) -> int | None:
    """The pid of the live process that owns the segment at ``path``; None when it is stale
    (owner gone, or no whole lowlat header). A file with no whole header that is younger than
    a few seconds counts as owned (pid 0): a process may be creating it right now."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError:
        return None
    header = np.frombuffer(raw, dtype=np.int64) if len(raw) == HEADER_BYTES else None
    if header is None or int(header[_H_MAGIC]) != MAGIC:
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return None
        return 0 if age < _CREATING_S else None
    return int(header[_H_PID]) if _owner_alive(header) else None


def prefix_segments(shm_dir: Path, prefix: str) -> list[Path]:
    """Every segment of the instance ``prefix`` in ``shm_dir``: its own (``prefix.*``) and its
    stages' warm-up shadows (``prefix.warmup-<pid>.*``)."""
    return sorted(p for p in Path(shm_dir).glob(f"{prefix}.*") if p.is_file())


def stale_segments(shm_dir: Path, prefix: str) -> list[Path]:
    """Segments of ``prefix`` in ``shm_dir`` whose owner no longer runs, warm-up ones included."""
    return [path for path in prefix_segments(shm_dir, prefix) if segment_owner(path) is None]


def remove_stale(shm_dir: Path, prefix: str) -> list[tuple[Path, int]]:
    """Unlink every stale segment of ``prefix``; the paths and sizes removed."""
    removed = []
    for path in stale_segments(shm_dir, prefix):
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_blocks * 512
            path.unlink()
            removed.append((path, size))
    return removed
