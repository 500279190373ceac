"""Running things on a host for the Fabric tasks: commands, systemd, /ready, files and facts.

Every function here takes an open Fabric connection and asks the host something or runs one
command there; none decides what a task does. Every privileged command goes through
``Settings.privileged`` as one ``sh -c`` so that sudo covers the whole pipeline, not only its
first word.

Light modules only (no numba, no service hot path): ``fab --list`` imports this.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ami import units as ami_units
from ami.hostos import host_os
from contracts import release_layout as L
from contracts.profile import INSTALLED_PROFILE, ProfileError, TuningProfile, load_profile
from ops.hosts import AUTO_PYTHON, Connection, OpsError, Settings

if TYPE_CHECKING:
    from invoke.runners import Result

UNITS = (ami_units.ENGINE_UNIT, ami_units.TELEMETRY_UNIT)
LOG_DIR = ami_units.LOG_DIR
ENGINE_LOG = f"{LOG_DIR}/engine.log"
LOG_TAIL_LINES = 20

# The oldest manylinux the host can take is manylinux2014 (glibc 2.17); newer tags up to the
# host's own glibc are all acceptable. numba/llvmlite for aarch64 need 2.28 (AL2023, not AL2).
MANYLINUX_FLOOR = 17


def q(text: object) -> str:
    """``text`` as one shell word."""
    return shlex.quote(str(text))


def run(conn: Connection, command: str, *, timeout: float | None = None) -> Result:
    """Run ``command`` on the host; never raises for its exit status (callers check ``.ok``)."""
    result: Result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    return result


def sudo(
    conn: Connection, settings: Settings, command: str, *, timeout: float | None = None
) -> Result:
    """``command`` (a shell pipeline) as the privileged user, all of it."""
    return run(conn, settings.privileged(f"sh -c {q(command)}"), timeout=timeout)


def must(result: Result, what: str) -> Result:
    """``result`` when it succeeded, else an OpsError naming ``what`` and its last line."""
    if result.ok:
        return result
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    tail = lines[-1] if lines else f"exit status {result.exited}"
    raise OpsError(f"{what} failed: {tail}")


# ------------------------------------------------------------------------------ systemd


def systemctl(
    conn: Connection, settings: Settings, *args: str, timeout: float | None = 120
) -> Result:
    return sudo(conn, settings, " ".join([settings.systemctl, *map(q, args)]), timeout=timeout)


def daemon_reload(conn: Connection, settings: Settings) -> None:
    must(systemctl(conn, settings, "daemon-reload"), f"{settings.systemctl} daemon-reload")


def unit_states(conn: Connection, settings: Settings) -> dict[str, str]:
    """``systemctl is-active`` of both units: active, inactive, failed... ("?" for no answer)."""
    states = {}
    for unit in UNITS:
        result = systemctl(conn, settings, "is-active", unit, timeout=30)
        states[unit] = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"
    return states


# ------------------------------------------------------------------------------- /ready

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


def probe_ready(
    conn: Connection, settings: Settings, profile: TuningProfile
) -> tuple[int, list[str]]:
    """``/ready`` as the host itself sees it: (HTTP status, reasons); 0 when nothing answers."""
    result = run(conn, f"{settings.python} -c {q(READY_PROBE)} {q(ready_url(profile))}")
    lines = result.stdout.strip().splitlines()
    if not result.ok or not lines:
        return 0, [f"cannot probe /ready: {result.stderr.strip()[-200:]}"]
    code = int(lines[0])
    try:
        body = json.loads("\n".join(lines[1:]))
    except ValueError:
        return code, ["\n".join(lines[1:])[:200]]
    if not isinstance(body, dict):
        return code, [str(body)]
    return code, [str(reason) for reason in body.get("reasons", [])]


# ------------------------------------------------------------------------ files and links


def read_link(conn: Connection, path: str) -> str | None:
    """Where the symbolic link ``path`` points; None when it is not one."""
    result = run(conn, f"readlink {q(path)}")
    return result.stdout.strip() or None if result.ok else None


def read_text(conn: Connection, path: str) -> str | None:
    """The text of the file ``path`` (as the login user); None when it cannot be read."""
    result = run(conn, f"cat {q(path)}")
    return result.stdout if result.ok else None


def existing_releases(conn: Connection, lay: L.Layout) -> set[str]:
    result = run(conn, f"ls -1 {q(lay.releases)}")
    return set(result.stdout.split()) if result.ok else set()


def read_records(conn: Connection, lay: L.Layout) -> list[L.Record]:
    text = read_text(conn, lay.record)
    return L.parse_record(text) if text is not None else []


def current_release(conn: Connection, lay: L.Layout) -> str | None:
    """The name of the release ``current`` points at; None when there is none."""
    return lay.name_of(read_link(conn, lay.current))


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


def host_facts(conn: Connection, settings: Settings) -> HostFacts:
    """What the wheels must fit: the host's architecture, Python and C library."""
    arch = must(run(conn, "uname -m"), "uname -m").stdout.strip()
    probe = run(conn, f"{settings.python} -c {q(PYTHON_PROBE)}")
    if not probe.ok:
        found = run(
            conn,
            "ls /usr/bin/python3* /usr/local/bin/python3* 2>/dev/null | "
            "grep -E 'python3(\\.[0-9]+)?$' | xargs -rn1 basename | sort -u | tr '\\n' ' '",
        ).stdout.strip()
        raise OpsError(
            f"host has no {settings.python} (found: {found or 'no python3 at all'}): install it "
            f"(dnf install python3.11, apt-get install python3.12-venv) or set lowlat.python in "
            "the Fabric config"
        )
    parts = probe.stdout.split()
    major, minor = int(parts[0]), int(parts[1])
    if (major, minor) < (3, 11):
        raise OpsError(
            f"{settings.python} on the host is Python {major}.{minor}: lowlat needs 3.11 or newer "
            "(install a newer one from the OS, or set lowlat.python)"
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


def installed_profile(conn: Connection, settings: Settings) -> TuningProfile:
    """The tuning profile the host was made with (INSTALLED_PROFILE under root)."""
    path = settings.path(INSTALLED_PROFILE)
    text = read_text(conn, path)
    if text is None:
        raise OpsError(
            f"{path} not found: the host is not a lowlat image; build it with the image "
            "pipeline, or run `python -m ami apply --root / --profile FILE` there and copy the "
            f"profile to {INSTALLED_PROFILE}"
        )
    vcpus = int(must(run(conn, "nproc --all"), "nproc").stdout.strip() or 2)
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(text)
        f.flush()
        try:
            return load_profile(f.name, max(2, vcpus))
        except ProfileError as exc:
            raise OpsError(f"{path}: {str(exc).split(': ', 1)[-1]}") from None


def host_layout(settings: Settings, profile: TuningProfile) -> L.Layout:
    """The release paths of the host, under the settings' root."""
    return L.Layout(settings.path(profile.install_prefix))


@dataclass(frozen=True)
class Target:
    """A lowlat host as a task sees it: the connection, the task's settings, the profile the
    host was made with and where its releases live. What the steps of a task share."""

    conn: Connection
    settings: Settings
    profile: TuningProfile
    lay: L.Layout

    @classmethod
    def of(cls, conn: Connection, settings: Settings) -> Target:
        """The host behind ``conn``; an OpsError when it is not a lowlat host."""
        profile = installed_profile(conn, settings)
        if settings.python == AUTO_PYTHON:  # the Python the host's OS ships (3.12 on Ubuntu 24.04)
            settings = dataclasses.replace(settings, python=host_os(profile).python)
        return cls(conn, settings, profile, host_layout(settings, profile))


# ---------------------------------------------------------------------------- engine log


def engine_log_size(conn: Connection, settings: Settings) -> int:
    """Bytes in the engine's log file now (0 when there is none): where a restart's lines start."""
    path = settings.path(ENGINE_LOG)
    result = sudo(conn, settings, f"stat -c %s {q(path)}")
    return int(result.stdout.strip()) if result.ok and result.stdout.strip().isdigit() else 0


def host_clock(conn: Connection) -> int:
    """The host's clock, in seconds since the epoch (0 when it cannot be read)."""
    result = run(conn, "date +%s")
    return int(result.stdout.strip()) if result.ok and result.stdout.strip().isdigit() else 0


def unit_failures(
    conn: Connection, settings: Settings, unit: str, since: int, lines: int = 4
) -> list[str]:
    """systemd's first lines about ``unit`` since ``since`` (epoch s) that say it failed: a
    start that fails before the program runs (a namespace, a path, a user) is only in the
    journal, never in the unit's log file. The first, because the cause comes first ("Failed to
    set up mount namespacing: <path>"), then what followed. Empty without a journal."""
    if not since:
        return []
    result = sudo(
        conn, settings, f"{settings.journalctl} -u {unit} --since @{since} --no-pager -o cat"
    )
    failed = [line for line in result.stdout.splitlines() if "Failed" in line] if result.ok else []
    return failed[:lines]


def engine_log_tail(
    conn: Connection, settings: Settings, lines: int = LOG_TAIL_LINES, since_byte: int = 0
) -> list[str]:
    """The engine's last lines (written after ``since_byte``): its log file (the units append
    there), else the journal."""
    path = settings.path(ENGINE_LOG)
    result = sudo(conn, settings, f"tail -c +{since_byte + 1} {q(path)} | tail -n {lines}")
    if result.ok and result.stdout.strip():
        return result.stdout.rstrip().splitlines()
    journal = sudo(
        conn,
        settings,
        f"{settings.journalctl} -u {ami_units.ENGINE_UNIT} -n {lines} --no-pager -o cat",
    )
    return journal.stdout.rstrip().splitlines() if journal.ok else []
