"""Where a release lives on a host, and the append-only record of what was live when.

    <install_prefix>/releases/<UTC %Y%m%dT%H%M%SZ>-<sha12>/   one release: wheel, wheelhouse, venv
    <install_prefix>/releases/image/                         the release the image installed
    <install_prefix>/current -> releases/<name>              swapped atomically (ln -s + mv -T)
    <install_prefix>/releases.log                            one line per successful change
    <install_prefix>/bench/last.json                         the last `fab bench` result

``install_prefix`` comes from the host's installed tuning profile (/etc/lowlat/profile.toml,
written by the image) and every path is under ``Settings.root`` ("/" on a real host, a
throwaway directory in the tests).

The record holds one line per successful deploy or rollback, never rewritten:
``<UTC ISO time> <action> <release> <sha> <operator>``, with action ``deploy``, ``rollback`` or
``adopt`` (a release that was live before the first recorded deploy, e.g. the image's).
"Previous" always means the release deployed before the current one (deploy and adopt lines,
in order), so two rollbacks in a row walk back two releases instead of flipping between two.

Standard library only: ``fab --list`` imports this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RELEASE_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{12})$")
IMAGE_RELEASE = "image"  # ami/imagebuilder.py installs the first release here
DEPLOY, ROLLBACK, ADOPT = "deploy", "rollback", "adopt"
ACTIONS = (DEPLOY, ROLLBACK, ADOPT)


@dataclass(frozen=True)
class Layout:
    """The release paths on one host, already under the settings' root."""

    prefix: str  # e.g. /opt/lowlat, or /tmp/x/opt/lowlat in the tests

    @property
    def releases(self) -> str:
        return f"{self.prefix}/releases"

    @property
    def current(self) -> str:
        return f"{self.prefix}/current"

    @property
    def record(self) -> str:
        return f"{self.prefix}/releases.log"

    @property
    def bench_last(self) -> str:
        return f"{self.prefix}/bench/last.json"

    def release(self, name: str) -> str:
        return f"{self.releases}/{name}"

    def name_of(self, target: str | None) -> str | None:
        """The release name a ``current`` link target points at (absolute or relative)."""
        if not target:
            return None
        return target.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Record:
    """One line of releases.log."""

    time: str
    action: str
    release: str
    sha: str
    operator: str

    def line(self) -> str:
        return f"{self.time} {self.action} {self.release} {self.sha} {self.operator}"


def parse_record(text: str) -> list[Record]:
    """Every well-formed line of releases.log, oldest first; anything else is skipped (a person
    may have annotated the file; the record is for people as much as for rollback)."""
    records = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[1] in ACTIONS:
            records.append(Record(*parts))
    return records


def deploy_order(records: list[Record]) -> list[str]:
    """Releases in the order they were first made live (deploy and adopt lines)."""
    order: list[str] = []
    for r in records:
        if r.action in (DEPLOY, ADOPT) and r.release not in order:
            order.append(r.release)
    return order


def previous_release(records: list[Record], current: str | None, existing: set[str]) -> str | None:
    """The release deployed before ``current`` that still exists on the host, or None."""
    order = deploy_order(records)
    earlier = order[: order.index(current)] if current in order else order
    for name in reversed(earlier):
        if name != current and name in existing:
            return name
    return None


def release_age_key(name: str) -> tuple[int, str]:
    """Sort key, oldest first: the image release before every timestamped one."""
    return (1, name) if RELEASE_NAME.match(name) else (0, name)


def to_prune(existing: set[str], keep: int, protected: set[str]) -> list[str]:
    """Releases beyond the newest ``keep``, never one in ``protected`` (current, previous)."""
    newest_first = sorted(existing, key=release_age_key, reverse=True)
    kept = set(newest_first[:keep]) | protected
    return [name for name in newest_first if name not in kept]
