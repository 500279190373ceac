"""Recorded market-data files: write them atomically, open them as read-only memory maps.

Layout (little-endian, as on x86_64 and aarch64)::

    offset 0   64-byte header (HEADER below; HEADER_V2 for version 2)
    offset 64  record_count records: version 1 MARKET_DATA (32 bytes, L2 levels and trades,
               what ``record`` writes), version 2 MARKET_EVENT (48 bytes: order-level events
               with their order ids and historical times, what ``import lobster`` writes)

A version-1 reader refuses a version-2 file by its version word. Both versions open here; a
replay feeds the ring MARKET_DATA either way (``Recording.records``: a version-2 file's order
events become the level updates and trades they imply, from each event's ``level_qty``).

The header carries a CRC32 of the record layout's description, so a file written with another
MARKET_DATA layout is refused instead of being replayed as garbage. ``open_recording`` checks
the header, the file size and every record, and refuses a bad file with one ``RecordingError``
line that names the file, what is wrong and what would be right: a replay never starts on a
file that would break a stage halfway through.

``write_recording`` and ``record_simulated`` write a temporary file in the target's directory,
fsync it and rename it over the final name, so a crash or a failed write never leaves a
half-written file under that name.

This module imports no numba kernel until ``record_simulated`` runs, so tools can validate
recordings without compiling the hot path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from contracts.errors import LowlatError
from contracts.records import (
    BUY,
    HALT,
    HIDDEN_EXECUTE,
    LEVEL,
    MARKET_DATA,
    MARKET_EVENT,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
    SELL,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    TRADE,
)
from service.config import FeedConfig

MAGIC = b"LOWLATMD"
FORMAT_VERSION = 1
RECORD_SIZE = MARKET_DATA.itemsize
HEADER_SIZE = 64
MAX_INSTRUMENTS = 1 << 16  # MARKET_DATA.instrument is uint16

# What the CRC in the header protects: field names, types, byte order and offsets.
DTYPE_DESCRIPTION = repr(MARKET_DATA.descr)
DTYPE_CRC = zlib.crc32(DTYPE_DESCRIPTION.encode("ascii"))

HEADER = np.dtype(
    [
        ("magic", "S8"),  # b"LOWLATMD"
        ("version", "<u4"),  # FORMAT_VERSION
        ("record_size", "<u4"),  # bytes per record: 32
        ("record_count", "<u8"),  # records after the header
        ("n_instruments", "<u4"),  # every record's instrument is below this
        ("dtype_crc", "<u4"),  # zlib.crc32 of DTYPE_DESCRIPTION
        ("reserved", "V32"),  # zero
    ]
)
assert HEADER.itemsize == HEADER_SIZE, HEADER

EVENTS_VERSION = 2
EVENT_SIZE = MARKET_EVENT.itemsize
EVENT_DTYPE_CRC = zlib.crc32(repr(MARKET_EVENT.descr).encode("ascii"))
HEADER_V2 = np.dtype(
    [
        ("magic", "S8"),
        ("version", "<u4"),  # EVENTS_VERSION
        ("record_size", "<u4"),  # 48
        ("record_count", "<u8"),
        ("n_instruments", "<u4"),
        ("dtype_crc", "<u4"),  # zlib.crc32 of MARKET_EVENT's description
        ("tick_nano", "<i8"),  # currency per price tick, in 1e-9 units (0.01 $ -> 10_000_000)
        ("session_date", "<u4"),  # YYYYMMDD of time_ns's midnight; 0 when unknown
        ("reserved", "V20"),  # zero
    ]
)
assert HEADER_V2.itemsize == HEADER_SIZE, HEADER_V2
_EVENT_KINDS = np.array(
    [
        LEVEL,
        TRADE,
        SNAPSHOT_BEGIN,
        SNAPSHOT_END,
        ORDER_ADD,
        ORDER_CANCEL,
        ORDER_DELETE,
        ORDER_EXECUTE,
        HIDDEN_EXECUTE,
        HALT,
    ],
    dtype=np.uint8,
)

_VALID_KINDS = np.array([LEVEL, TRADE, SNAPSHOT_BEGIN, SNAPSHOT_END], dtype=np.uint8)
_CHECK_CHUNK = 1 << 20  # records validated per step: bounds the temporary arrays
_WRITE_CHUNK = 1 << 16  # records generated per step by record_simulated
_PROGRESS_MIN_MESSAGES = 1_000_000  # below this a recording takes well under a second


class RecordingError(LowlatError, ValueError):
    """A recording (or records about to be written) that a replay must not use."""


@dataclass(frozen=True)
class Recording:
    """An opened, validated recording."""

    path: Path
    records: np.ndarray  # MARKET_DATA to replay: mapped from a v1 file, derived from a v2 one
    n_instruments: int
    version: int = FORMAT_VERSION
    events: np.ndarray | None = None  # a v2 file's MARKET_EVENT records, mapped read-only
    tick_nano: int = 0  # v2: currency per tick in 1e-9 units; 0 unknown
    session_date: int = 0  # v2: YYYYMMDD; 0 unknown

    def __len__(self) -> int:
        return len(self.records)


def write_recording(path: str | os.PathLike[str], records: np.ndarray, n_instruments: int) -> Path:
    """Validate ``records`` and write them to ``path`` atomically; returns the path.

    Raises RecordingError (nothing is written) when the records would make a file that
    ``open_recording`` refuses.
    """
    path = Path(path)
    if not isinstance(records, np.ndarray) or records.dtype != MARKET_DATA or records.ndim != 1:
        raise TypeError(
            f"{path}: records to write must be a 1-d MARKET_DATA array, got "
            f"{type(records).__name__} {getattr(records, 'dtype', None)}"
        )
    _check_n_instruments(path, n_instruments)
    if len(records) == 0:
        raise RecordingError(f"{path}: no records to write; a recording needs at least one")
    _check_records(path, records, n_instruments)
    with _atomic_file(path) as f:
        f.write(_header_bytes(len(records), n_instruments))
        f.write(np.ascontiguousarray(records).view(np.uint8).data)
    return path


def open_recording(path: str | os.PathLike[str]) -> Recording:
    """Open and validate a recording; raises RecordingError saying what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(HEADER_SIZE)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file; expected a lowlat recording") from None
    except IsADirectoryError:
        raise RecordingError(f"{path}: is a directory; expected a lowlat recording") from None
    except OSError as exc:
        raise RecordingError(
            f"{path}: cannot read the recording: {exc.strerror} (the service user needs read "
            "access)"
        ) from None
    if len(raw) < HEADER_SIZE:
        raise RecordingError(
            f"{path}: too short for a header: {size} bytes; a recording starts with a "
            f"{HEADER_SIZE}-byte header"
        )
    header = np.frombuffer(raw, dtype=HEADER, count=1)[0]
    magic = bytes(raw[:8])
    if magic != MAGIC:
        raise RecordingError(
            f"{path}: not a lowlat market-data recording (magic {magic!r}; expected {MAGIC!r})"
        )
    version = int(header["version"])
    if version == EVENTS_VERSION:
        return _open_events(path, raw, size)
    if version != FORMAT_VERSION:
        raise RecordingError(
            f"{path}: unsupported format version {version}; this version reads versions "
            f"{FORMAT_VERSION} and {EVENTS_VERSION}"
        )
    record_size = int(header["record_size"])
    if record_size != RECORD_SIZE:
        raise RecordingError(
            f"{path}: records are {record_size} bytes; this version reads {RECORD_SIZE}-byte "
            "records"
        )
    crc = int(header["dtype_crc"])
    if crc != DTYPE_CRC:
        raise RecordingError(
            f"{path}: record layout CRC is {crc:#010x}; this version's MARKET_DATA layout has "
            f"CRC {DTYPE_CRC:#010x} (the file was written with a different record layout)"
        )
    count = int(header["record_count"])
    expected = HEADER_SIZE + count * RECORD_SIZE
    if size != expected:
        found_records, extra = divmod(size - HEADER_SIZE, RECORD_SIZE)
        state = "truncated" if size < expected else "longer than its header says"
        raise RecordingError(
            f"{path}: {state}: the header says {count} records, so {expected} bytes are "
            f"expected; found {size} bytes ({found_records} whole records"
            f"{f' + {extra} bytes' if extra else ''})"
        )
    if count == 0:
        raise RecordingError(f"{path}: holds zero records; a recording needs at least one")
    n_instruments = int(header["n_instruments"])
    _check_n_instruments(path, n_instruments)
    records = np.memmap(path, dtype=MARKET_DATA, mode="r", offset=HEADER_SIZE, shape=(count,))
    _check_records(path, records, n_instruments)
    return Recording(path=path, records=records, n_instruments=n_instruments)


def write_events(
    path: str | os.PathLike[str],
    events: np.ndarray,
    n_instruments: int,
    *,
    tick_nano: int = 0,
    session_date: int = 0,
) -> Path:
    """Validate MARKET_EVENT ``events`` and write them as a version-2 recording, atomically."""
    path = Path(path)
    if not isinstance(events, np.ndarray) or events.dtype != MARKET_EVENT or events.ndim != 1:
        raise TypeError(f"{path}: events to write must be a 1-d MARKET_EVENT array")
    _check_n_instruments(path, n_instruments)
    if len(events) == 0:
        raise RecordingError(f"{path}: no events to write; a recording needs at least one")
    _check_events(path, events, n_instruments)
    header = np.zeros(1, dtype=HEADER_V2)
    header["magic"] = MAGIC
    header["version"] = EVENTS_VERSION
    header["record_size"] = EVENT_SIZE
    header["record_count"] = len(events)
    header["n_instruments"] = n_instruments
    header["dtype_crc"] = EVENT_DTYPE_CRC
    header["tick_nano"] = tick_nano
    header["session_date"] = session_date
    with _atomic_file(path) as f:
        f.write(header.tobytes())
        f.write(np.ascontiguousarray(events).view(np.uint8).data)
    return path


def _open_events(path: Path, raw: bytes, size: int) -> Recording:
    header = np.frombuffer(raw, dtype=HEADER_V2, count=1)[0]
    if int(header["record_size"]) != EVENT_SIZE or int(header["dtype_crc"]) != EVENT_DTYPE_CRC:
        raise RecordingError(
            f"{path}: version-2 records of {int(header['record_size'])} bytes with layout CRC "
            f"{int(header['dtype_crc']):#010x}; this version reads {EVENT_SIZE}-byte "
            f"MARKET_EVENT records, CRC {EVENT_DTYPE_CRC:#010x}"
        )
    count = int(header["record_count"])
    expected = HEADER_SIZE + count * EVENT_SIZE
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise RecordingError(
            f"{path}: {state}: the header says {count} events, so {expected} bytes are "
            f"expected; found {size} bytes"
        )
    if count == 0:
        raise RecordingError(f"{path}: holds zero events; a recording needs at least one")
    n_instruments = int(header["n_instruments"])
    _check_n_instruments(path, n_instruments)
    events = np.memmap(path, dtype=MARKET_EVENT, mode="r", offset=HEADER_SIZE, shape=(count,))
    _check_events(path, events, n_instruments)
    return Recording(
        path=path,
        records=market_data_of(events),
        n_instruments=n_instruments,
        version=EVENTS_VERSION,
        events=events,
        tick_nano=int(header["tick_nano"]),
        session_date=int(header["session_date"]),
    )


def market_data_of(events: np.ndarray) -> np.ndarray:
    """What a replay sends for ``events``: LEVEL, TRADE and snapshot markers as they are; an
    order event as the LEVEL it leaves (its ``level_qty``), an execution (visible or hidden)
    as a TRADE by the other side first; halts send nothing. seq numbers 1..n; send_ns is the
    event's historical time, which a replay at recorded pace follows."""
    kind = events["kind"]
    passthrough = (kind == LEVEL) | (kind == TRADE) | (kind == SNAPSHOT_BEGIN)
    passthrough |= kind == SNAPSHOT_END
    orders = (kind == ORDER_ADD) | (kind == ORDER_CANCEL) | (kind == ORDER_DELETE)
    executed = kind == ORDER_EXECUTE
    trades = executed | (kind == HIDDEN_EXECUTE)
    # per event: a trade message first (executions), then the level or passthrough message
    n_trade = trades.astype(np.int64)
    n_level = (passthrough | orders | executed).astype(np.int64)
    out = np.zeros(int(n_trade.sum() + n_level.sum()), dtype=MARKET_DATA)
    first = np.cumsum(n_trade + n_level) - (n_trade + n_level)
    t = first[trades]
    out["kind"][t] = TRADE
    out["price"][t] = events["price"][trades]
    out["qty"][t] = events["qty"][trades]
    out["instrument"][t] = events["instrument"][trades]
    # the resting order's side was hit by the other side: a resting bid (BID=0) by a SELL
    out["side"][t] = np.where(events["side"][trades] == 0, SELL, BUY)
    has_level = n_level.astype(bool)
    lv = first[has_level] + n_trade[has_level]
    out["kind"][lv] = np.where(passthrough[has_level], kind[has_level], LEVEL)
    out["price"][lv] = events["price"][has_level]
    out["qty"][lv] = np.where(
        passthrough[has_level], events["qty"][has_level], events["level_qty"][has_level]
    )
    out["instrument"][lv] = events["instrument"][has_level]
    out["side"][lv] = events["side"][has_level]
    out["seq"] = np.arange(1, len(out) + 1, dtype=np.int64)
    # the historical time rides in send_ns until the feed stamps the intended send time
    out["send_ns"][t] = events["time_ns"][trades]
    out["send_ns"][lv] = events["time_ns"][has_level]
    return out


def record_simulated(
    path: str | os.PathLike[str],
    params: FeedConfig,
    messages: int,
    *,
    progress: bool = True,
) -> Recording:
    """Record ``messages`` messages simulated as ``params`` (a ``[feed]`` section) says to
    ``path``; returns the opened recording.

    Records carry seq 1..messages and send_ns 0: the replaying feed stamps intended send
    times itself. Messages are generated in chunks straight into the temporary file, so
    memory stays small however long the recording. With ``progress`` a rich progress bar is
    shown for recordings of a million messages or more.
    """
    from service.kernels.feed import new_simulator, sim_fill  # kernels only when recording

    path = Path(path)
    if isinstance(messages, bool) or not isinstance(messages, int) or messages < 1:
        raise ValueError(f"messages = {messages!r}: must be an integer >= 1")
    sim = new_simulator(params)
    chunk = np.zeros(min(messages, _WRITE_CHUNK), dtype=MARKET_DATA)
    with _atomic_file(path) as f, _progress_bar(progress, messages, path) as advance:
        f.write(_header_bytes(messages, params.instruments))
        written = 0
        while written < messages:
            n = min(len(chunk), messages - written)
            sim_fill(sim, chunk, n)
            chunk["seq"][:n] = np.arange(written + 1, written + n + 1, dtype=np.int64)
            chunk["send_ns"][:n] = 0
            f.write(chunk[:n].view(np.uint8).data)
            written += n
            advance(n)
    return open_recording(path)


def _header_bytes(count: int, n_instruments: int) -> bytes:
    header = np.zeros(1, dtype=HEADER)
    header["magic"] = MAGIC
    header["version"] = FORMAT_VERSION
    header["record_size"] = RECORD_SIZE
    header["record_count"] = count
    header["n_instruments"] = n_instruments
    header["dtype_crc"] = DTYPE_CRC
    return header.tobytes()


def _check_n_instruments(path: Path, n_instruments: int) -> None:
    if not 1 <= n_instruments <= MAX_INSTRUMENTS:
        raise RecordingError(
            f"{path}: n_instruments is {n_instruments}; it must be 1..{MAX_INSTRUMENTS}"
        )


def _check_records(path: Path, records: np.ndarray, n_instruments: int) -> None:
    """Raise RecordingError at the first record a replay must not send."""

    def checks(chunk: np.ndarray) -> tuple:
        kind = chunk["kind"]
        priced = (kind == LEVEL) | (kind == TRADE)
        return (
            (
                ~np.isin(kind, _VALID_KINDS),
                "kind {kind} is invalid; valid kinds are LEVEL=1, TRADE=2, SNAPSHOT_BEGIN=3, "
                "SNAPSHOT_END=4",
            ),
            (priced & (chunk["price"] <= 0), "price {price} is not > 0 on a LEVEL or TRADE"),
            (priced & (chunk["side"] > 1), "side {side} is invalid; sides are 0 and 1"),
            ((kind == LEVEL) & (chunk["qty"] < 0), "LEVEL qty {qty} is negative"),
            ((kind == TRADE) & (chunk["qty"] <= 0), "TRADE qty {qty} is not > 0"),
        )

    _raise_first_bad(path, records, n_instruments, "record", checks)


def _check_events(path: Path, events: np.ndarray, n_instruments: int) -> None:
    """Raise RecordingError at the first event a replay or the order book must not take."""

    def checks(chunk: np.ndarray) -> tuple:
        kind = chunk["kind"]
        priced = ~np.isin(kind, (SNAPSHOT_BEGIN, SNAPSHOT_END, HALT))
        sized = np.isin(kind, (TRADE, ORDER_ADD, ORDER_CANCEL, ORDER_EXECUTE, HIDDEN_EXECUTE))
        return (
            (
                ~np.isin(kind, _EVENT_KINDS),
                "kind {kind} is invalid; valid kinds are 1-4 (LEVEL, TRADE, SNAPSHOT_BEGIN, "
                "SNAPSHOT_END) and 5-10 (ORDER_ADD, ORDER_CANCEL, ORDER_DELETE, ORDER_EXECUTE, "
                "HIDDEN_EXECUTE, HALT)",
            ),
            (priced & (chunk["price"] <= 0), "price {price} is not > 0"),
            (priced & (chunk["side"] > 1), "side {side} is invalid; sides are 0 and 1"),
            (sized & (chunk["qty"] <= 0), "qty {qty} is not > 0"),
            ((kind == LEVEL) & (chunk["qty"] < 0), "LEVEL qty {qty} is negative"),
            (
                np.diff(chunk["time_ns"], prepend=chunk["time_ns"][0]) < 0,
                "time_ns {time_ns} is before the previous event's",
            ),
        )

    _raise_first_bad(path, events, n_instruments, "event", checks)


def _raise_first_bad(
    path: Path, records: np.ndarray, n_instruments: int, noun: str, checks: Callable
) -> None:
    """Chunk by chunk, the seq and instrument checks every version shares, then ``checks``
    (the version's own (mask, message) pairs); RecordingError names the first failure."""
    for start in range(0, len(records), _CHECK_CHUNK):
        chunk = records[start : start + _CHECK_CHUNK]
        shared = (
            (chunk["seq"] <= 0, "seq {seq} is not > 0; sequence numbers start at 1"),
            (
                chunk["instrument"] >= n_instruments,
                "instrument {instrument} is not below the recording's n_instruments "
                f"{n_instruments}",
            ),
        )
        for bad, message in (*shared, *checks(chunk)):
            if bad.any():
                index = int(np.argmax(bad))
                rec = chunk[index]
                fields = {name: rec[name] for name in chunk.dtype.names or ()}
                raise RecordingError(
                    f"{path}: {noun} {start + index} (seq {rec['seq']}): "
                    + message.format(**fields)
                )


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears under ``path`` complete or not at all.

    Written as a temporary in the same directory (os.replace is atomic only within one file
    system), fsynced before the rename so the name never points at unwritten data, and the
    directory fsynced after it so the rename itself survives a crash.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the recording from the service user
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, path: Path) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; draws a rich progress bar (on stderr) only for long recordings."""
    if not enabled or total < _PROGRESS_MIN_MESSAGES:
        yield lambda n: None
        return
    from rich.console import Console  # only when a bar is drawn: rich is slow to import
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("recording {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    # On stderr, so that stdout stays free for what the caller prints.
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(path.name, total=total)
        yield lambda n: bar.advance(task, n)
