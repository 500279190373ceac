"""The C++ baseline ring: build caching, real short runs, and every failure as BaselineError.

The real runs spin two pinned threads, so they are kept short (1M items, 20k rounds: well under
a second each) and there are exactly three of them. Everything else (result parsing, checksum
and exit-code handling) is tested against tiny fake binaries, without spinning anything.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

import service.bench.baseline as baseline
from service.bench.baseline import (
    BaselineError,
    build_cpp_ring,
    cpp_ring_available,
    default_cache_dir,
    measure_cpp_ring_rtt,
    measure_cpp_ring_throughput,
)

if not cpp_ring_available():
    pytest.skip("no C++ compiler (c++/g++) on PATH", allow_module_level=True)

SOURCE = Path(baseline.__file__).with_name("spsc_ring.cpp")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("baseline-cache")


@pytest.fixture(scope="module")
def binary(cache_dir: Path) -> Path:
    """One build for the whole module; later calls with this cache_dir reuse it."""
    return build_cpp_ring(cache_dir)


@pytest.fixture(scope="module")
def cpus() -> tuple[int, int]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip(f"the ring needs two CPUs, this process may use only {allowed}")
    return allowed[0], allowed[1]


# --- build -----------------------------------------------------------------------------------


def test_build_names_binary_by_source_hash(binary: Path, cache_dir: Path) -> None:
    assert binary.parent == cache_dir
    assert binary.name.startswith("spsc_ring-")
    assert len(binary.name.removeprefix("spsc_ring-")) == 16
    assert os.access(binary, os.X_OK)
    # Only the final binary is left behind: no temporary files from the atomic rename.
    assert sorted(p.name for p in cache_dir.iterdir()) == [binary.name]


def test_unchanged_source_is_not_rebuilt(binary: Path, cache_dir: Path) -> None:
    before = binary.stat()
    again = build_cpp_ring(cache_dir)
    after = again.stat()
    assert again == binary
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_source_gets_a_new_binary(binary: Path, tmp_path: Path) -> None:
    variant = tmp_path / "spsc_ring.cpp"
    variant.write_text(SOURCE.read_text() + "\n// a variant: same code, different hash\n")
    other = build_cpp_ring(binary.parent, source=variant)
    try:
        assert other != binary
        assert other.name.startswith("spsc_ring-")
        assert binary.exists()  # the packaged build is untouched
    finally:
        other.unlink()


def test_broken_source_raises_with_compiler_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.cpp"
    broken.write_text("int main() { this is not C++; }\n")
    with pytest.raises(BaselineError, match=r"compiling the C\+\+ baseline failed[\s\S]*error"):
        build_cpp_ring(tmp_path / "cache", source=broken)
    # A failed build leaves no binary (and no temporary file) behind.
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_source_raises(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="cannot read"):
        build_cpp_ring(tmp_path / "cache", source=tmp_path / "nope.cpp")


def test_no_compiler_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXX", "definitely-not-a-compiler-xyz")
    assert not cpp_ring_available()
    with pytest.raises(BaselineError, match="no C\\+\\+ compiler"):
        build_cpp_ring(tmp_path)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "lowlat" / "baseline"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "lowlat" / "baseline"
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "svc"))
    assert default_cache_dir() == tmp_path / "svc" / "baseline"


# --- real runs (short) -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_throughput_short_run(
    batch: bool, binary: Path, cache_dir: Path, cpus: tuple[int, int]
) -> None:
    result = measure_cpp_ring_throughput(
        items=1_000_000, capacity=4096, batch=batch, cpus=cpus, cache_dir=cache_dir
    )
    assert result["checksum_ok"] is True
    assert result["order_ok"] is True
    assert result["items"] == 1_000_000
    assert result["batch"] is batch
    assert result["sum"] == result["expected_sum"] == 1_000_000 * 1_000_001 // 2
    assert result["items_per_s"] > 0
    assert result["binary"] == str(binary)


def test_rtt_short_run(binary: Path, cache_dir: Path, cpus: tuple[int, int]) -> None:
    result = measure_cpp_ring_rtt(rounds=20_000, capacity=4096, cpus=cpus, cache_dir=cache_dir)
    assert result["checksum_ok"] is True
    assert result["rounds"] == 20_000
    rtt = result["rtt_ns"]
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["p999"] <= rtt["max"]
    assert rtt["min"] <= rtt["mean"] <= rtt["max"]


# --- argument checks (nothing is run) --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpus": (0, 0)}, "two different CPUs"),
        ({"cpus": (0,)}, "exactly two CPUs"),
        ({"cpus": (0, 100_000)}, "not in this process's affinity set"),
        ({"capacity": 1000}, "power of two"),
        ({"items": 0}, "items must be >= 1"),
    ],
)
def test_bad_throughput_arguments(kwargs: dict, message: str, cache_dir: Path) -> None:
    with pytest.raises(BaselineError, match=message):
        measure_cpp_ring_throughput(cache_dir=cache_dir, **kwargs)


def test_bad_rtt_arguments(cache_dir: Path) -> None:
    with pytest.raises(BaselineError, match="rounds must be >= 1"):
        measure_cpp_ring_rtt(rounds=0, cache_dir=cache_dir)


def test_binary_rejects_bad_usage(binary: Path) -> None:
    """The binary validates on its own too (exit 2), before any thread starts spinning."""
    result = subprocess.run(
        [str(binary), "throughput", "--cpus", "0,0"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "two different cpus" in result.stderr


# --- result handling, against fake binaries --------------------------------------------------


def _fake_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str) -> None:
    """Make the measure_* functions run `script` (a shell script body) instead of the ring."""
    fake = tmp_path / "fake_spsc_ring"
    fake.write_text("#!/bin/sh\n" + script + "\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(baseline, "build_cpp_ring", lambda cache_dir=None: fake)


def test_checksum_failure_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: tuple[int, int]
) -> None:
    _fake_binary(monkeypatch, tmp_path, """echo '{"items_per_s": 1.0, "checksum_ok": false}'""")
    with pytest.raises(BaselineError, match="wrong data"):
        measure_cpp_ring_throughput(items=10, cpus=cpus)


def test_rtt_echo_failure_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: tuple[int, int]
) -> None:
    _fake_binary(monkeypatch, tmp_path, """echo '{"rtt_ns": {"p50": 1}, "checksum_ok": false}'""")
    with pytest.raises(BaselineError, match="echoed wrong data"):
        measure_cpp_ring_rtt(rounds=10, cpus=cpus)


def test_nonzero_exit_raises_with_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: tuple[int, int]
) -> None:
    _fake_binary(monkeypatch, tmp_path, "echo 'cannot pin to cpu 1' >&2; exit 3")
    with pytest.raises(BaselineError, match=r"exit 3[\s\S]*cannot pin to cpu 1"):
        measure_cpp_ring_throughput(items=10, cpus=cpus)


def test_garbage_output_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: tuple[int, int]
) -> None:
    _fake_binary(monkeypatch, tmp_path, "echo 'segfault-ish garbage'")
    with pytest.raises(BaselineError, match="no JSON result"):
        measure_cpp_ring_throughput(items=10, cpus=cpus)


def test_hung_run_times_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: tuple[int, int]
) -> None:
    _fake_binary(monkeypatch, tmp_path, "exec sleep 30")
    with pytest.raises(BaselineError, match="timed out"):
        measure_cpp_ring_throughput(items=10, cpus=cpus, timeout=0.5)
