"""The local half of a deploy: a release built from git for one host's platform, ready to upload.

From ``git archive <ref>`` (uncommitted files never ship): the project wheel, and a wheelhouse
of the service's runtime dependencies for the host's platform, fetched with ``pip download
--only-binary=:all: --platform manylinux_2_X_<arch> ...``. Both are cached under
``lowlat.wheelhouse_cache``: the wheel per commit, the build backend per build requirements,
the wheelhouse per (arch, Python, glibc, requirements), so a second deploy needs no network.

What goes to the host is the wheel's base ``Requires-Dist``: pyproject.toml keeps the CDK
app's and the Fabric tasks' libraries in extras (``infra``, ``ops``, ``dev``), so the base list
is exactly what the service needs there.

Light modules only (no numba, no service hot path): ``fab --list`` imports this.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ops.hosts import OpsError, Settings
from ops.remote import HostFacts, q

REPO = Path(__file__).resolve().parents[1]


# A short run compiles (or loads) every kernel with the production types and drains: the same
# warm-up the engine does before it says ready. Its own segment prefix never meets the live
# engine's segments, in /dev/shm. It ships in the payload as warm.toml (ops.release warms).
def warm_config(ready_timeout_s: float) -> str:
    """The warm-up run's config. It may compile as long as the deploy waits for /ready
    (``lowlat.ready_timeout_s``): a slow host (a small instance, or the lab's emulated one)
    needs longer than the service's default of 300 s, and gets it from the one setting."""
    return (
        "# Written by fab deploy: a short run that fills numba's cache for this release.\n"
        "[service]\n"
        'shm_dir = "/dev/shm"\n'
        'shm_prefix = "lowlat-warmup"\n'
        f"ready_timeout_s = {float(ready_timeout_s)}\n"
    )


_build_lock = threading.Lock()  # a fleet deploys in threads; build each wheelhouse once


@dataclass(frozen=True)
class Build:
    sha: str
    wheel: Path
    requirements: list[str]
    wheelhouse: Path


def resolve_ref(ref: str) -> str:
    """The full commit sha ``ref`` names in this repository."""
    if not ref or ref.startswith("-"):
        raise OpsError(f"--ref {ref!r}: not a git revision (a branch, tag or commit sha)")
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise OpsError(
            f"--ref {ref}: no such commit in {REPO} (use a branch, tag or sha; see git log)"
        )
    return result.stdout.strip()


def _cache_root(settings: Settings) -> Path:
    return Path(os.path.expanduser(settings.wheelhouse_cache))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _last_line(result: subprocess.CompletedProcess[str], default: str) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else default


def build_wheel(sha: str, settings: Settings) -> Path:
    """The project wheel of commit ``sha`` (cached by sha: a commit builds one wheel)."""
    out = _cache_root(settings) / "project" / sha
    wheels = sorted(out.glob("lowlat-*.whl"))
    if wheels:
        return wheels[0]
    with tempfile.TemporaryDirectory(prefix="lowlat-build-") as tmp:
        src, dist = Path(tmp) / "src", Path(tmp) / "dist"
        src.mkdir()
        archive = subprocess.run(
            f"git -C {q(REPO)} archive --format=tar {sha} | tar -x -C {q(src)}",
            shell=True,
            capture_output=True,
            text=True,
        )
        if archive.returncode != 0:
            raise OpsError(f"git archive {sha[:12]} failed: {archive.stderr.strip()}")
        # The build backend (pyproject's build-system.requires) comes from the cache too, so
        # a new commit builds without network once the cache holds it.
        backend = build_backend(src, settings)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                   "--no-index", "--find-links", str(backend)]  # fmt: skip
        result = subprocess.run([*command, str(src)], capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
            raise OpsError(f"building the wheel of {sha[:12]} failed: {' '.join(tail)}")
        built = sorted(dist.glob("lowlat-*.whl"))
        if not built:
            raise OpsError(f"building the wheel of {sha[:12]} produced no lowlat wheel")
        out.mkdir(parents=True, exist_ok=True)
        final = out / built[0].name
        shutil.copy2(built[0], out / f".{built[0].name}.tmp")
        os.replace(out / f".{built[0].name}.tmp", final)  # a reader never sees half a wheel
        return final


def build_backend(src: Path, settings: Settings) -> Path:
    """Wheels of the source tree's build requirements, cached (the isolated build installs them
    from here with ``--no-index``)."""
    pyproject = tomllib.loads((src / "pyproject.toml").read_text())
    requires = [str(r) for r in pyproject["build-system"]["requires"]]
    digest = hashlib.sha256("\n".join(sorted(requires)).encode()).hexdigest()[:12]
    backend = _cache_root(settings) / f"build-backend-{digest}"
    if (backend / ".complete").exists():
        return backend
    tmp = Path(tempfile.mkdtemp(prefix=".build-backend.", dir=_mkdir(_cache_root(settings))))
    try:
        command = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                   "-d", str(tmp), *requires]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise OpsError(
                f"cannot fetch the build backend ({' '.join(requires)}): "
                f"{_last_line(result, 'pip failed')}: pip needs PyPI (or a mirror) once"
            )
        (tmp / ".complete").write_text("\n".join(requires) + "\n")
        if backend.exists():
            shutil.rmtree(backend)
        os.replace(tmp, backend)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return backend


def runtime_requirements(wheel: Path) -> list[str]:
    """The wheel's base Requires-Dist: what the service needs on the host (no extras)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = z.read(name).decode()
    requirements = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        spec = line.split(":", 1)[1].strip()
        _, _, marker = spec.partition(";")
        if "extra" in marker:
            continue  # an extra's (infra, ops, dev): the operator's side, never the host's
        requirements.append(spec)
    return sorted(requirements)


def build_wheelhouse(facts: HostFacts, requirements: list[str], settings: Settings) -> Path:
    """Wheels of ``requirements`` (and their dependencies) for the host's platform, cached per
    (arch, Python, glibc, requirements): a warm cache needs no network."""
    digest = hashlib.sha256("\n".join([*requirements, *facts.platforms]).encode()).hexdigest()
    key = f"{facts.arch}-{facts.abi}-glibc{facts.glibc[0]}.{facts.glibc[1]}-{digest[:12]}"
    house = _cache_root(settings) / key
    if (house / ".complete").exists():
        return house
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=_mkdir(_cache_root(settings))))
    try:
        platforms = [arg for tag in facts.platforms for arg in ("--platform", tag)]
        command = [
            sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", *platforms,
            "--python-version", facts.python_version, "--implementation", "cp",
            "--abi", facts.abi, "-d", str(tmp), *requirements,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            errors = [x for x in lines if x.startswith("ERROR")] or lines
            raise OpsError(
                f"no wheels for {facts.describe()} ({errors[0] if errors else 'pip failed'}): "
                "pip needs PyPI (or a mirror) once per platform; later deploys use the cache"
            )
        (tmp / ".complete").write_text("\n".join(requirements) + "\n")
        if house.exists():  # a half-made one from an interrupted run
            shutil.rmtree(house)
        os.replace(tmp, house)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return house


def build(ref: str, facts: HostFacts, settings: Settings, sha: str | None = None) -> Build:
    """The wheel of ``ref`` (or of ``sha``, already resolved) and its wheelhouse for the host."""
    sha = sha or resolve_ref(ref)
    with _build_lock:
        wheel = build_wheel(sha, settings)
        requirements = runtime_requirements(wheel)
        house = build_wheelhouse(facts, requirements, settings)
    return Build(sha, wheel, requirements, house)


def payload_tar(b: Build, directory: Path, ready_timeout_s: float) -> Path:
    """One tar of what a release directory starts with: the wheel, the wheelhouse, the
    requirements, the warm-up config; one upload instead of one SFTP round trip per wheel."""
    path = directory / "release.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(b.wheel, arcname=b.wheel.name)
        for wheel in sorted(b.wheelhouse.glob("*.whl")):
            tar.add(wheel, arcname=f"wheelhouse/{wheel.name}")
        requirements = directory / "requirements.txt"
        requirements.write_text("\n".join(b.requirements) + "\n")
        tar.add(requirements, arcname="requirements.txt")
        warm = directory / "warm.toml"
        warm.write_text(warm_config(ready_timeout_s))
        tar.add(warm, arcname="warm.toml")
    return path
