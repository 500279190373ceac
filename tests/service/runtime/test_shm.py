"""Shared-memory segments: round trips, every refusal of a foreign file, and stale detection.

Segments live in ``tmp_path`` (``Segment`` works in any directory); the processes that own
segments in the stale-detection tests are short-lived children that sleep, never spin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import (
    CONTROL_WORDS,
    GO,
    HEADER_BYTES,
    KILL_SWITCH,
    KIND_CONTROL,
    KIND_STATS,
    kind_layout,
)
from service.kernels.control import get_word, set_word
from service.runtime.segments import attach_control, attach_stats, create_control
from service.runtime.shm import (
    LAYOUT_VERSION,
    MAGIC,
    Segment,
    SegmentError,
    SegmentInUse,
    SpaceError,
    check_space,
    process_start_time,
    remove_stale,
    stale_segments,
)

KIND = 41
# int64 words of the header (service.runtime.shm's layout, restated: a change there must show here)
H_MAGIC, H_VERSION, H_KIND, H_PID, H_PID_START, H_SIZE, H_CREATED, H_LAYOUT, H_PARAM0 = range(9)


def _write_header(path: Path, words: dict[int, int], size: int = 4096) -> None:
    """A segment file of ``size`` bytes whose header is whole (size and layout of ``KIND``)
    but for ``words``."""
    raw = np.zeros(size // 8, dtype=np.int64)
    raw[H_SIZE], raw[H_LAYOUT] = size, kind_layout(KIND)
    for index, value in words.items():
        raw[index] = value
    path.write_bytes(raw.tobytes())


def _header(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes()[:HEADER_BYTES], dtype=np.int64)


# --------------------------------------------------------------------------- round trips


def test_create_then_attach_shares_the_memory(tmp_path):
    created = Segment.create(tmp_path, "seg", 10_000, KIND, (7, -3, 2**40))
    block = os.statvfs(tmp_path).f_bsize
    assert created.size >= 10_000 and created.size % block == 0
    assert (tmp_path / "seg").stat().st_size == created.size
    assert created.name == "seg" and created.kind == KIND
    assert created.owner_pid == os.getpid() and created.owner_alive()
    header = _header(tmp_path / "seg")
    assert header[H_MAGIC] == MAGIC and header[H_VERSION] == LAYOUT_VERSION
    assert header[H_SIZE] == created.size
    assert header[H_PID_START] == process_start_time(os.getpid())

    attached = Segment.attach(tmp_path, "seg", KIND)
    assert attached.size == created.size
    assert [attached.param(i) for i in range(4)] == [7, -3, 2**40, 0]
    mine = created.array(np.int64, HEADER_BYTES, 100)
    theirs = attached.array(np.int64, HEADER_BYTES, 100)
    assert not theirs.any()  # created zeroed
    mine[5] = 123
    theirs[99] = -9
    assert theirs[5] == 123 and mine[99] == -9


def test_read_only_attach_cannot_write(tmp_path):
    Segment.create(tmp_path, "seg", 4096, KIND)
    ro = Segment.attach(tmp_path, "seg", KIND, writable=False)
    view = ro.array(np.int64, HEADER_BYTES, 4)
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1


def test_size_is_rounded_up_to_the_block_size(tmp_path):
    block = os.statvfs(tmp_path).f_bsize
    assert Segment.create(tmp_path, "a", 1, KIND).size == block
    assert Segment.create(tmp_path, "b", block, KIND).size == block
    assert Segment.create(tmp_path, "c", block + 1, KIND).size == 2 * block


def test_unlink_removes_the_file_and_is_idempotent(tmp_path):
    seg = Segment.create(tmp_path, "seg", 4096, KIND)
    seg.unlink()
    assert not (tmp_path / "seg").exists()
    seg.unlink()
    with pytest.raises(SegmentError, match="no such segment"):
        Segment.attach(tmp_path, "seg", KIND)


def test_control_block_words_are_shared(tmp_path):
    _, mine = create_control(tmp_path, "ctl")
    _, theirs = attach_control(tmp_path, "ctl")
    assert len(mine) == CONTROL_WORDS
    set_word(mine, KILL_SWITCH, 1)
    assert get_word(theirs, KILL_SWITCH) == 1
    assert get_word(theirs, GO) == 0
    set_word(theirs, GO, 5)
    assert mine[GO] == 5


# --------------------------------------------------------------------------- refusals


def test_attach_missing_segment(tmp_path):
    with pytest.raises(SegmentError, match="no such segment") as exc:
        Segment.attach(tmp_path, "nothing-here", KIND)
    assert str(tmp_path / "nothing-here") in str(exc.value)


def test_attach_segment_of_another_kind(tmp_path):
    create_control(tmp_path, "ctl")
    with pytest.raises(SegmentError) as exc:
        attach_stats(tmp_path, "ctl")
    message = str(exc.value)
    assert f"kind {KIND_CONTROL}" in message
    assert f"expected kind {KIND_STATS}" in message


def test_attach_file_of_random_bytes_is_refused(tmp_path):
    path = tmp_path / "random"
    path.write_bytes(np.random.default_rng(5).bytes(8192))
    with pytest.raises(SegmentError, match="bad magic"):
        Segment.attach(tmp_path, "random", KIND)


def test_attach_segment_of_another_layout_version(tmp_path):
    _write_header(tmp_path / "old", {H_MAGIC: MAGIC, H_VERSION: LAYOUT_VERSION + 1, H_KIND: KIND})
    with pytest.raises(SegmentError, match=f"header version {LAYOUT_VERSION + 1}"):
        Segment.attach(tmp_path, "old", KIND)


def test_attach_segment_of_another_layout_is_refused(tmp_path):
    """Same magic, version, kind and size, but laid out by another build: refused, by hash."""
    whole = {H_MAGIC: MAGIC, H_VERSION: LAYOUT_VERSION, H_KIND: KIND}
    _write_header(tmp_path / "other", {**whole, H_LAYOUT: kind_layout(KIND) ^ 1})
    with pytest.raises(SegmentError, match="another build of lowlat"):
        Segment.attach(tmp_path, "other", KIND)
    _write_header(tmp_path / "same", whole)
    assert Segment.attach(tmp_path, "same", KIND).layout == kind_layout(KIND)


def test_attach_segment_whose_size_disagrees_with_its_header(tmp_path):
    """A truncated (or grown) file: the header's size is not the file's."""
    created = Segment.create(tmp_path, "seg", 8192, KIND)
    os.truncate(tmp_path / "seg", created.size // 2)
    with pytest.raises(SegmentError, match="truncated or foreign"):
        Segment.attach(tmp_path, "seg", KIND)


def test_layouts_are_derived_from_the_definitions():
    """Each block kind has its own hash, and the ring's follows its record type."""
    from contracts.records import FILL, MARKET_DATA
    from service.runtime.segments import ring_layout

    assert kind_layout(KIND_STATS) != kind_layout(KIND_CONTROL) != kind_layout(KIND)
    assert ring_layout(MARKET_DATA) != ring_layout(FILL)
    assert ring_layout(MARKET_DATA) == ring_layout(np.dtype(MARKET_DATA.descr))


@pytest.mark.parametrize("size", [0, 1, HEADER_BYTES - 1])
def test_attach_file_too_small_for_a_header(tmp_path, size):
    (tmp_path / "tiny").write_bytes(b"\x01" * size)
    with pytest.raises(SegmentError, match=f"{size} bytes is too small"):
        Segment.attach(tmp_path, "tiny", KIND)


def test_create_over_a_segment_this_process_owns_replaces_it(tmp_path):
    first = Segment.create(tmp_path, "seg", 4096, KIND, (1,))
    second = Segment.create(tmp_path, "seg", 8192, KIND, (2,))
    assert second.size == 8192 and Segment.attach(tmp_path, "seg", KIND).param(0) == 2
    assert first.param(0) == 1  # the old mapping lives on, unlinked


# --------------------------------------------------------------------------- owners and stale


def _run_python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], text=True, **kwargs)


def test_segment_of_an_exited_process_is_stale_and_replaced(tmp_path):
    child = _run_python(
        f"""
        from service.runtime.shm import Segment
        Segment.create({str(tmp_path)!r}, "lltest.md", 4096, {KIND}, (99,))
        """
    )
    assert child.wait(timeout=60) == 0
    path = tmp_path / "lltest.md"
    assert _header(path)[H_PID] == child.pid
    (tmp_path / "other.md").write_bytes(b"")  # another prefix: never listed
    Segment.create(tmp_path, "lltest.live", 4096, KIND)  # ours, alive: not stale
    short = tmp_path / "lltest.short"
    short.write_bytes(b"x" * 10)  # too short to name an owner: stale once it is not new
    (tmp_path / "lltest.new").write_bytes(b"")  # no header yet: perhaps being created now
    os.utime(short, (1, 1))

    assert stale_segments(tmp_path, "lltest") == [path, short]

    seg = Segment.create(tmp_path, "lltest.md", 4096, KIND)
    assert seg.owner_pid == os.getpid() and seg.param(0) == 0
    assert stale_segments(tmp_path, "lltest") == [short]


def test_segment_of_a_live_process_is_in_use(tmp_path):
    child = _run_python(
        f"""
        import sys
        from service.runtime.shm import Segment
        Segment.create({str(tmp_path)!r}, "lltest.md", 4096, {KIND})
        print("ready", flush=True)
        sys.stdin.read()  # sleep until the test closes our stdin
        """,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(SegmentInUse, match=f"running process {child.pid}"):
            Segment.create(tmp_path, "lltest.md", 4096, KIND)
        assert stale_segments(tmp_path, "lltest") == []
        assert Segment.attach(tmp_path, "lltest.md", KIND).owner_alive()
        assert (tmp_path / "lltest.md").exists()  # refused, not removed
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    assert stale_segments(tmp_path, "lltest") == [tmp_path / "lltest.md"]
    Segment.create(tmp_path, "lltest.md", 4096, KIND)


@pytest.mark.parametrize("start_offset", [0, 1, -1, 10**6])
def test_a_recycled_pid_is_not_the_owner(tmp_path, start_offset):
    """The header's pid runs, but it is another process if its start time differs."""
    pid = os.getppid()  # alive, and not this process
    start = process_start_time(pid)
    assert start is not None
    path = tmp_path / "lltest.md"
    _write_header(
        path,
        {
            H_MAGIC: MAGIC,
            H_VERSION: LAYOUT_VERSION,
            H_KIND: KIND,
            H_PID: pid,
            H_PID_START: start + start_offset,
        },
    )
    if start_offset == 0:
        assert stale_segments(tmp_path, "lltest") == []
        seg = Segment.attach(tmp_path, "lltest.md", KIND)
        assert seg.owner_pid == pid and seg.owner_alive()
        with pytest.raises(SegmentInUse, match=str(pid)):
            Segment.create(tmp_path, "lltest.md", 4096, KIND)
    else:
        assert not Segment.attach(tmp_path, "lltest.md", KIND).owner_alive()
        assert stale_segments(tmp_path, "lltest") == [path]
        assert Segment.create(tmp_path, "lltest.md", 4096, KIND).owner_pid == os.getpid()


# --------------------------------------------------------------------------- process_start_time


def test_process_start_time_of_this_process():
    start = process_start_time(os.getpid())
    assert isinstance(start, int) and start > 0
    assert process_start_time(os.getpid()) == start
    parent = process_start_time(os.getppid())
    assert isinstance(parent, int) and parent <= start


def test_process_start_time_of_no_process():
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert process_start_time(pid_max + 1) is None
    child = _run_python("pass")
    child.wait(timeout=60)
    assert process_start_time(child.pid) is None  # reaped, and not reused this soon


def test_process_start_time_survives_parentheses_and_spaces_in_the_name():
    child = _run_python(
        """
        import sys
        print("ready", flush=True)
        sys.stdin.readline()
        with open("/proc/self/comm", "w") as f:
            f.write("a) b (c) 1 2")
        print("renamed", flush=True)
        sys.stdin.read()
        """,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        before = process_start_time(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "renamed"
        assert b"a) b (c) 1 2" in Path(f"/proc/{child.pid}/stat").read_bytes()
        assert process_start_time(child.pid) == before
        assert before >= process_start_time(os.getpid())
    finally:
        child.stdin.close()
        child.wait(timeout=60)


def test_remove_stale_takes_warmup_shadows_and_keeps_live_ones(tmp_path):
    """What a stage killed during warm-up left (``prefix.warmup-<pid>.*``) goes too."""
    child = _run_python(
        f"""
        from service.runtime.shm import Segment
        for name in ("lltest.stats", "lltest.warmup-77.stats", "lltest.warmup-77.md"):
            Segment.create({str(tmp_path)!r}, name, 4096, {KIND})
        """
    )
    assert child.wait(timeout=60) == 0
    Segment.create(tmp_path, "lltest.control", 4096, KIND)  # this live process's
    removed = [path.name for path, size in remove_stale(tmp_path, "lltest")]
    assert removed == ["lltest.stats", "lltest.warmup-77.md", "lltest.warmup-77.stats"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lltest.control"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only): a shm_dir too small for what is asked of it."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_too_small_a_directory_is_refused_up_front(small_tmpfs):
    with pytest.raises(SpaceError, match=r"need 2\.0 MiB, only 1\.0 MiB free"):
        check_space(small_tmpfs, [2**20, 2**20])
    check_space(small_tmpfs, [2**19])


def test_creating_past_the_space_left_is_refused_not_a_sigbus(small_tmpfs):
    """The space is reserved at creation (fallocate): no sparse file to fault on later."""
    Segment.create(small_tmpfs, "a", 600 * 1024, KIND)
    with pytest.raises(SpaceError, match="no room for segment b"):
        Segment.create(small_tmpfs, "b", 600 * 1024, KIND)
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["a"]  # nothing half-made


@pytest.fixture
def hugetlbfs(tmp_path):
    """A hugetlbfs mounted without size= (as a tuned host's /dev/hugepages) over a pool of 4
    free 2 MiB pages (root only; the machine's pool size is restored)."""
    pool = Path("/proc/sys/vm/nr_hugepages")
    try:
        before = pool.read_text()
        pool.write_text(str(int(before) + 4))
    except OSError:
        pytest.skip("cannot size the huge page pool here (needs root)")
    mount = tmp_path / "hugepages"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "hugetlbfs", "none", str(mount)], capture_output=True)
    free = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
    if done.returncode != 0 or int(free.read_text()) < 4:
        pool.write_text(before)
        pytest.skip("no hugetlbfs or no 4 free huge pages here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
    pool.write_text(before)


def test_hugetlbfs_without_a_size_is_limited_by_its_pool(hugetlbfs):
    """statvfs says 0 blocks there (no limit): the free huge pages are the room (found by the
    lab: a tuned host's engine refused to start with 'only 0.0 MiB free')."""
    from service.runtime.shm import free_bytes

    free_pages = int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    assert os.statvfs(hugetlbfs).f_blocks == 0
    assert free_bytes(hugetlbfs) == free_pages * 2**21
    check_space(hugetlbfs, [2**21, 2**20])  # two pages
    with pytest.raises(SpaceError, match="MiB free"):
        check_space(hugetlbfs, [2**21] * (free_pages + 1))
    segment = Segment.create(hugetlbfs, "seg", 4096, KIND)
    assert segment.size == 2**21  # one whole huge page, reserved
    assert free_bytes(hugetlbfs) == (free_pages - 1) * 2**21
