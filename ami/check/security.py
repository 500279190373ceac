"""The host's own gates: the firewall (table ``inet lowlat``) is the profile's ruleset and loaded at
this boot, and sshd reads lowlat's drop-in before any other value. What they should be comes from
``ami.security``, which renders them.

Files only root may read (AL2023 keeps sshd_config 0600) make a check not applicable, not
failed: the root timer's report (lowlat-check-host.timer) reads them.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable
from pathlib import Path

from ami.check.model import FAIL, NA, PASS, Check
from ami.security import (
    BOOT_ID,
    FIREWALL_RULESET,
    FIREWALL_STATE,
    FIREWALL_UNIT_NAME,
    LOADED_BOOT_ID,
    LOADED_RULESET,
    SSHD,
    SSHD_CONFIG,
    SSHD_DROPIN,
    TABLE,
    firewall_ruleset,
    sshd_dropin,
    sshd_settings,
)
from contracts.profile import TuningProfile

# sshd's keys are case-insensitive; ChallengeResponseAuthentication is the old name of
# KbdInteractiveAuthentication (OpenSSH 8.7 renamed it) and still read as the same key, as
# without-password is of prohibit-password.
_ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
_VALUE_ALIASES = {"without-password": "prohibit-password"}


def _read(root: Path, path: str) -> str | None:
    """The text of ``root/path``; None when it is not there. PermissionError is raised: a file
    this user may not read is unknown, not missing (AL2023 keeps sshd_config 0600)."""
    try:
        return (root / path.lstrip("/")).read_text(errors="replace")
    except PermissionError:
        raise
    except OSError:
        return None


def _first_difference(have: str, want: str) -> str:
    """Where the installed text first differs from the rendered, for a person."""
    pairs = zip(have.splitlines(), want.splitlines(), strict=False)
    for n, (a, b) in enumerate(pairs, 1):
        if a != b:
            return f"line {n} is {a.strip()!r}, the profile's {b.strip()!r}"
    return "the installed file is longer or shorter than the profile's"


FIREWALL_EXPECTED = f"table {TABLE} from {FIREWALL_RULESET} as the profile renders it, loaded"
SSHD_EXPECTED = f"{SSHD_DROPIN} as rendered, included by {SSHD_CONFIG} before any other value"


def _check_firewall(root: Path, profile: TuningProfile) -> Check:
    expected = FIREWALL_EXPECTED
    installed = _read(root, FIREWALL_RULESET)
    if installed is None:
        return Check("firewall", FAIL, expected, "missing", f"no {FIREWALL_RULESET} (ami apply)")
    if installed != firewall_ruleset(profile):
        return Check(
            "firewall",
            FAIL,
            expected,
            "differs from the profile",
            f"{FIREWALL_RULESET}, {_first_difference(installed, firewall_ruleset(profile))}",
        )
    loaded = _read(root, LOADED_RULESET)
    if loaded is None:
        return Check(
            "firewall",
            FAIL,
            expected,
            "installed, not loaded",
            f"no {LOADED_RULESET}: {FIREWALL_UNIT_NAME} has not loaded it since boot "
            f"(systemctl status {FIREWALL_UNIT_NAME})",
        )
    if loaded != installed:
        return Check(
            "firewall",
            FAIL,
            expected,
            "installed, an older ruleset loaded",
            f"the loaded ruleset is not the installed one: systemctl reload {FIREWALL_UNIT_NAME}",
        )
    boot = _read(root, BOOT_ID)
    if boot is None:  # /run is a tmpfs on every host OS: a record there is from this boot
        return Check(
            "firewall",
            PASS,
            expected,
            "installed and loaded",
            f"no {BOOT_ID}; {FIREWALL_STATE} is cleared at boot",
        )
    if (_read(root, LOADED_BOOT_ID) or "").strip() != boot.strip():
        return Check(
            "firewall",
            FAIL,
            expected,
            "installed, loaded at an earlier boot",
            f"{LOADED_BOOT_ID} is not this boot's id ({BOOT_ID})",
        )
    return Check("firewall", PASS, expected, "installed and loaded", f"boot {boot.strip()}")


def _directives(text: str) -> list[tuple[str, str]]:
    """(lower-case key, value) of each sshd_config line, up to the first Match block: what
    follows a Match applies only to the connections it matches."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\s*=\s*|\s+", line, maxsplit=1)  # "Key value" or "Key=value"
        key, value = parts[0].lower(), parts[1] if len(parts) > 1 else ""
        if key == "match":
            break
        found.append((_ALIASES.get(key, key), value.strip()))
    return found


def _includes(root: Path, value: str) -> list[str]:
    """The files one Include line names, in the order sshd reads them (each glob sorted)."""
    paths = []
    for pattern in value.split():
        pattern = pattern.strip("\"'")
        if not pattern.startswith("/"):
            pattern = posixpath.join(posixpath.dirname(SSHD_CONFIG), pattern)
        parent, name = posixpath.split(pattern)
        try:
            entries = sorted(p.name for p in (root / parent.lstrip("/")).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        paths += [posixpath.join(parent, e) for e in entries if fnmatch.fnmatch(e, name)]
    return paths


def _earlier_values(root: Path, main: str, profile: TuningProfile) -> tuple[bool, list[str]]:
    """Whether sshd_config includes the drop-in, and each of its keys that sshd reads first
    with another value from elsewhere (sshd keeps the first value of a key)."""
    wanted = {key.lower(): (key, value) for key, value in sshd_settings(profile).items()}
    conflicts: list[str] = []

    def seen(path: str, key: str, value: str) -> None:
        if key in wanted:
            name, ours = wanted.pop(key)
            if _VALUE_ALIASES.get(value.lower(), value.lower()) != ours.lower():
                conflicts.append(f"{path} sets {name} {value} first")

    for key, value in _directives(main):
        if key != "include":
            seen(SSHD_CONFIG, key, value)
            continue
        for path in _includes(root, value):
            if path == SSHD_DROPIN:
                return True, conflicts
            for inner_key, inner_value in _directives(_read(root, path) or ""):
                seen(path, inner_key, inner_value)
    return False, conflicts


def _check_sshd(root: Path, profile: TuningProfile) -> Check:
    expected = SSHD_EXPECTED
    main = _read(root, SSHD_CONFIG)
    if main is None and not (root / SSHD.lstrip("/")).exists():
        return Check("sshd", NA, expected, "", "sshd is not installed: nothing serves SSH")
    dropin = _read(root, SSHD_DROPIN)
    if dropin is None:
        return Check("sshd", FAIL, expected, "missing", f"no {SSHD_DROPIN} (ami apply)")
    if dropin != sshd_dropin(profile):
        detail = f"{SSHD_DROPIN}, {_first_difference(dropin, sshd_dropin(profile))}"
        return Check("sshd", FAIL, expected, "differs from the profile", detail)
    if main is None:
        return Check("sshd", FAIL, expected, "no sshd_config", f"no {SSHD_CONFIG} to include it")
    included, conflicts = _earlier_values(root, main, profile)
    if not included:
        return Check(
            "sshd",
            FAIL,
            expected,
            "drop-in not included",
            f"{SSHD_CONFIG} has no Include of sshd_config.d/*.conf before any Match block: sshd"
            " ignores the drop-in",
        )
    if conflicts:
        return Check("sshd", FAIL, expected, "; ".join(conflicts), "sshd keeps the first value")
    settings = ", ".join(f"{k} {v}" for k, v in sshd_settings(profile).items())
    return Check("sshd", PASS, expected, settings)


def _unless_unreadable(
    name: str,
    expected: str,
    check: Callable[[Path, TuningProfile], Check],
    root: Path,
    profile: TuningProfile,
) -> Check:
    try:
        return check(root, profile)
    except PermissionError as exc:
        return Check(
            name,
            NA,
            expected,
            "unreadable",
            f"{exc.filename}: not readable by this user (check-host as root reads it)",
        )


def security_checks(root: Path, profile: TuningProfile) -> list[Check]:
    """check-host's checks of the firewall and sshd of the host under ``root``."""
    root = Path(root)
    return [
        _unless_unreadable("firewall", FIREWALL_EXPECTED, _check_firewall, root, profile),
        _unless_unreadable("sshd", SSHD_EXPECTED, _check_sshd, root, profile),
    ]
