"""Fuzzing every parser of outside input on the service side: many thousands of inputs each,
never a traceback (any exception but the layer's own one-line error) and never a hang.

- the TOML config: random documents of known and unknown sections, keys and values of every
  TOML type, through ``from_dict``; random text and bytes through ``load``;
- the recording reader: random bytes, and a valid recording with bytes flipped, truncated or
  grown, through ``open_recording``;
- the model file: random TOML documents and random bytes through ``load_model``;
- the segment header: random headers through ``Segment.attach``.

A parser that accepts an input must return what its type promises; one that refuses it raises
its own ``LowlatError`` whose message is one line naming the file.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import LowlatError
from contracts.records import MARKET_DATA
from contracts.segments import KIND_STATS
from service.config import Config, ConfigError, from_dict, load
from service.kernels.signals import Model
from service.runtime.model import ModelError, load_model
from service.runtime.recording import Recording, RecordingError, open_recording, write_recording
from service.runtime.shm import Segment, SegmentError

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KNOWN = {
    name: [f.name for f in __import__("dataclasses").fields(getattr(Config(), name))]
    for name in ("service", "feed", "engine", "risk", "rings", "telemetry", "slo")
    if hasattr(Config(), name)
}

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=30),
    st.sampled_from(["/dev/shm", "lowlat", "replay", "simulator", "a/b", "", "1e9", "-1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@st.composite
def config_documents(draw):
    """Mostly known sections and keys (so values are what gets tested), some strangers."""
    doc = {}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from([*KNOWN, "cores", "nonsense"]))
        if section == "cores":
            stage = st.sampled_from(["feed", "engine", "gateway", "other"])
            doc["cores"] = draw(st.dictionaries(stage, values, max_size=3) | values)
            continue
        keys = st.sampled_from([*KNOWN.get(section, ["x"]), "unknown_key"])
        doc[section] = draw(st.dictionaries(keys, values, max_size=4) | values)
    return doc


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One directory for every example's file (rewritten each time: fast, nothing left)."""
    return tmp_path_factory.mktemp("fuzz")


def _one_line(exc: Exception) -> None:
    text = str(exc)
    assert text and "\n" not in text.strip(), repr(text)
    assert "Traceback" not in text


@FUZZ
@given(config_documents())
def test_config_documents_are_a_config_or_one_line(doc):
    try:
        config = from_dict(doc, "fuzz.toml")
    except ConfigError as exc:
        _one_line(exc)
        assert str(exc).startswith("fuzz.toml")
        return
    assert isinstance(config, Config)
    config.process_groups()  # what the run derives from it works too
    for section in KNOWN:
        for value in vars(getattr(config, section)).values():
            assert not (isinstance(value, float) and not math.isfinite(value))


@FUZZ
@given(raw=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_config_files_of_any_bytes_are_a_config_or_one_line(scratch, raw):
    path = scratch / "fuzz.toml"
    path.write_bytes(raw)
    try:
        assert isinstance(load(path), Config)
    except ConfigError as exc:
        _one_line(exc)


# ------------------------------------------------------------------------------ recordings


def _valid_recording(directory: Path) -> bytes:
    records = np.zeros(8, dtype=MARKET_DATA)
    records["seq"] = np.arange(1, 9)
    records["kind"] = 1
    records["price"] = 100
    records["qty"] = 5
    path = write_recording(directory / "ok.lmd", records, 2)
    return path.read_bytes()


VALID = _valid_recording(Path(tempfile.mkdtemp()))


@st.composite
def damaged_recordings(draw):
    raw = bytearray(VALID)
    how = draw(st.sampled_from(["flip", "truncate", "grow", "random"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    elif how == "truncate":
        del raw[draw(st.integers(0, len(raw) - 1)) :]
    elif how == "grow":
        raw += draw(st.binary(min_size=1, max_size=100))
    else:
        raw = bytearray(draw(st.binary(max_size=600)))
    return bytes(raw)


@FUZZ
@given(damaged_recordings())
def test_recordings_of_any_bytes_open_whole_or_are_refused_in_one_line(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.lmd"
        path.write_bytes(raw)
        try:
            recording = open_recording(path)
        except RecordingError as exc:
            _one_line(exc)
            assert str(path) in str(exc)
            return
        assert isinstance(recording, Recording)
        assert len(recording.records) >= 1
        assert recording.n_instruments >= 1
        assert (recording.records["instrument"] < recording.n_instruments).all()
        del recording


# ------------------------------------------------------------------------------ model files

model_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=10),
    st.booleans(),
    st.lists(st.floats(), max_size=2),
)


@st.composite
def model_documents(draw):
    doc = {}
    if draw(st.booleans()):
        doc["kind"] = draw(st.sampled_from(["logistic", "linear", "tree", 1]))
    if draw(st.booleans()):
        doc["bias"] = draw(model_values)
    if draw(st.booleans()):
        names = st.sampled_from(["mid_return", "imbalance", "spread", "unknown_feature"])
        doc["weights"] = draw(st.dictionaries(names, model_values, max_size=4) | model_values)
    if draw(st.integers(0, 9)) == 0:
        doc["extra"] = 1
    return doc


def _toml(doc: dict) -> str:
    """A TOML text of ``doc`` (tomllib cannot write; the values are simple enough here)."""
    from contracts.documents import toml_value

    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append(f"[{key}]")
            tables += [f'"{k}" = {toml_value(v)}' for k, v in value.items()]
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


@FUZZ
@given(doc=model_documents() | st.binary(max_size=200))
def test_model_files_are_a_model_or_one_line(scratch, doc):
    path = scratch / "model.toml"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        try:
            text = _toml(doc)
        except (TypeError, ValueError):
            return  # a value TOML cannot spell (a list): not an input anyone writes
        path.write_text(text)
    try:
        model = load_model(path)
    except ModelError as exc:
        _one_line(exc)
        return
    assert isinstance(model, Model)


# ------------------------------------------------------------------------------ segments


@FUZZ
@given(raw=st.binary(min_size=0, max_size=256), pad_pages=st.integers(0, 3))
def test_segment_headers_of_any_bytes_are_refused_not_served(scratch, raw, pad_pages):
    path = scratch / "fuzz.stats"
    path.unlink(missing_ok=True)
    path.write_bytes(raw + bytes(4096 * pad_pages))
    try:
        segment = Segment.attach(scratch, "fuzz.stats", KIND_STATS, writable=False)
    except SegmentError as exc:
        _one_line(exc)
        return
    raise AssertionError(f"random bytes accepted as a stats segment: {segment.layout}")


def test_every_refusal_is_a_lowlat_error():
    """The one type the entry points print: each parser's error is one."""
    for error in (ConfigError, ModelError, RecordingError, SegmentError):
        assert issubclass(error, LowlatError)


@settings(FUZZ, max_examples=500)  # each makes a real segment: fewer, each worth more
@given(
    words=st.dictionaries(st.integers(1, 7), st.integers(-(2**63), 2**63 - 1), min_size=1),
    cut=st.integers(0, 3),
)
def test_a_real_header_with_any_word_changed_is_refused(scratch, words, cut):
    """Magic intact, anything else of the header changed (or the file cut short): refused."""
    from service.runtime.segments import create_stats

    name = "whole.stats"
    (scratch / name).unlink(missing_ok=True)
    segment, _ = create_stats(scratch, name)
    original = segment.header.copy()
    path = scratch / name
    header = np.memmap(path, dtype=np.int64, mode="r+", shape=(16,))
    for index, word in words.items():
        header[index] = word
    header.flush()
    del header
    if cut:
        os.truncate(path, segment.size - 4096 * cut)
    try:
        attached = Segment.attach(scratch, name, KIND_STATS, writable=False)
    except SegmentError as exc:
        _one_line(exc)
        return
    # accepted only where nothing a reader relies on changed (the owner and creation time words
    # are not the layout's)
    assert not cut
    relied_on = [1, 2, 5, 7]  # version, kind, size, layout
    assert all(int(attached.header[i]) == int(original[i]) for i in relied_on), words
