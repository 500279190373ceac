"""Tests for recorded market-data files: round trips, atomic writes, and every refusal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from contracts.records import LEVEL, MARKET_DATA, TRADE
from service.config import FeedConfig
from service.kernels.feed import new_simulator, sim_fill
from service.runtime import recording
from service.runtime.recording import (
    DTYPE_CRC,
    FORMAT_VERSION,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    Recording,
    RecordingError,
    open_recording,
    record_simulated,
    write_recording,
)

PARAMS = FeedConfig(instruments=3, seed=7, snapshot_interval=500)


def simulated_records(n: int = 2_000, params: FeedConfig = PARAMS) -> np.ndarray:
    records = np.zeros(n, dtype=MARKET_DATA)
    sim_fill(new_simulator(params), records, n)
    records["seq"] = np.arange(1, n + 1)
    return records


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "good.md", simulated_records(), PARAMS.instruments)


def rewrite_header(path: Path, **fields: object) -> None:
    raw = bytearray(path.read_bytes())
    header = np.frombuffer(bytes(raw[:HEADER_SIZE]), dtype=HEADER).copy()
    for name, value in fields.items():
        header[name] = value
    raw[:HEADER_SIZE] = header.tobytes()
    path.write_bytes(bytes(raw))


def rewrite_record(path: Path, index: int, **fields: object) -> None:
    records = np.memmap(path, dtype=MARKET_DATA, mode="r+", offset=HEADER_SIZE)
    for name, value in fields.items():
        records[index][name] = value
    records.flush()
    del records


def refusal(path: Path) -> str:
    with pytest.raises(RecordingError) as info:
        open_recording(path)
    message = str(info.value)
    assert "\n" not in message, "one line"
    assert str(path) in message, "names the file"
    return message


# --- round trip --------------------------------------------------------------------------


def test_round_trip(tmp_path):
    records = simulated_records()
    path = write_recording(tmp_path / "day.md", records, PARAMS.instruments)
    opened = open_recording(path)
    assert isinstance(opened, Recording)
    assert opened.path == path
    assert opened.n_instruments == PARAMS.instruments
    assert len(opened) == len(records)
    assert np.array_equal(opened.records, records)
    assert path.stat().st_size == HEADER_SIZE + 32 * len(records)


def test_header_layout(good_file):
    raw = good_file.read_bytes()
    assert raw[:8] == MAGIC
    header = np.frombuffer(raw[:HEADER_SIZE], dtype=HEADER)[0]
    assert header["version"] == FORMAT_VERSION == 1
    assert header["record_size"] == 32
    assert header["record_count"] == 2_000
    assert header["n_instruments"] == PARAMS.instruments
    assert header["dtype_crc"] == DTYPE_CRC
    assert raw[32:HEADER_SIZE] == bytes(32)  # reserved, zero


def test_records_are_a_read_only_memory_map(good_file):
    opened = open_recording(good_file)
    assert isinstance(opened.records, np.memmap)
    with pytest.raises(ValueError, match="read-only"):
        opened.records["price"][0] = 1


def test_seq_gaps_and_reordering_are_allowed(tmp_path):
    records = simulated_records(10)
    records["seq"] = [1, 2, 5, 6, 6, 3, 100, 101, 102, 200]
    opened = open_recording(write_recording(tmp_path / "gaps.md", records, PARAMS.instruments))
    assert list(opened.records["seq"]) == list(records["seq"])


def test_record_simulated_stamps_seq_and_matches_the_simulator(tmp_path):
    opened = record_simulated(tmp_path / "sim.md", PARAMS, 150_000, progress=False)
    assert opened.n_instruments == PARAMS.instruments
    assert np.array_equal(opened.records["seq"], np.arange(1, 150_001))
    assert (opened.records["send_ns"] == 0).all()
    expected = simulated_records(150_000)
    assert np.array_equal(opened.records, expected)


def test_record_simulated_draws_a_progress_bar_for_long_recordings(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(recording, "_PROGRESS_MIN_MESSAGES", 100)
    record_simulated(tmp_path / "bar.md", PARAMS, 1_000, progress=True)
    captured = capsys.readouterr()
    assert "recording bar.md" in captured.err
    assert captured.out == ""
    record_simulated(tmp_path / "quiet.md", PARAMS, 1_000, progress=False)
    assert capsys.readouterr().err == ""


def test_record_simulated_refuses_a_bad_message_count(tmp_path):
    with pytest.raises(ValueError, match="messages = 0"):
        record_simulated(tmp_path / "none.md", PARAMS, 0)
    assert not (tmp_path / "none.md").exists()


# --- refusals ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert "no such file" in refusal(tmp_path / "absent.md")


def test_too_short_for_a_header(tmp_path):
    path = tmp_path / "short.md"
    path.write_bytes(b"LOWLATMD\x01")
    message = refusal(path)
    assert "too short for a header" in message and "9 bytes" in message and "64-byte" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    assert "too short for a header: 0 bytes" in refusal(path)


def test_bad_magic(good_file):
    rewrite_header(good_file, magic=b"PCAPNGXX")
    message = refusal(good_file)
    assert "not a lowlat market-data recording (magic b'PCAPNGXX'" in message
    assert "b'LOWLATMD'" in message


def test_unsupported_version(good_file):
    rewrite_header(good_file, version=3)
    assert "unsupported format version 3; this version reads versions 1 and 2" in refusal(good_file)


def test_a_version_1_file_claiming_version_2_is_refused_by_its_record_layout(good_file):
    rewrite_header(good_file, version=2)
    assert "this version reads 48-byte MARKET_EVENT records" in refusal(good_file)


def test_record_size_mismatch(good_file):
    rewrite_header(good_file, record_size=48)
    assert "records are 48 bytes; this version reads 32-byte records" in refusal(good_file)


def test_dtype_crc_mismatch(good_file):
    rewrite_header(good_file, dtype_crc=DTYPE_CRC ^ 1)
    message = refusal(good_file)
    assert "record layout CRC" in message and f"{DTYPE_CRC:#010x}" in message


def test_truncated(good_file):
    raw = good_file.read_bytes()
    good_file.write_bytes(raw[:-40])  # one whole record and 8 bytes of the one before
    message = refusal(good_file)
    assert "truncated" in message
    assert f"{HEADER_SIZE + 2_000 * 32} bytes are expected" in message
    assert f"found {len(raw) - 40} bytes (1998 whole records + 24 bytes)" in message


def test_longer_than_the_header_says(good_file):
    with good_file.open("ab") as f:
        f.write(bytes(32))
    assert "longer than its header says" in refusal(good_file)


def test_zero_records(good_file):
    good_file.write_bytes(good_file.read_bytes()[:HEADER_SIZE])
    rewrite_header(good_file, record_count=0)
    assert "zero records" in refusal(good_file)


def test_zero_n_instruments(good_file):
    rewrite_header(good_file, n_instruments=0)
    assert "n_instruments is 0; it must be 1..65536" in refusal(good_file)


@pytest.mark.parametrize(
    ("index", "fields", "words"),
    [
        (5, {"seq": 0}, "record 5 (seq 0): seq 0 is not > 0"),
        (1_999, {"seq": -3}, "record 1999 (seq -3): seq -3 is not > 0"),
        (7, {"instrument": 3}, "instrument 3 is not below the recording's n_instruments 3"),
        (8, {"kind": 9}, "kind 9 is invalid"),
        (8, {"kind": 0}, "kind 0 is invalid"),
        (9, {"kind": LEVEL, "price": 0}, "price 0 is not > 0 on a LEVEL or TRADE"),
        (9, {"kind": TRADE, "price": -5, "qty": 1}, "price -5 is not > 0"),
        (10, {"kind": LEVEL, "side": 2, "price": 10}, "side 2 is invalid"),
        (11, {"kind": TRADE, "qty": 0, "price": 10, "side": 0}, "TRADE qty 0 is not > 0"),
        (12, {"kind": LEVEL, "qty": -1, "price": 10, "side": 0}, "LEVEL qty -1 is negative"),
    ],
)
def test_bad_records(good_file, index, fields, words):
    rewrite_record(good_file, index, **fields)
    assert words in refusal(good_file)


def test_the_first_bad_record_is_named(good_file):
    rewrite_record(good_file, 100, instrument=9)
    rewrite_record(good_file, 50, instrument=9)
    assert "record 50 " in refusal(good_file)


def test_a_directory_is_refused(tmp_path):
    assert "is a directory" in refusal(tmp_path)


# --- writing -----------------------------------------------------------------------------


def test_write_refuses_records_that_open_would_refuse(tmp_path):
    records = simulated_records(10)
    records["instrument"][4] = 3
    with pytest.raises(RecordingError, match=r"record 4 .*instrument 3"):
        write_recording(tmp_path / "bad.md", records, PARAMS.instruments)
    with pytest.raises(RecordingError, match="no records"):
        write_recording(tmp_path / "bad.md", records[:0], PARAMS.instruments)
    with pytest.raises(TypeError, match="MARKET_DATA"):
        write_recording(tmp_path / "bad.md", np.zeros(3, dtype=np.int64), 1)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    write_recording(tmp_path / "a.md", simulated_records(), PARAMS.instruments)
    record_simulated(tmp_path / "b.md", PARAMS, 1_000, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.md"]
    assert (tmp_path / "a.md").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_recording(tmp_path / "a.md", simulated_records(), PARAMS.instruments)
    with pytest.raises(OSError, match="No space left"):
        record_simulated(tmp_path / "b.md", PARAMS, 1_000, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_previous_recording(tmp_path, monkeypatch):
    path = write_recording(tmp_path / "a.md", simulated_records(100), PARAMS.instruments)
    before = path.read_bytes()

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_recording(path, simulated_records(2_000), PARAMS.instruments)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.md"]
