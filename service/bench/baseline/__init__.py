"""The C++ SPSC ring that ``trading-service bench`` measures the numba ring against.

The benchmark's targets are relative ("ring items/s at least 0.8x a C++ SPSC ring of the same
shape on the same machine"; "a C++ ring of the same shape measures about 3.6x the floor RTT"),
because absolute numbers differ from laptop to c6g. This module builds that C++ ring
(``spsc_ring.cpp``, shipped as package data next to this file) with the machine's compiler,
runs it and returns its figures as dicts.

Light module on purpose: standard library and ``contracts`` only, no numba, so the bench
report can import it without compiling or importing the hot path.

- ``cpp_ring_available()``: is there a C++ compiler (``$CXX``, else ``c++``, else ``g++``).
- ``build_cpp_ring(cache_dir)``: compile once per (source, compiler, flags); the hash of those
  is in the binary's name, so an unchanged source reuses the binary and a changed one can
  never pick up a stale build.
- ``measure_cpp_ring_throughput(...)`` / ``measure_cpp_ring_rtt(...)``: run the binary with a
  timeout and parse its one JSON line. Every failure (no compiler, compile error, bad CPUs,
  crash, timeout, wrong checksum) is a ``BaselineError`` whose message says what went wrong.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from contracts import constants

__all__ = [
    "CXXFLAGS",
    "BaselineError",
    "build_cpp_ring",
    "build_socket_pingpong",
    "cpp_ring_available",
    "default_cache_dir",
    "measure_c_socket_rtt",
    "measure_cpp_ring_rtt",
    "measure_cpp_ring_throughput",
]

SOURCE_NAME = "spsc_ring.cpp"
BINARY_STEM = "spsc_ring"

# No -march=native: the baseline must mean the same thing on every host it is built on, and the
# numba side it is compared with is not tuned per machine either. -O2 is what a release build of
# a plain C++ service would use.
CXXFLAGS: tuple[str, ...] = ("-O2", "-std=c++17", "-pthread")

COMPILE_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 120.0  # a guard against a hung run, far above any sane run's length
_STDERR_TAIL_CHARS = 2000


class BaselineError(RuntimeError):
    """The C++ baseline could not be built or run, or its result is not trustworthy."""


def default_cache_dir() -> Path:
    """Where built binaries are kept: ``baseline/`` in lowlat's cache directory, next to the
    numba cache (``contracts.constants.cache_dir``)."""
    return constants.cache_dir("baseline")


def _find_compiler(
    variable: str = "CXX", names: Sequence[str] = ("c++", "g++")
) -> list[str] | None:
    """The compiler command: ``$CXX`` (may carry words, e.g. ``ccache g++``), ``c++``, ``g++``
    (for C: ``$CC``, ``cc``, ``gcc``)."""
    cxx = os.environ.get(variable, "").strip()
    if cxx:
        words = shlex.split(cxx)
        found = shutil.which(words[0])
        return [found, *words[1:]] if found else None
    for name in names:
        found = shutil.which(name)
        if found:
            return [found]
    return None


def cpp_ring_available() -> bool:
    """True if a C++ compiler is on PATH (the baseline can be built here)."""
    return _find_compiler() is not None


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL_CHARS else "..." + text[-_STDERR_TAIL_CHARS:]


def _compiler_identity(compiler: list[str]) -> str:
    """First line of ``--version``, so a compiler upgrade at the same path rebuilds."""
    try:
        out = subprocess.run(
            [*compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaselineError(f"cannot run C++ compiler {compiler[0]}: {exc}") from exc
    first_line = out.stdout.splitlines()[0] if out.stdout else ""
    return f"{os.path.realpath(compiler[0])} {' '.join(compiler[1:])} {first_line}"


def _build_from(
    source: Path,
    cache_dir: Path,
    compiler: list[str],
    flags: Sequence[str] = CXXFLAGS,
    stem: str = BINARY_STEM,
) -> Path:
    try:
        code = source.read_bytes()
    except OSError as exc:
        raise BaselineError(f"cannot read C++ baseline source {source}: {exc}") from exc

    digest = hashlib.sha256()
    for part in (code, _compiler_identity(compiler).encode(), " ".join(flags).encode()):
        digest.update(part)
        digest.update(b"\0")
    binary = cache_dir / f"{stem}-{digest.hexdigest()[:16]}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary  # same source, compiler and flags: the existing build is the build

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BaselineError(f"cannot create baseline cache directory {cache_dir}: {exc}") from exc
    # Compile to a private name, then rename: a concurrent bench never sees a half-written file,
    # and two builds racing both produce the same bytes under the same final name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{binary.name}.", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        cmd = [*compiler, *flags, "-o", str(tmp), str(source)]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BaselineError(
                f"compiling the C++ baseline timed out after {COMPILE_TIMEOUT_S:.0f} s: "
                f"{shlex.join(cmd)}"
            ) from exc
        except OSError as exc:
            raise BaselineError(f"cannot run C++ compiler {compiler[0]}: {exc}") from exc
        if result.returncode != 0:
            raise BaselineError(
                f"compiling the C++ baseline failed (exit {result.returncode}): "
                f"{shlex.join(cmd)}\n{_tail(result.stderr)}"
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary


def build_cpp_ring(cache_dir: Path | None = None, *, source: Path | None = None) -> Path:
    """Compile the C++ ring into ``cache_dir`` (reusing an unchanged build) and return its path.

    ``source`` defaults to the packaged ``spsc_ring.cpp``; passing another file is for tests
    and for trying a variant of the ring.
    """
    compiler = _find_compiler()
    if compiler is None:
        raise BaselineError(
            "no C++ compiler found (set $CXX, or install g++: `apt-get install g++`)"
        )
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if source is not None:
        return _build_from(Path(source), cache_dir, compiler)
    packaged = importlib.resources.files(__name__) / SOURCE_NAME
    if not packaged.is_file():
        raise BaselineError(f"packaged C++ baseline source {SOURCE_NAME} is missing")
    # as_file: a real path for the compiler even if the package is installed zipped.
    with importlib.resources.as_file(packaged) as path:
        return _build_from(path, cache_dir, compiler)


PINGPONG_SOURCE = "socket_pingpong.c"
CFLAGS: tuple[str, ...] = ("-O2", "-std=c11")


def build_socket_pingpong(cache_dir: Path | None = None) -> Path:
    """Compile the C socket round trip (``socket_pingpong.c``) like the C++ ring: once per
    (source, compiler, flags), with ``$CC``, ``cc`` or ``gcc``."""
    compiler = _find_compiler("CC", ("cc", "gcc"))
    if compiler is None:
        raise BaselineError("no C compiler found (set $CC, or install gcc: `apt-get install gcc`)")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    packaged = importlib.resources.files(__name__) / PINGPONG_SOURCE
    if not packaged.is_file():
        raise BaselineError(f"packaged C baseline source {PINGPONG_SOURCE} is missing")
    with importlib.resources.as_file(packaged) as path:
        return _build_from(path, cache_dir, compiler, CFLAGS, "socket_pingpong")


def measure_c_socket_rtt(  # noqa: PLR0913 -- the C program's arguments, keyword-only past rounds
    proto: str,
    ends: tuple[tuple[str, int], tuple[str, int]],
    cpus: Sequence[int],
    rounds: int,
    *,
    warmup: int = 1000,
    timeout_ms: int = 100,
    prefixes: tuple[Sequence[str], Sequence[str]] = ((), ()),
) -> dict:
    """The C round trip of one 64-byte message over ``proto`` ("udp" or "tcp"), ``rounds``
    times after ``warmup``: the initiator at ``ends[0]`` (IP, port) on ``cpus[0]``, the echo at
    ``ends[1]`` on ``cpus[1]``; each started after its word list in ``prefixes`` (``ip netns
    exec NS`` to run it in a namespace). An echo later than ``timeout_ms`` is a lost round.
    Returns the initiator's JSON: ``rounds``, ``lost``, ``rtt_ns`` (min, p50, p90, p99, p999,
    max, mean)."""
    a, b = _check_cpus(cpus)
    binary = build_socket_pingpong()
    local, peer = (f"{ip}:{port}" for ip, port in ends)
    common = ["--proto", proto]
    echo_cmd = [*prefixes[1], str(binary), "responder", *common,
                "--local", peer, "--peer", local, "--cpu", str(b)]  # fmt: skip
    echo = subprocess.Popen(echo_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != "ready":
            echo.wait(10)
            raise BaselineError(
                f"C echo did not start: {shlex.join(echo_cmd)}\n{_tail(echo.communicate()[1])}"
            )
        result = _run(
            Path(binary),
            ["initiator", *common, "--local", local, "--peer", peer, "--cpu", str(a),
             "--rounds", str(int(rounds)), "--warmup", str(int(warmup)),
             "--timeout-ms", str(int(timeout_ms))],
            RUN_TIMEOUT_S,
            prefix=prefixes[0],
        )  # fmt: skip
    finally:
        try:
            echo.wait(10)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
    if not isinstance(result.get("rtt_ns"), dict):
        raise BaselineError(f"C round trip printed no rtt_ns: {json.dumps(result)}")
    return result


def _check_cpus(cpus: Sequence[int]) -> tuple[int, int]:
    """Two different CPUs this process may run on; the binary refuses to run unpinned."""
    if len(cpus) != 2:
        raise BaselineError(f"cpus must name exactly two CPUs, got {list(cpus)}")
    a, b = (int(c) for c in cpus)
    if a == b:
        # Two busy-spinning threads sharing a core take turns per timeslice: not a ring figure.
        raise BaselineError(f"cpus must be two different CPUs, got {a} twice")
    if hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)
        missing = sorted({a, b} - allowed)
        if missing:
            raise BaselineError(
                f"CPU(s) {missing} are not in this process's affinity set {sorted(allowed)}"
            )
    return a, b


def _run(binary: Path, args: list[str], timeout: float, prefix: Sequence[str] = ()) -> dict:
    cmd = [*prefix, str(binary), *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        # subprocess.run has already killed the child: no spinning threads are left behind.
        raise BaselineError(
            f"C++ baseline run timed out after {timeout:.0f} s: {shlex.join(cmd)}"
        ) from exc
    except OSError as exc:
        raise BaselineError(f"cannot run C++ baseline {binary}: {exc}") from exc
    if result.returncode != 0:
        raise BaselineError(
            f"C++ baseline failed (exit {result.returncode}): {shlex.join(cmd)}\n"
            f"{_tail(result.stderr)}"
        )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        parsed = json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise BaselineError(
            f"C++ baseline printed no JSON result: {shlex.join(cmd)}\n"
            f"stdout: {_tail(result.stdout)}\nstderr: {_tail(result.stderr)}"
        ) from exc
    if not isinstance(parsed, dict):
        raise BaselineError(f"C++ baseline printed {parsed!r}, not a JSON object")
    parsed["binary"] = str(binary)
    return parsed


def measure_cpp_ring_throughput(
    items: int = 10_000_000,
    capacity: int = 4096,
    batch: bool = False,
    cpus: Sequence[int] = (0, 1),
    cache_dir: Path | None = None,
    *,
    timeout: float = RUN_TIMEOUT_S,
) -> dict:
    """Stream ``items`` int64s (1..N) through the C++ ring; return its JSON result.

    Keys: ``items_per_s``, ``ns_per_item``, ``elapsed_ns``, ``checksum_ok`` (always True here:
    a failed order/sum check raises), ``items``, ``capacity``, ``batch``, ``cpus``, ``sum``,
    ``expected_sum``, ``order_ok``, ``binary``.
    """
    if items < 1:
        raise BaselineError(f"items must be >= 1, got {items}")
    _check_capacity(capacity)
    a, b = _check_cpus(cpus)
    binary = build_cpp_ring(cache_dir)
    args = [
        "throughput",
        "--items", str(int(items)),
        "--capacity", str(int(capacity)),
        "--batch", "1" if batch else "0",
        "--cpus", f"{a},{b}",
    ]  # fmt: skip
    result = _run(binary, args, timeout)
    if result.get("checksum_ok") is not True or "items_per_s" not in result:
        raise BaselineError(
            "C++ ring delivered wrong data (order or sum check failed): "
            f"{json.dumps(result, sort_keys=True)}"
        )
    return result


def measure_cpp_ring_rtt(
    rounds: int = 200_000,
    capacity: int = 4096,
    cpus: Sequence[int] = (0, 1),
    cache_dir: Path | None = None,
    *,
    warmup: int = 1000,
    timeout: float = RUN_TIMEOUT_S,
) -> dict:
    """Ping-pong one int64 through two C++ rings ``rounds`` times; return its JSON result.

    ``rtt_ns`` holds ``min``, ``p50``, ``p90``, ``p99``, ``p999``, ``max``, ``mean`` (nearest-rank
    percentiles of every round trip, each stamped with clock_gettime(CLOCK_MONOTONIC) like the
    numba side). ``warmup`` rounds run first and are not recorded.
    """
    if rounds < 1:
        raise BaselineError(f"rounds must be >= 1, got {rounds}")
    if warmup < 0:
        raise BaselineError(f"warmup must be >= 0, got {warmup}")
    _check_capacity(capacity)
    a, b = _check_cpus(cpus)
    binary = build_cpp_ring(cache_dir)
    args = [
        "rtt",
        "--rounds", str(int(rounds)),
        "--warmup", str(int(warmup)),
        "--capacity", str(int(capacity)),
        "--cpus", f"{a},{b}",
    ]  # fmt: skip
    result = _run(binary, args, timeout)
    if result.get("checksum_ok") is not True or not isinstance(result.get("rtt_ns"), dict):
        raise BaselineError(
            f"C++ ring echoed wrong data in the RTT run: {json.dumps(result, sort_keys=True)}"
        )
    return result


def _check_capacity(capacity: int) -> None:
    if capacity < 2 or capacity & (capacity - 1):
        raise BaselineError(f"capacity must be a power of two >= 2, got {capacity}")
