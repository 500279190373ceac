"""Every segment of one pipeline: create them (the supervisor), attach to them (the stages).

``create_segments`` makes the control block, the stats block and the three rings under one
prefix, replacing what a crashed run left and refusing what a live run owns; the caller owns
them and unlinks them when the run ends. A stage process calls ``attach_segments``; its warm-up
calls ``create_segments`` with a private prefix, so the shadow copy it compiles against has the
same types as the live segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contracts import segments as S
from contracts import stats_layout as L
from contracts.records import FILL, MARKET_DATA, ORDER
from service.config import Config
from service.kernels import ring as R
from service.kernels.ring import CONTROL_WORDS, DATA_OFFSET, Ring, new_local
from service.runtime.shm import Segment, SegmentError, check_space, remove_stale
from service.runtime.state import slo_thresholds

RING_SPECS = (  # name, record type, [rings] capacity key
    ("md", MARKET_DATA, "md_capacity"),
    ("orders", ORDER, "order_capacity"),
    ("fills", FILL, "fill_capacity"),
)


# ------------------------------------------------------------------------------------- rings


def ring_layout(dtype) -> int:
    """A ring's layout hash: its control words and its record type (``contracts.segments``)."""
    return S.layout_hash("ring", S.module_facts(R), np.dtype(dtype).descr)


def ring_bytes(dtype, capacity: int) -> int:
    return DATA_OFFSET + capacity * np.dtype(dtype).itemsize


def create_ring(shm_dir: Path, name: str, dtype, capacity: int) -> tuple[Segment, Ring]:
    """Create the segment of a ring (replacing a stale one) and return it with a handle."""
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of two >= 2, got {capacity}")
    dtype = np.dtype(dtype)
    params = (capacity, dtype.itemsize)
    segment = Segment.create(
        shm_dir, name, ring_bytes(dtype, capacity), S.KIND_RING, params, ring_layout(dtype)
    )
    return segment, _ring_handle(segment, dtype, capacity)


def attach_ring(shm_dir: Path, name: str, dtype, writable: bool = True) -> tuple[Segment, Ring]:
    """Attach to a ring created by another process; its layout and record type must be this
    build's ``dtype``, its size what its capacity needs."""
    dtype = np.dtype(dtype)
    segment = Segment.attach(shm_dir, name, S.KIND_RING, writable, ring_layout(dtype))
    capacity, itemsize = segment.param(0), segment.param(1)
    fits = capacity >= 2 and not capacity & (capacity - 1) and itemsize == dtype.itemsize
    if not fits or ring_bytes(dtype, capacity) > segment.size:
        segment.close()
        raise SegmentError(
            f"{segment.path} claims {capacity} records of {itemsize} bytes in "
            f"{segment.size} bytes: not a whole ring of {dtype.itemsize}-byte records"
        )
    return segment, _ring_handle(segment, dtype, capacity)


def _ring_handle(segment: Segment, dtype: np.dtype, capacity: int) -> Ring:
    ctrl = segment.array(np.int64, 0, CONTROL_WORDS)
    data = segment.array(dtype, DATA_OFFSET, capacity)
    return Ring(ctrl, data, new_local(ctrl), np.int64(capacity - 1))


# ------------------------------------------------------------------------ stats and control


def create_stats(shm_dir: Path, name: str) -> tuple[Segment, np.ndarray]:
    size = S.HEADER_BYTES + L.STATS_WORDS * 8
    return _words(Segment.create(shm_dir, name, size, S.KIND_STATS), L.STATS_WORDS)


def attach_stats(shm_dir: Path, name: str, writable: bool = True) -> tuple[Segment, np.ndarray]:
    return _words(Segment.attach(shm_dir, name, S.KIND_STATS, writable), L.STATS_WORDS)


def create_control(shm_dir: Path, name: str) -> tuple[Segment, np.ndarray]:
    size = S.HEADER_BYTES + S.CONTROL_WORDS * 8
    return _words(Segment.create(shm_dir, name, size, S.KIND_CONTROL), S.CONTROL_WORDS)


def attach_control(shm_dir: Path, name: str, writable: bool = True) -> tuple[Segment, np.ndarray]:
    return _words(Segment.attach(shm_dir, name, S.KIND_CONTROL, writable), S.CONTROL_WORDS)


def _words(segment: Segment, count: int) -> tuple[Segment, np.ndarray]:
    """A block segment and its ``count`` int64 words after the header."""
    return segment, segment.array(np.int64, S.HEADER_BYTES, count)


# ------------------------------------------------------------------------------ a pipeline


@dataclass
class Segments:
    """One set of attached segments (the live ones, or a stage's private warm-up shadow)."""

    prefix: str
    shm_dir: Path
    control: np.ndarray
    stats: np.ndarray
    rings: dict[str, Ring]
    owned: list[Segment] = field(default_factory=list)

    def unlink(self) -> None:
        for segment in self.owned:
            segment.unlink()


def segment_sizes(config: Config) -> list[int]:
    """The bytes of each segment of one pipeline, before rounding to the directory's blocks."""
    sizes = [S.HEADER_BYTES + S.CONTROL_WORDS * 8, S.HEADER_BYTES + L.STATS_WORDS * 8]
    sizes += [ring_bytes(dtype, getattr(config.rings, key)) for _, dtype, key in RING_SPECS]
    return sizes


def prepare_shm_dir(config: Config, shadows: int) -> list[tuple[Path, int]]:
    """Before a run starts: remove what dead runs of this prefix left (their warm-up shadows
    too), then refuse unless ``shm_dir`` holds the live segments and ``shadows`` warm-up copies
    at once (each stage process warms up on its own copy). The stale segments removed."""
    shm_dir = Path(config.service.shm_dir)
    removed = remove_stale(shm_dir, config.service.shm_prefix)
    check_space(shm_dir, segment_sizes(config) * (1 + shadows))
    return removed


def create_segments(config: Config, prefix: str | None = None) -> Segments:
    """Create every segment of one pipeline (the caller owns and later unlinks them)."""
    prefix = prefix or config.service.shm_prefix
    shm_dir = Path(config.service.shm_dir)
    owned = []
    try:
        seg, control = create_control(shm_dir, f"{prefix}.control")
        owned.append(seg)
        seg, stats = create_stats(shm_dir, f"{prefix}.stats")
        owned.append(seg)
        thresholds = slo_thresholds(config)
        stats[L.SLO_THRESHOLDS_NS : L.SLO_THRESHOLDS_NS + thresholds.size] = thresholds
        rings = {}
        for name, dtype, capacity_key in RING_SPECS:
            seg, rings[name] = create_ring(
                shm_dir, f"{prefix}.{name}", dtype, getattr(config.rings, capacity_key)
            )
            owned.append(seg)
    except BaseException:
        for seg in owned:
            seg.unlink()
        raise
    return Segments(prefix, shm_dir, control, stats, rings, owned)


def attach_segments(config: Config) -> Segments:
    prefix = config.service.shm_prefix
    shm_dir = Path(config.service.shm_dir)
    _, control = attach_control(shm_dir, f"{prefix}.control")
    _, stats = attach_stats(shm_dir, f"{prefix}.stats")
    rings = {
        name: attach_ring(shm_dir, f"{prefix}.{name}", dtype)[1] for name, dtype, _ in RING_SPECS
    }
    return Segments(prefix, shm_dir, control, stats, rings)
