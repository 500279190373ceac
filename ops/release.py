"""The release side of the Fabric tasks: deploy, rollback, status, logs, check-host.

``deploy`` is the whole path a release takes, one printed line per step:

1. ask the host what it runs (``uname -m``, its Python and glibc): the wheels must fit it;
2. build locally, from ``git archive <ref>`` (uncommitted files never ship): the project wheel
   and a wheelhouse of the service's runtime dependencies for the host's platform, fetched with
   ``pip download --only-binary=:all: --platform manylinux_2_X_<arch> ...`` and cached per
   (arch, Python, glibc, requirements) under ``lowlat.wheelhouse_cache`` so a second deploy
   needs no network at all;
3. upload both as one tar into ``<prefix>/releases/<UTC time>-<sha12>/`` and make the venv
   there offline (``pip install --no-index --find-links wheelhouse``): the host needs no PyPI;
4. warm numba's cache with a short run of the new release (``trading-service run --duration``
   on the CPUs of the SSH session, the housekeeping ones on a tuned host) into the cache
   directory the units use, so the restart loads compiled kernels instead of compiling;
5. render the config and the units from the installed profile with the new release's own
   ``python -m ami apply`` (snapshotting the files first), then ``systemctl daemon-reload``;
6. swap ``current`` atomically (``ln -s`` + ``mv -T``; ``ln -sfn`` is not atomic);
7. restart both units and wait, asking on the host, until ``/ready`` answers 200;
8. on any failure after the swap: restore the config snapshot, swap back, restart, wait for
   ready again and raise, saying what failed (the /ready reasons, the engine's last lines);
9. on success, append to ``releases.log`` and prune releases beyond ``keep_releases``, never
   the current one or the previous recorded one.

Decisions:

- The host must have been made a lowlat host first (its profile at /etc/lowlat/profile.toml,
  written by the image, or by ``python -m ami apply`` plus the profile file): the profile says
  where releases live, which port telemetry listens on and who runs the service. Deploying to
  a host without one is refused before anything is uploaded.
- Only the service's runtime dependencies go to the host: the wheel's ``Requires-Dist`` minus
  ``OPERATOR_ONLY`` (the CDK app's and the Fabric tasks' own libraries). Once pyproject.toml
  moves those into extras, the set is empty and nothing changes here.
- Every privileged command goes through ``Settings.privileged`` as one ``sh -c`` so that sudo
  covers the whole pipeline, not only its first word.

Light modules only (no numba, no service hot path): ``fab --list`` imports this.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from ami import render as ami_render
from ami import units as ami_units
from contracts import release_layout as L
from contracts.profile import INSTALLED_PROFILE, ProfileError, TuningProfile, cpulist, load_profile
from ops.hosts import HostResult, OpsError, Settings, local_user
from ops.ui import console, step, warn

REPO = Path(__file__).resolve().parents[1]
UNITS = (ami_units.ENGINE_UNIT, ami_units.TELEMETRY_UNIT)
CACHE_DIR = "/var/cache/lowlat"  # CacheDirectory=lowlat in both units (ami/units.py)
LOG_DIR = ami_units.LOG_DIR
LOG_TAIL_LINES = 20

# Requires-Dist entries the host never needs: the CDK app's and the operator tasks' libraries.
# (Proposed: move them to extras `infra` and `ops` in pyproject.toml; then this is a no-op.)
OPERATOR_ONLY = frozenset({"aws-cdk-lib", "constructs", "cdk-nag", "fabric", "boto3", "matplotlib"})

# The oldest manylinux the host can take is manylinux2014 (glibc 2.17); newer tags up to the
# host's own glibc are all acceptable. numba/llvmlite for aarch64 need 2.28 (AL2023, not AL2).
MANYLINUX_FLOOR = 17

# A short run compiles (or loads) every kernel with the production types and drains: the same
# warm-up the engine does before it says ready. Its own segment prefix never meets the live
# engine's segments, in /dev/shm.
WARM_CONFIG = """# Written by fab deploy: a short run that fills numba's cache for this release.
[service]
shm_dir = "/dev/shm"
shm_prefix = "lowlat-warmup"
"""
WARM_DURATION_S = 0.5

_build_lock = threading.Lock()  # a fleet deploys in threads; build each wheelhouse once


# ------------------------------------------------------------------------------ remote helpers


def _q(text: str) -> str:
    return shlex.quote(str(text))


def run(conn, command: str, *, timeout: float | None = None):
    """Run ``command`` on the host; never raises for its exit status (callers check ``.ok``)."""
    return conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)


def sudo(conn, settings: Settings, command: str, *, timeout: float | None = None):
    """``command`` (a shell pipeline) as the privileged user, all of it."""
    return run(conn, settings.privileged(f"sh -c {_q(command)}"), timeout=timeout)


def must(result, what: str):
    """``result`` when it succeeded, else an OpsError naming ``what`` and its last line."""
    if result.ok:
        return result
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    tail = lines[-1] if lines else f"exit status {result.exited}"
    raise OpsError(f"{what} failed: {tail}")


def _say(conn, text: str) -> None:
    step(conn, escape(text))


# --------------------------------------------------------------------------------- host facts


@dataclass(frozen=True)
class HostFacts:
    arch: str  # uname -m: x86_64 or aarch64
    python_version: str  # "3.11"
    glibc: tuple[int, int]

    @property
    def platforms(self) -> list[str]:
        """pip --platform tags the host accepts, newest first."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, MANYLINUX_FLOOR - 1, -1)]
        return [*tags, f"manylinux2014_{self.arch}"]

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def describe(self) -> str:
        return f"{self.arch}, Python {self.python_version}, glibc {self.glibc[0]}.{self.glibc[1]}"


PYTHON_PROBE = (
    "import sys, platform; "
    "print(sys.version_info[0], sys.version_info[1], *platform.libc_ver(), sep=' ')"
)


def host_facts(conn, settings: Settings) -> HostFacts:
    """What the wheels must fit: the host's architecture, Python and C library."""
    arch = must(run(conn, "uname -m"), "uname -m").stdout.strip()
    probe = run(conn, f"{settings.python} -c {_q(PYTHON_PROBE)}")
    if not probe.ok:
        found = run(
            conn,
            "ls /usr/bin/python3* /usr/local/bin/python3* 2>/dev/null | "
            "grep -E 'python3(\\.[0-9]+)?$' | xargs -rn1 basename | sort -u | tr '\\n' ' '",
        ).stdout.strip()
        raise OpsError(
            f"host has no {settings.python} (found: {found or 'no python3 at all'}): install it "
            f"(dnf install python3.11) or set lowlat.python in the Fabric config"
        )
    parts = probe.stdout.split()
    major, minor = int(parts[0]), int(parts[1])
    if (major, minor) < (3, 11):
        raise OpsError(
            f"{settings.python} on the host is Python {major}.{minor}: lowlat needs 3.11 or newer "
            "(dnf install python3.11, or set lowlat.python)"
        )
    libc = parts[2] if len(parts) > 2 else ""
    version = parts[3] if len(parts) > 3 else ""
    match = re.match(r"(\d+)\.(\d+)", version)
    if libc != "glibc" or not match:
        raise OpsError(
            f"host C library is {libc or 'unknown'} {version}: the wheels need glibc "
            "(Amazon Linux 2023, Ubuntu >= 20.04)"
        )
    return HostFacts(arch, f"{major}.{minor}", (int(match.group(1)), int(match.group(2))))


def installed_profile(conn, settings: Settings) -> TuningProfile:
    """The tuning profile the host was made with (INSTALLED_PROFILE under root)."""
    path = settings.path(INSTALLED_PROFILE)
    result = run(conn, f"cat {_q(path)}")
    if not result.ok:
        raise OpsError(
            f"{path} not found: the host is not a lowlat image; build it with the image "
            "pipeline, or run `python -m ami apply --root / --profile FILE` there and copy the "
            f"profile to {INSTALLED_PROFILE}"
        )
    vcpus = int(must(run(conn, "nproc --all"), "nproc").stdout.strip() or 2)
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(result.stdout)
        f.flush()
        try:
            return load_profile(f.name, max(2, vcpus))
        except ProfileError as exc:
            raise OpsError(f"{path}: {str(exc).split(': ', 1)[-1]}") from None


def host_layout(settings: Settings, profile: TuningProfile) -> L.Layout:
    return L.Layout(settings.path(profile.install_prefix))


def read_link(conn, path: str) -> str | None:
    result = run(conn, f"readlink {_q(path)}")
    return result.stdout.strip() or None if result.ok else None


def existing_releases(conn, lay: L.Layout) -> set[str]:
    result = run(conn, f"ls -1 {_q(lay.releases)}")
    return set(result.stdout.split()) if result.ok else set()


def read_records(conn, lay: L.Layout) -> list[L.Record]:
    result = run(conn, f"cat {_q(lay.record)}")
    return L.parse_record(result.stdout) if result.ok else []


def append_record(conn, settings: Settings, lay: L.Layout, action: str, release: str,
                  sha: str = "-", operator: str = "-") -> None:  # fmt: skip
    record = L.Record(now_utc().isoformat(timespec="seconds"), action, release, sha, operator)
    must(
        sudo(conn, settings, f"echo {_q(record.line())} >> {_q(lay.record)}"),
        f"appending to {lay.record}",
    )


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------ local build


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
            f"git -C {_q(REPO)} archive --format=tar {sha} | tar -x -C {_q(src)}",
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
    import tomllib

    requires = tomllib.loads((src / "pyproject.toml").read_text())["build-system"]["requires"]
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
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise OpsError(
                f"cannot fetch the build backend ({' '.join(requires)}): "
                f"{lines[-1] if lines else 'pip failed'}: pip needs PyPI (or a mirror) once"
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
    """The wheel's Requires-Dist the service needs on the host (no extras, no OPERATOR_ONLY)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = z.read(name).decode()
    requirements = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        spec = line.split(":", 1)[1].strip()
        requirement, _, marker = spec.partition(";")
        if "extra" in marker:
            continue
        project = re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0]
        if re.sub(r"[-_.]+", "-", project).lower() in OPERATOR_ONLY:
            continue
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


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def build(ref: str, facts: HostFacts, settings: Settings, sha: str | None = None) -> Build:
    sha = sha or resolve_ref(ref)
    with _build_lock:
        wheel = build_wheel(sha, settings)
        requirements = runtime_requirements(wheel)
        house = build_wheelhouse(facts, requirements, settings)
    return Build(sha, wheel, requirements, house)


def payload_tar(b: Build, directory: Path) -> Path:
    """One tar of what a release directory starts with: the wheel, the wheelhouse, the
    requirements; one upload instead of one SFTP round trip per wheel."""
    import tarfile

    path = directory / "release.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(b.wheel, arcname=b.wheel.name)
        for wheel in sorted(b.wheelhouse.glob("*.whl")):
            tar.add(wheel, arcname=f"wheelhouse/{wheel.name}")
        requirements = directory / "requirements.txt"
        requirements.write_text("\n".join(b.requirements) + "\n")
        tar.add(requirements, arcname="requirements.txt")
        warm = directory / "warm.toml"
        warm.write_text(WARM_CONFIG)
        tar.add(warm, arcname="warm.toml")
    return path


# ------------------------------------------------------------------------- remote release steps


def upload(conn, settings: Settings, b: Build, release: str) -> None:
    with tempfile.TemporaryDirectory(prefix="lowlat-payload-") as local:
        tar = payload_tar(b, Path(local))
        remote_tmp = must(run(conn, "mktemp -d /tmp/lowlat-deploy.XXXXXX"), "mktemp").stdout
        remote_tmp = remote_tmp.strip()
        try:
            conn.put(str(tar), f"{remote_tmp}/release.tar")
            must(
                sudo(
                    conn,
                    settings,
                    # --no-same-owner: root's tar would keep the operator's uid from the archive
                    f"mkdir -p {_q(release)} && tar -x --no-same-owner "
                    f"-f {_q(remote_tmp)}/release.tar -C {_q(release)}",
                ),
                f"unpacking into {release}",
            )
        finally:
            run(conn, f"rm -rf {_q(remote_tmp)}")


def make_venv(conn, settings: Settings, release: str, wheel_name: str) -> None:
    # PIP_CONFIG_FILE=/dev/null: no index or find-links from the host's pip.conf; the host
    # installs exactly the wheels uploaded with the release, offline.
    pip = f"env PIP_CONFIG_FILE=/dev/null {_q(release)}/venv/bin/pip"
    quiet = "--disable-pip-version-check --no-input -q"
    must(
        sudo(
            conn,
            settings,
            f"{settings.python} -m venv {_q(release)}/venv && "
            f"{pip} install {quiet} --no-index --find-links {_q(release)}/wheelhouse "
            f"-r {_q(release)}/requirements.txt && "
            f"{pip} install {quiet} --no-index --no-deps {_q(release)}/{_q(wheel_name)}",
            timeout=900,
        ),
        "creating the release venv offline",
    )


def warm_cache(conn, settings: Settings, profile: TuningProfile, release: str) -> None:
    """Fill numba's cache in the directory the units use (CacheDirectory=lowlat), as the
    service's user, through the release's own interpreter path (numba keys cache entries on
    the source file's path, and the console scripts run the release's venv by its real path).
    The run is fused onto the housekeeping CPU(s) (``default_cores`` with one allowed CPU)."""
    cache = settings.path(CACHE_DIR)
    user = profile.service_user
    owner = f"-o {_q(user)} -g {_q(user)} " if settings.sudo else ""
    must(sudo(conn, settings, f"install -d -m 0750 {owner}{_q(cache)}"), f"creating {cache}")
    # On the housekeeping CPUs: the live engine keeps its isolated cores while this compiles.
    hk = cpulist(profile.housekeeping)
    command = (
        f"env CACHE_DIRECTORY={_q(cache)} taskset -c {hk} "
        f"{_q(release)}/venv/bin/trading-service run --duration {WARM_DURATION_S} "
        f"--config {_q(release)}/warm.toml"
    )
    if settings.sudo:
        command = f"sudo -n -u {_q(user)} {command}"
    result = run(conn, command, timeout=900)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise OpsError(f"warming the new release failed: {' '.join(tail) or result.exited}")


def _rendered_paths() -> list[str]:
    """Every file ``python -m ami apply`` writes (the paths do not depend on the profile)."""
    return sorted(ami_render.render(TuningProfile.for_vcpus(2)))


def snapshot_config(conn, settings: Settings, release: str) -> str:
    """Save the rendered files as they are now (and which are absent) next to the release, so a
    failed release can be undone config and all."""
    snapshot = f"{release}/config-before"
    lines = [f"mkdir -p {_q(snapshot)}", f": > {_q(snapshot)}/absent"]
    for path in _rendered_paths():
        host = settings.path(path)
        lines.append(
            f"if [ -e {_q(host)} ]; then mkdir -p {_q(snapshot + os.path.dirname(path))} && "
            f"cp -p {_q(host)} {_q(snapshot + path)}; else echo {_q(path)} >> "
            f"{_q(snapshot)}/absent; fi"
        )
    must(sudo(conn, settings, " && ".join(lines)), "saving the current config")
    return snapshot


def restore_config(conn, settings: Settings, snapshot: str) -> None:
    root = settings.path("/")
    must(
        sudo(
            conn,
            settings,
            f"cd {_q(snapshot)} && find . -type f ! -path ./absent -exec cp -p --parents {{}} "
            f'{_q(root)} \\; && while read -r p; do rm -f {_q(root.rstrip("/"))}"$p"; '
            f"done < absent",
        ),
        "restoring the previous config",
    )


def render_config(conn, settings: Settings, release: str) -> None:
    profile = settings.path(INSTALLED_PROFILE)
    result = sudo(
        conn,
        settings,
        f"{_q(release)}/venv/bin/python -m ami apply --root {_q(settings.path('/'))} "
        f"--profile {_q(profile)}",
    )
    must(result, "rendering the config (python -m ami apply)")


def systemctl(conn, settings: Settings, *args: str, timeout: float | None = 120):
    return sudo(conn, settings, " ".join([settings.systemctl, *map(_q, args)]), timeout=timeout)


def daemon_reload(conn, settings: Settings) -> None:
    must(systemctl(conn, settings, "daemon-reload"), f"{settings.systemctl} daemon-reload")


def swap_current(conn, settings: Settings, lay: L.Layout, target: str) -> None:
    """Point ``current`` at ``target`` in one rename (``ln -sfn`` unlinks first: not atomic)."""
    tmp = f"{lay.current}.tmp"
    must(
        sudo(conn, settings, f"rm -f {_q(tmp)} && ln -s {_q(target)} {_q(tmp)} && "
             f"mv -Tf {_q(tmp)} {_q(lay.current)}"),
        f"switching {lay.current} to {target}",
    )  # fmt: skip


def restart(conn, settings: Settings) -> None:
    must(systemctl(conn, settings, "restart", *UNITS), f"{settings.systemctl} restart")


def unit_states(conn, settings: Settings) -> dict[str, str]:
    states = {}
    for unit in UNITS:
        result = systemctl(conn, settings, "is-active", unit, timeout=30)
        states[unit] = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"
    return states


READY_PROBE = """
import json, sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=3)
    code, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read().decode()
except OSError as e:
    code, body = 0, json.dumps({"ready": False, "reasons": [f"telemetry not answering: {e}"]})
print(code)
print(body)
"""


def ready_url(profile: TuningProfile) -> str:
    host = "127.0.0.1" if profile.telemetry_host in ("0.0.0.0", "::") else profile.telemetry_host
    return f"http://{host}:{profile.telemetry_port}/ready"


def probe_ready(conn, settings: Settings, profile: TuningProfile) -> tuple[int, list[str]]:
    """``/ready`` as the host itself sees it: (HTTP status, reasons); 0 when nothing answers."""
    result = run(conn, f"{settings.python} -c {_q(READY_PROBE)} {_q(ready_url(profile))}")
    lines = result.stdout.strip().splitlines()
    if not result.ok or not lines:
        return 0, [f"cannot probe /ready: {result.stderr.strip()[-200:]}"]
    code = int(lines[0])
    try:
        body = json.loads("\n".join(lines[1:]))
        reasons = list(body.get("reasons", [])) if isinstance(body, dict) else [str(body)]
    except ValueError:
        reasons = ["\n".join(lines[1:])[:200]]
    return code, reasons


def engine_log_size(conn, settings: Settings) -> int:
    """Bytes in the engine's log file now (0 when there is none): where a restart's lines start."""
    path = settings.path(f"{LOG_DIR}/engine.log")
    result = sudo(conn, settings, f"stat -c %s {_q(path)}")
    return int(result.stdout.strip()) if result.ok and result.stdout.strip().isdigit() else 0


def engine_log_tail(
    conn, settings: Settings, lines: int = LOG_TAIL_LINES, since_byte: int = 0
) -> list[str]:
    """The engine's last lines (written after ``since_byte``): its log file (the units append
    there), else the journal."""
    path = settings.path(f"{LOG_DIR}/engine.log")
    result = sudo(conn, settings, f"tail -c +{since_byte + 1} {_q(path)} | tail -n {lines}")
    if result.ok and result.stdout.strip():
        return result.stdout.rstrip().splitlines()
    journal = sudo(
        conn,
        settings,
        f"{settings.journalctl} -u {ami_units.ENGINE_UNIT} -n {lines} --no-pager -o cat",
    )
    return journal.stdout.rstrip().splitlines() if journal.ok else []


def wait_ready(conn, settings: Settings, profile: TuningProfile, log_start: int = 0) -> None:
    """Until /ready says 200; fails early when the engine unit stops (a config it rejects)."""
    deadline = time.monotonic() + float(settings.ready_timeout_s)
    shown: list[str] | None = None
    while True:
        code, reasons = probe_ready(conn, settings, profile)
        if code == 200:
            return
        if reasons != shown:
            _say(conn, f"  /ready {code or '-'}: {'; '.join(reasons) or 'no reasons given'}")
            shown = reasons
        states = unit_states(conn, settings)
        engine = states[ami_units.ENGINE_UNIT]
        if engine in ("failed", "inactive"):
            tail = [
                line
                for line in engine_log_tail(conn, settings, since_byte=log_start)
                if line.strip()
            ]
            why = tail[-1] if tail else "no log output"
            raise OpsError(f"{ami_units.ENGINE_UNIT} is {engine}: {why}")
        if time.monotonic() > deadline:
            raise OpsError(
                f"/ready not 200 within {settings.ready_timeout_s:g} s: "
                + ("; ".join(reasons) or f"HTTP {code}")
            )
        time.sleep(1.0)


def go_live(conn, settings: Settings, profile: TuningProfile, log_start: int | None = None) -> None:
    """Restart both units and wait for ready; ``log_start``: where this start's log lines begin."""
    if log_start is None:
        log_start = engine_log_size(conn, settings)
    restart(conn, settings)
    wait_ready(conn, settings, profile, log_start)


def prune(conn, settings: Settings, lay: L.Layout, protected: set[str]) -> list[str]:
    doomed = L.to_prune(existing_releases(conn, lay), int(settings.keep_releases), protected)
    for name in doomed:
        must(sudo(conn, settings, f"rm -rf {_q(lay.release(name))}"), f"removing {name}")
    return doomed


# ------------------------------------------------------------------------------------- tasks


def deploy(conn, settings: Settings, ref: str = "HEAD") -> HostResult:
    """Ship ``ref`` to the host; roll back by itself when it does not become ready."""
    sha = resolve_ref(ref)  # a bad --ref fails before the host is even asked
    facts = host_facts(conn, settings)
    _say(conn, f"host: {facts.describe()}")
    profile = installed_profile(conn, settings)
    lay = host_layout(settings, profile)

    _say(conn, f"building {ref} ({sha[:12]}) for {facts.arch} cp{facts.abi[2:]}")
    b = build(ref, facts, settings, sha)
    _say(conn, f"wheel {b.wheel.name}; wheelhouse of {len(list(b.wheelhouse.glob('*.whl')))}")
    name = f"{now_utc():%Y%m%dT%H%M%SZ}-{sha[:12]}"
    release = lay.release(name)
    if run(conn, f"test -e {_q(release)}").ok:
        raise OpsError(f"{release} already exists: deploy again in a second")

    previous = lay.name_of(read_link(conn, lay.current))
    records = read_records(conn, lay)
    snapshot = None
    swapped = False
    log_start = 0
    try:
        _say(conn, f"uploading to {release}")
        upload(conn, settings, b, release)
        _say(conn, "creating the venv offline from the wheelhouse")
        make_venv(conn, settings, release, b.wheel.name)
        _say(conn, "warming the numba cache (a short run of the new release)")
        warm_cache(conn, settings, profile, release)
        _say(conn, "rendering the config and units (python -m ami apply); daemon-reload")
        snapshot = snapshot_config(conn, settings, release)
        render_config(conn, settings, release)
        daemon_reload(conn, settings)
        _say(conn, f"current -> releases/{name} (was {previous or 'none'})")
        swap_current(conn, settings, lay, release)
        swapped = True
        _say(conn, f"restarting {' '.join(UNITS)}; waiting for /ready")
        log_start = engine_log_size(conn, settings)
        go_live(conn, settings, profile, log_start)
    except Exception as exc:  # whatever broke (a dropped connection too): undo, then say why
        failure = exc if isinstance(exc, OpsError) else OpsError(f"{type(exc).__name__}: {exc}")
        if not swapped:
            if snapshot:
                restore_config(conn, settings, snapshot)
                daemon_reload(conn, settings)
            run(conn, settings.privileged(f"rm -rf {_q(release)}"))
            raise OpsError(f"{failure}; nothing changed ({lay.current} still {previous})") from None
        raise _undo(
            conn, settings, profile, lay, name, previous, snapshot, failure, log_start
        ) from None

    if previous and previous not in L.deploy_order(records):
        append_record(conn, settings, lay, L.ADOPT, previous, "-", "-")
    append_record(conn, settings, lay, L.DEPLOY, name, sha, local_user())
    removed = prune(conn, settings, lay, {name, previous} - {None})
    if removed:
        _say(conn, f"pruned {', '.join(removed)} (keeping {settings.keep_releases})")
    return HostResult(True, f"{name} is live and ready", {"release": name, "sha": sha})


def _undo(conn, settings, profile, lay, name, previous, snapshot, failure, log_start) -> OpsError:
    """Put the previous release back after ``name`` failed; the error to raise."""
    tail = engine_log_tail(conn, settings, 5, since_byte=log_start)
    if tail:
        warn(conn, escape(f"{name} failed; the engine's last lines:"))
        for line in tail:
            _say(conn, f"  | {line}")
    if snapshot:
        restore_config(conn, settings, snapshot)
        daemon_reload(conn, settings)
    if not previous:
        systemctl(conn, settings, "stop", *UNITS)
        run(conn, settings.privileged(f"rm -f {_q(lay.current)}"))
        return OpsError(
            f"{name} did not become ready ({failure}); there was no previous release, so "
            f"{lay.current} is removed and the units are stopped"
        )
    _say(conn, f"rolling back: current -> releases/{previous}")
    swap_current(conn, settings, lay, lay.release(previous))
    try:
        go_live(conn, settings, profile)
    except OpsError as again:
        return OpsError(
            f"{name} did not become ready ({failure}); rolled back to {previous}, which is not "
            f"ready either ({again})"
        )
    return OpsError(
        f"{name} did not become ready ({failure}); rolled back to {previous}, which is ready"
    )


def rollback(conn, settings: Settings) -> HostResult:
    """Back to the release deployed before the current one, gated on /ready."""
    profile = installed_profile(conn, settings)
    lay = host_layout(settings, profile)
    current = lay.name_of(read_link(conn, lay.current))
    records = read_records(conn, lay)
    target = L.previous_release(records, current, existing_releases(conn, lay))
    if target is None:
        known = ", ".join(L.deploy_order(records)) or "none"
        raise OpsError(
            f"no earlier release to roll back to from {current or 'nothing'} "
            f"(recorded in {lay.record}: {known})"
        )
    _say(conn, f"current -> releases/{target} (was {current})")
    swap_current(conn, settings, lay, lay.release(target))
    _say(conn, f"restarting {' '.join(UNITS)}; waiting for /ready")
    try:
        go_live(conn, settings, profile)
    except OpsError as failure:
        if current:
            _say(conn, f"{target} not ready; back to {current}")
            swap_current(conn, settings, lay, lay.release(current))
            with contextlib.suppress(OpsError):
                go_live(conn, settings, profile)
        raise OpsError(f"rollback to {target} did not become ready ({failure})") from None
    append_record(conn, settings, lay, L.ROLLBACK, target, "-", local_user())
    return HostResult(True, f"{target} is live and ready (was {current})", {"release": target})


def _check_host_command(settings: Settings, lay: L.Layout, *extra: str) -> str:
    # /proc and /sys are the real ones ("/"); the profile is the one installed under root.
    return " ".join(
        [
            f"{_q(lay.current)}/venv/bin/trading-service",
            "check-host",
            "--profile",
            _q(settings.path(INSTALLED_PROFILE)),
            *extra,
        ]
    )


def status(conn, settings: Settings) -> HostResult:
    """Unit states, current release, /ready with reasons, check-host summary, last bench."""
    profile = installed_profile(conn, settings)
    lay = host_layout(settings, profile)
    states = unit_states(conn, settings)
    for unit, state in states.items():
        _say(conn, f"{unit}: {state}")
    current = lay.name_of(read_link(conn, lay.current))
    records = [r for r in read_records(conn, lay) if r.release == current]
    since = ""
    if records:
        last = records[-1]
        since = f" (since {last.time}, {last.action} by {last.operator})"
    _say(conn, f"release: {current or 'none'}{since}")
    code, reasons = probe_ready(conn, settings, profile)
    ready = code == 200
    _say(conn, "ready: yes" if ready else f"ready: no ({code or '-'}): {'; '.join(reasons)}")

    tuning = "unknown"
    if current:
        result = run(conn, _check_host_command(settings, lay, "--json", "--irq-window", "0"))
        try:
            report = json.loads(result.stdout)
            s = report["summary"]
            failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
            tuning = f"{s['passed']} passed, {s['failed']} failed, {s['not_applicable']} n/a"
            if failed:
                tuning += f" (failed: {', '.join(failed)})"
        except (ValueError, KeyError, TypeError):
            tuning = f"check-host gave no report (exit {result.exited})"
    _say(conn, f"tuning: {tuning}")

    bench = run(conn, f"cat {_q(lay.bench_last)}")
    last_bench = None
    if bench.ok and bench.stdout.strip():
        try:
            last_bench = json.loads(bench.stdout)
            _say(conn, f"last bench: {_bench_line(last_bench)}")
        except ValueError:
            _say(conn, f"last bench: {lay.bench_last} is not JSON")
    else:
        _say(conn, "last bench: none")

    engine_ok = states[ami_units.ENGINE_UNIT] == "active"
    summary = f"{current or 'no release'}, engine {states[ami_units.ENGINE_UNIT]}, " + (
        "ready" if ready else "NOT ready"
    )
    details = {"units": states, "release": current, "ready": ready, "reasons": reasons,
               "tuning": tuning, "bench": last_bench}  # fmt: skip
    return HostResult(engine_ok and ready, summary, details)


def _bench_line(doc) -> str:
    """One line from ``fab bench``'s last.json (ops/bench.py ``last_result``: its "summary"
    says when and the verdict per rate, "report" where the full report went)."""
    if not isinstance(doc, dict):
        return str(doc)[:200]
    line = str(doc.get("summary") or doc.get("finished_at") or "no summary in the file")
    if doc.get("report"):
        line += f" (report: {doc['report']})"
    return line


SINCE_DURATION = re.compile(r"^(\d+)\s*(s|sec|m|min|h|d|w)$")
SINCE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?|today|yesterday|now)$")


def journal_since(since: str) -> str:
    """``--since`` as journalctl takes it: 15m -> "-15m"; a date or time as it is."""
    text = str(since).strip()
    if SINCE_DURATION.match(text):
        return "-" + text.replace(" ", "")
    if SINCE_TIME.match(text):
        return text
    raise OpsError(
        f"--since {since!r}: use a duration like 15m, 1h or 2d, or a time like "
        '"2026-11-21 13:00", "today"'
    )


def logs(conn, settings: Settings, since: str = "1h") -> HostResult:
    """The units' journal since ``since`` plus the tail of their log files."""
    since_arg = journal_since(since)
    shown = 0
    journal = run(conn, f"command -v {_q(settings.journalctl.split()[0])}")
    if journal.ok:
        # privileged: a login user sees only its own journal unless it is in systemd-journal
        result = sudo(
            conn,
            settings,
            f"{settings.journalctl} -u {ami_units.ENGINE_UNIT} -u {ami_units.TELEMETRY_UNIT} "
            f"--since {_q(since_arg)} --no-pager",
        )
        _print_block(conn, f"journal since {since}", result.stdout or result.stderr)
        shown += 1
    else:
        _say(conn, f"no {settings.journalctl} on this host: showing the log files only")
    # The units send their output to files (StandardOutput=append:, for the CloudWatch agent);
    # the lines carry no time stamps, so --since cannot apply to them: the last 200 lines.
    for name in ("engine", "telemetry"):
        path = settings.path(f"{LOG_DIR}/{name}.log")
        result = sudo(conn, settings, f"tail -n 200 {_q(path)}")  # systemd made them (root)
        if result.ok:
            _print_block(conn, f"{path} (last 200 lines)", result.stdout)
            shown += 1
    if not shown:
        raise OpsError(f"no journal and no log files under {settings.path(LOG_DIR)}")
    return HostResult(True, f"logs since {since}")


def _print_block(conn, title: str, text: str) -> None:
    _say(conn, f"--- {title}")
    for line in text.rstrip().splitlines():
        console.print(escape(line), highlight=False)


def check_host(conn, settings: Settings) -> HostResult:
    """The host's own ``trading-service check-host`` against its installed profile."""
    profile = installed_profile(conn, settings)
    lay = host_layout(settings, profile)
    if not run(conn, f"test -x {_q(lay.current)}/venv/bin/trading-service").ok:
        raise OpsError(f"no release at {lay.current}: deploy one first (fab deploy)")
    result = run(conn, _check_host_command(settings, lay))
    _print_block(conn, "trading-service check-host", result.stdout + result.stderr)
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    if result.exited not in (0, 1):
        raise OpsError(f"check-host exited {result.exited}: {last}")
    return HostResult(result.exited == 0, last)
