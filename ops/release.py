"""The tasks that change what runs on a host: ``deploy`` and ``rollback``, and their steps.

``deploy`` is the whole path a release takes, one printed line per step:

1. ask the host what it runs (``uname -m``, its Python and glibc): the wheels must fit it;
2. build locally (``ops.build``): the project wheel from ``git archive <ref>`` and a wheelhouse
   of the service's runtime dependencies for the host's platform, both cached;
3. check the host has room for it (``df``), upload both as one tar under a temporary name
   beside the release, check it (size, sha256), unpack it into a hidden directory renamed to
   ``<prefix>/releases/<UTC time>-<sha12>/`` when complete (a full disk leaves nothing behind),
   and make the venv there offline (``pip install --no-index --find-links wheelhouse``): the
   host needs no PyPI;
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

The host must have been made a lowlat host first (its profile at /etc/lowlat/profile.toml,
written by the image, or by ``python -m ami apply`` plus the profile file): the profile says
where releases live, which port telemetry listens on and who runs the service. Deploying to a
host without one is refused before anything is built or uploaded.

Light modules only (no numba, no service hot path): ``fab --list`` imports this.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from ami import render as ami_render
from ami import units as ami_units
from contracts import release_layout as L
from contracts.profile import INSTALLED_PROFILE, TuningProfile, cpulist
from ops.build import Build, build, payload_tar, resolve_ref
from ops.hosts import (
    Connection,
    HostResult,
    OpsError,
    Settings,
    check_writable_dir,
    local_user,
    mib,
)
from ops.remote import (
    UNITS,
    Target,
    current_release,
    daemon_reload,
    engine_log_size,
    engine_log_tail,
    existing_releases,
    host_clock,
    host_facts,
    must,
    probe_ready,
    q,
    read_records,
    run,
    sudo,
    systemctl,
    unit_failures,
    unit_states,
)
from ops.ui import say, warn

CACHE_DIR = "/var/cache/lowlat"  # CacheDirectory=lowlat in both units (ami/units.py)
WARM_DURATION_S = 0.5  # the warm-up run of ops.build's warm.toml


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------- records


def append_record(
    t: Target, action: str, release: str, *, sha: str = "-", operator: str = "-"
) -> None:
    """One line of releases.log: ``action`` made ``release`` live."""
    record = L.Record(now_utc().isoformat(timespec="seconds"), action, release, sha, operator)
    must(
        sudo(t.conn, t.settings, f"echo {q(record.line())} >> {q(t.lay.record)}"),
        f"appending to {t.lay.record}",
    )


def prune(t: Target, protected: set[str]) -> list[str]:
    """Remove releases beyond ``keep_releases``, never one in ``protected``; the names removed."""
    existing = existing_releases(t.conn, t.lay)
    doomed = L.to_prune(existing, int(t.settings.keep_releases), protected)
    for name in doomed:
        must(sudo(t.conn, t.settings, f"rm -rf {q(t.lay.release(name))}"), f"removing {name}")
    return doomed


# ------------------------------------------------------------------------ release steps


def installed_bytes(b: Build) -> int:
    """What the release's wheels hold uncompressed: about what its venv takes on the host."""
    total = 0
    for wheel in [b.wheel, *sorted(b.wheelhouse.glob("*.whl"))]:
        with zipfile.ZipFile(wheel) as z:
            total += sum(info.file_size for info in z.infolist())
    return total


def free_bytes(t: Target, path: str) -> int | None:
    """Bytes available on the host's file system that holds ``path`` (or would: its nearest
    existing parent), as ``df`` says; None when it cannot tell."""
    result = sudo(
        t.conn,
        t.settings,
        f'p={q(path)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -Pk "$p" | tail -n 1',
    )
    fields = result.stdout.split()
    if not result.ok or len(fields) < 6 or not fields[-3].isdigit():
        return None
    return int(fields[-3]) * 1024  # Available, in 1024-byte blocks (the 4th of 6 columns)


@dataclass(frozen=True)
class _Payload:
    """The release's tar on this machine, and what it takes on the host."""

    tar: Path
    size: int
    sha256: str
    installed: int  # what the venv will take, about

    @property
    def room(self) -> int:
        """Free space the upload needs at its peak: the tar while it is unpacked, then the
        unpacked wheelhouse while the venv is made from it."""
        return self.size + max(self.size, self.installed)


def _no_room(t: Target, where: str, payload: _Payload, doing: str) -> OpsError | None:
    """The error for a host whose file system at ``where`` cannot take the release, if so."""
    free = free_bytes(t, where)
    if free is None or free >= payload.room:
        return None
    return OpsError(
        f"no room for the release on the host{doing}: {mib(free)} free on {where}, it needs "
        f"{mib(payload.room)} ({mib(payload.size)} to upload, {mib(payload.installed)} "
        "installed); free some there (old releases, never the current one) or grow the volume"
    )


def upload(t: Target, b: Build, release: str) -> None:
    """The payload (wheel, wheelhouse, requirements, warm-up config) unpacked into ``release``,
    which appears whole or not at all.

    The host's free space is checked first. The tar goes up under a temporary name beside the
    release (``.<name>.upload/release.tar.part``, on the same file system), is checked against
    the local one (size and sha256) and renamed; it is unpacked into ``.<name>.partial``, which
    is renamed to ``release`` when complete. A failure (a full disk, a dropped connection)
    removes both and says why in one line; nothing else on the host is touched."""
    parent, name = release.rsplit("/", 1)
    staging, partial = f"{parent}/.{name}.upload", f"{parent}/.{name}.partial"
    with tempfile.TemporaryDirectory(prefix="lowlat-payload-") as local:
        try:
            tar = payload_tar(b, Path(local), t.settings.ready_timeout_s)
            with open(tar, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise OpsError(f"writing the release's tar under {local} failed: {exc}") from None
        payload = _Payload(tar, tar.stat().st_size, digest, installed_bytes(b))
        refused = _no_room(t, parent, payload, "")
        if refused:
            raise refused
        doing = "uploading"
        try:
            _put(t, payload, staging)
            doing = "unpacking"
            _unpack(t, staging, partial, release)
        except BaseException as exc:
            run(t.conn, t.settings.privileged(f"rm -rf {q(partial)} {q(staging)}"))
            if not isinstance(exc, Exception):  # Ctrl-C: cleaned up, and on its way
                raise
            # after the clean-up, df says whether the disk is what failed: say so rather than
            # what SFTP says of it ("Failure")
            failure = _no_room(t, parent, payload, f" (it filled up while {doing})")
            if failure is None:
                failure = exc if isinstance(exc, OpsError) else OpsError(f"{doing} failed: {exc}")
            raise failure from None
        run(t.conn, t.settings.privileged(f"rm -rf {q(staging)}"))


def _put(t: Target, payload: _Payload, staging: str) -> None:
    """The tar into ``staging``/release.tar: sent as release.tar.part, checked, renamed."""
    owner = ""
    if t.settings.sudo:  # the login user uploads; the release itself is root's
        login = must(run(t.conn, "id -un"), "id -un").stdout.strip()
        owner = f"-o {q(login)} "
    must(
        sudo(t.conn, t.settings, f"mkdir -p {q(os.path.dirname(staging))} && "
             f"install -d -m 0700 {owner}{q(staging)}"),
        f"creating {staging}",
    )  # fmt: skip
    part, whole = f"{staging}/release.tar.part", f"{staging}/release.tar"
    try:
        t.conn.put(str(payload.tar), part)
    except OSError as exc:  # paramiko's SFTP errors carry the server's message, if any
        raise OpsError(f"uploading to {part} failed: {exc.strerror or exc}") from None
    check = must(run(t.conn, f"stat -c %s {q(part)} && sha256sum {q(part)}"), f"checking {part}")
    lines = check.stdout.split()
    if lines[:1] != [str(payload.size)] or lines[1:2] != [payload.sha256]:
        raise OpsError(f"{part} is not the tar that was sent (its size or sha256 differs)")
    must(run(t.conn, f"mv -f {q(part)} {q(whole)}"), f"renaming {part}")


def _unpack(t: Target, staging: str, partial: str, release: str) -> None:
    """The uploaded tar unpacked into ``partial``, renamed to ``release`` when complete."""
    must(
        sudo(
            t.conn,
            t.settings,
            # --no-same-owner: root's tar would keep the operator's uid from the archive
            f"rm -rf {q(partial)} && mkdir {q(partial)} && tar -x --no-same-owner "
            f"-f {q(staging)}/release.tar -C {q(partial)} && mv -T {q(partial)} {q(release)}",
        ),
        f"unpacking into {partial}",
    )


def make_venv(t: Target, release: str, wheel_name: str) -> None:
    # PIP_CONFIG_FILE=/dev/null: no index or find-links from the host's pip.conf; the host
    # installs exactly the wheels uploaded with the release, offline.
    # One pip run for the requirements and the release's wheel (pip's start-up is seconds on a
    # small host). pip byte-compiles as it installs: the units' venv is read-only to them, so
    # the .pyc files must be there before they start. (pip --no-compile and one compileall
    # -j 0 afterwards was measured slower in the lab: 7.8 min against 6.)
    pip = f"env PIP_CONFIG_FILE=/dev/null {q(release)}/venv/bin/pip"
    quiet = "--disable-pip-version-check --no-input -q"
    must(
        sudo(
            t.conn,
            t.settings,
            f"{t.settings.python} -m venv {q(release)}/venv && "
            f"{pip} install {quiet} --no-index --find-links {q(release)}/wheelhouse "
            f"-r {q(release)}/requirements.txt {q(release)}/{q(wheel_name)}",
            timeout=900,
        ),
        "creating the release venv offline",
    )


def warm_cache(t: Target, release: str) -> None:
    """Fill numba's cache in the directory the units use (CacheDirectory=lowlat), as the
    service's user, through the release's own interpreter path (numba keys cache entries on
    the source file's path, and the console scripts run the release's venv by its real path).
    The run is fused onto the housekeeping CPU(s) (``default_cores`` with one allowed CPU)."""
    settings = t.settings
    cache = settings.path(CACHE_DIR)
    user = t.profile.service_user
    owner = f"-o {q(user)} -g {q(user)} " if settings.sudo else ""
    must(sudo(t.conn, settings, f"install -d -m 0750 {owner}{q(cache)}"), f"creating {cache}")
    # On the housekeeping CPUs: the live engine keeps its isolated cores while this compiles.
    hk = cpulist(t.profile.housekeeping)
    command = (
        f"env CACHE_DIRECTORY={q(cache)} taskset -c {hk} "
        f"{q(release)}/venv/bin/trading-service run --duration {WARM_DURATION_S} "
        f"--config {q(release)}/warm.toml"
    )
    if settings.sudo:
        command = f"sudo -n -u {q(user)} {command}"
    # the run waits up to ready_timeout_s for its stages to compile (warm.toml), then drains
    result = run(t.conn, command, timeout=float(settings.ready_timeout_s) + 120)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise OpsError(f"warming the new release failed: {' '.join(tail) or result.exited}")


def _rendered_paths() -> list[str]:
    """Every file ``python -m ami apply`` writes (the paths do not depend on the profile)."""
    return sorted(ami_render.render(TuningProfile.for_vcpus(2)))


def snapshot_config(t: Target, release: str) -> str:
    """Save the rendered files as they are now (and which are absent) next to the release, so a
    failed release can be undone config and all."""
    snapshot = f"{release}/config-before"
    lines = [f"mkdir -p {q(snapshot)}", f": > {q(snapshot)}/absent"]
    for path in _rendered_paths():
        host = t.settings.path(path)
        lines.append(
            f"if [ -e {q(host)} ]; then mkdir -p {q(snapshot + os.path.dirname(path))} && "
            f"cp -p {q(host)} {q(snapshot + path)}; else echo {q(path)} >> "
            f"{q(snapshot)}/absent; fi"
        )
    must(sudo(t.conn, t.settings, " && ".join(lines)), "saving the current config")
    return snapshot


def restore_config(t: Target, snapshot: str) -> None:
    """Put back the files ``snapshot_config`` saved, and remove those that were absent."""
    root = t.settings.path("/")
    must(
        sudo(
            t.conn,
            t.settings,
            f"cd {q(snapshot)} && find . -type f ! -path ./absent -exec cp -p --parents {{}} "
            f'{q(root)} \\; && while read -r p; do rm -f {q(root.rstrip("/"))}"$p"; '
            f"done < absent",
        ),
        "restoring the previous config",
    )


def render_config(t: Target, release: str) -> None:
    """The config and units from the installed profile, by the release's own ``ami apply``."""
    profile = t.settings.path(INSTALLED_PROFILE)
    result = sudo(
        t.conn,
        t.settings,
        f"{q(release)}/venv/bin/python -m ami apply --root {q(t.settings.path('/'))} "
        f"--profile {q(profile)}",
    )
    must(result, "rendering the config (python -m ami apply)")


def swap_current(t: Target, release: str) -> None:
    """Point ``current`` at ``release`` in one rename (``ln -sfn`` unlinks first: not atomic)."""
    current = t.lay.current
    tmp = f"{current}.tmp"
    must(
        sudo(t.conn, t.settings, f"rm -f {q(tmp)} && ln -s {q(release)} {q(tmp)} && "
             f"mv -Tf {q(tmp)} {q(current)}"),
        f"switching {current} to {release}",
    )  # fmt: skip


# ----------------------------------------------------------------------------- going live


def restart(conn: Connection, settings: Settings) -> None:
    must(systemctl(conn, settings, "restart", *UNITS), f"{settings.systemctl} restart")


def _engine_stopped(t: Target, log_start: int) -> OpsError | None:
    """The error to raise when the engine unit has stopped (a config it rejects), else None."""
    engine = unit_states(t.conn, t.settings)[ami_units.ENGINE_UNIT]
    if engine not in ("failed", "inactive"):
        return None
    lines = engine_log_tail(t.conn, t.settings, since_byte=log_start)
    tail = [line for line in lines if line.strip()]
    why = tail[-1] if tail else "no log output"
    return OpsError(f"{ami_units.ENGINE_UNIT} is {engine}: {why}")


def wait_ready(t: Target, log_start: int = 0) -> None:
    """Until /ready says 200; fails early when the engine unit stops (a config it rejects)."""
    deadline = time.monotonic() + float(t.settings.ready_timeout_s)
    shown: list[str] | None = None
    while True:
        code, reasons = probe_ready(t.conn, t.settings, t.profile)
        if code == 200:
            return
        if reasons != shown:
            say(t.conn, f"  /ready {code or '-'}: {'; '.join(reasons) or 'no reasons given'}")
            shown = reasons
        stopped = _engine_stopped(t, log_start)
        if stopped is not None:
            raise stopped
        if time.monotonic() > deadline:
            raise OpsError(
                f"/ready not 200 within {t.settings.ready_timeout_s:g} s: "
                + ("; ".join(reasons) or f"HTTP {code}")
            )
        time.sleep(1.0)


def go_live(t: Target, log_start: int | None = None) -> None:
    """Restart both units and wait for ready; ``log_start``: where this start's log lines begin."""
    if log_start is None:
        log_start = engine_log_size(t.conn, t.settings)
    restart(t.conn, t.settings)
    wait_ready(t, log_start)


# ---------------------------------------------------------------------------------- deploy


@dataclass(frozen=True)
class Attempt:
    """One deploy on one host: the release it makes live and the one that was live before."""

    target: Target
    name: str  # the new release: <UTC time>-<sha12>
    previous: str | None  # what ``current`` pointed at before, if anything

    @property
    def release(self) -> str:
        """The new release's directory on the host."""
        return self.target.lay.release(self.name)


@dataclass
class _Progress:
    """How far an attempt got: what the undo has to put back."""

    snapshot: str | None = None  # the config saved before rendering the new one
    swapped: bool = False  # ``current`` points at the new release
    log_start: int = 0  # where the new release's engine log lines begin
    restarted_at: int = 0  # the host's clock when the units were restarted (epoch s)


def preflight(settings: Settings, ref: str) -> str:
    """What a deploy checks on this machine before any host is reached: ``ref`` names a commit
    (its full sha is returned: every host of a fleet gets that one) and the wheelhouse cache is
    a directory the build can write. An OpsError, one line, when not."""
    sha = resolve_ref(ref)
    check_writable_dir("lowlat.wheelhouse_cache", settings.wheelhouse_cache)
    return sha


def deploy(
    conn: Connection, settings: Settings, ref: str = "HEAD", sha: str | None = None
) -> HostResult:
    """Ship ``ref`` (the commit ``sha`` when given, as ``preflight`` resolved it) to the host;
    roll back by itself when it does not become ready."""
    sha = sha or resolve_ref(ref)  # a bad --ref fails before the host is even asked
    t = Target.of(conn, settings)  # first: the host's profile names its OS, and so its Python
    settings = t.settings
    facts = host_facts(conn, settings)
    say(conn, f"host: {facts.describe()}")

    say(conn, f"building {ref} ({sha[:12]}) for {facts.arch} cp{facts.abi[2:]}")
    b = build(ref, facts, settings, sha)
    say(conn, f"wheel {b.wheel.name}; wheelhouse of {len(list(b.wheelhouse.glob('*.whl')))}")
    attempt = Attempt(t, f"{now_utc():%Y%m%dT%H%M%SZ}-{sha[:12]}", current_release(conn, t.lay))
    if run(conn, f"test -e {q(attempt.release)}").ok:
        raise OpsError(f"{attempt.release} already exists: deploy again in a second")

    records = read_records(conn, t.lay)
    progress = _Progress()
    try:
        _install_and_go_live(attempt, b, progress)
    except Exception as exc:  # whatever broke (a dropped connection too): undo, then say why
        failure = exc if isinstance(exc, OpsError) else OpsError(f"{type(exc).__name__}: {exc}")
        raise _undo(attempt, progress, failure) from None

    previous = attempt.previous
    if previous and previous not in L.deploy_order(records):
        append_record(t, L.ADOPT, previous)
    append_record(t, L.DEPLOY, attempt.name, sha=sha, operator=local_user())
    removed = prune(t, {attempt.name} | ({previous} if previous else set()))
    if removed:
        say(conn, f"pruned {', '.join(removed)} (keeping {settings.keep_releases})")
    return HostResult(
        True, f"{attempt.name} is live and ready", {"release": attempt.name, "sha": sha}
    )


def _install_and_go_live(attempt: Attempt, b: Build, progress: _Progress) -> None:
    """Steps 3 to 7: upload, venv, warm cache, config, swap, restart; ``progress`` says how far
    it got when one of them raises."""
    t, release, conn = attempt.target, attempt.release, attempt.target.conn
    say(conn, f"uploading to {release}")
    upload(t, b, release)
    say(conn, "creating the venv offline from the wheelhouse")
    make_venv(t, release, b.wheel.name)
    say(conn, "warming the numba cache (a short run of the new release)")
    warm_cache(t, release)
    say(conn, "rendering the config and units (python -m ami apply); daemon-reload")
    progress.snapshot = snapshot_config(t, release)
    render_config(t, release)
    daemon_reload(conn, t.settings)
    say(conn, f"current -> releases/{attempt.name} (was {attempt.previous or 'none'})")
    swap_current(t, release)
    progress.swapped = True
    # Enabled, so the release comes back by itself after a reboot (found by the lab's reboot
    # step: the units were started by every deploy but enabled by none, and a reboot left the
    # host tuned with no engine).
    must(systemctl(conn, t.settings, "enable", *UNITS), f"enabling {' '.join(UNITS)}")
    say(conn, f"restarting {' '.join(UNITS)}; waiting for /ready")
    progress.log_start = engine_log_size(conn, t.settings)
    progress.restarted_at = host_clock(conn)
    go_live(t, progress.log_start)


def _undo(attempt: Attempt, progress: _Progress, failure: OpsError) -> OpsError:
    """Put back what the attempt changed, as far as it got; the error to raise."""
    t = attempt.target
    if not progress.swapped:  # the live release never stopped: drop the new one
        if progress.snapshot:
            restore_config(t, progress.snapshot)
            daemon_reload(t.conn, t.settings)
        run(t.conn, t.settings.privileged(f"rm -rf {q(attempt.release)}"))
        return OpsError(f"{failure}; nothing changed ({t.lay.current} still {attempt.previous})")

    tail = engine_log_tail(t.conn, t.settings, 5, since_byte=progress.log_start)
    if tail:
        warn(t.conn, escape(f"{attempt.name} failed; the engine's last lines:"))
        for line in tail:
            say(t.conn, f"  | {line}")
    systemd = unit_failures(t.conn, t.settings, ami_units.ENGINE_UNIT, progress.restarted_at)
    if systemd:  # found by the lab: a unit that fails in its namespace logs nothing of its own
        warn(t.conn, escape(f"{attempt.name} failed; systemd says:"))
        for line in systemd:
            say(t.conn, f"  | {line}")
    if progress.snapshot:
        restore_config(t, progress.snapshot)
        daemon_reload(t.conn, t.settings)
    failed = f"{attempt.name} did not become ready ({failure})"
    if not attempt.previous:
        systemctl(t.conn, t.settings, "disable", "--now", *UNITS)
        run(t.conn, t.settings.privileged(f"rm -f {q(t.lay.current)}"))
        return OpsError(
            f"{failed}; there was no previous release, so {t.lay.current} is removed and the "
            "units are stopped and disabled"
        )
    say(t.conn, f"rolling back: current -> releases/{attempt.previous}")
    swap_current(t, t.lay.release(attempt.previous))
    try:
        go_live(t)
    except OpsError as again:
        return OpsError(
            f"{failed}; rolled back to {attempt.previous}, which is not ready either ({again})"
        )
    return OpsError(f"{failed}; rolled back to {attempt.previous}, which is ready")


# -------------------------------------------------------------------------------- rollback


def rollback(conn: Connection, settings: Settings) -> HostResult:
    """Back to the release deployed before the current one, gated on /ready."""
    t = Target.of(conn, settings)
    settings = t.settings  # with the host's Python resolved (lowlat.python: auto)
    current = current_release(conn, t.lay)
    records = read_records(conn, t.lay)
    target = L.previous_release(records, current, existing_releases(conn, t.lay))
    if target is None:
        known = ", ".join(L.deploy_order(records)) or "none"
        raise OpsError(
            f"no earlier release to roll back to from {current or 'nothing'} "
            f"(recorded in {t.lay.record}: {known})"
        )
    say(conn, f"current -> releases/{target} (was {current})")
    swap_current(t, t.lay.release(target))
    say(conn, f"restarting {' '.join(UNITS)}; waiting for /ready")
    try:
        go_live(t)
    except OpsError as failure:
        if current:
            say(conn, f"{target} not ready; back to {current}")
            swap_current(t, t.lay.release(current))
            with contextlib.suppress(OpsError):
                go_live(t)
        raise OpsError(f"rollback to {target} did not become ready ({failure})") from None
    append_record(t, L.ROLLBACK, target, operator=local_user())
    return HostResult(True, f"{target} is live and ready (was {current})", {"release": target})
