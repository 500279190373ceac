"""``fab deploy`` to a host whose disk is too small, or fills up while the release goes up.

For real: the real ``fab`` CLI over the loopback sshd into a throwaway root whose install
prefix (``/opt/lowlat``: ``releases/``, ``current``, ``releases.log``) is a small tmpfs. A
previous release is live there (``current`` points at it). Three ways to run out of space:

- too small from the start: refused before anything is uploaded (``df`` against what the
  release needs);
- the disk fills up while the tar is uploading (a thread of the test fills the tmpfs the moment
  the upload's file appears);
- the disk fills up after the upload, while the tar is unpacked.

Each time: one FAILED line that says there is no room, where, and how much is needed; exit
status 1 (the host failed, not the input); nothing of the new release left on the host (no
partial tar, no half-unpacked directory, hidden or not); ``current`` still the previous release,
which is untouched, and ``releases.log`` unchanged. Nothing is started: no engine runs here.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import build as build_ops
from ops import release as release_ops
from ops.hosts import Settings
from ops.remote import PYTHON_PROBE, HostFacts
from tests.support.fabtest import MIB, DiskFiller, make_host, output, tmpfs

pytestmark = pytest.mark.slow

LOOPBACK = "lowlat-loopback"
PREVIOUS = "20260101T000000Z-aaaaaaaaaaaa"
RECORD = f"2026-01-01T00:00:00+00:00 deploy {PREVIOUS} aaaaaaaaaaaa tester\n"
READY_TIMEOUT_S = 240  # make_host's, which goes into the tar's warm.toml


@pytest.fixture(scope="module")
def wheelhouse_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("wheelhouse")


@dataclass(frozen=True)
class Sizes:
    tar: int  # the release's tar, as the deploy uploads it
    room: int  # what the deploy asks the host's disk for (release._Payload.room)


@pytest.fixture(scope="module")
def sizes(wheelhouse_cache, tmp_path_factory) -> Sizes:
    """The release of HEAD as the deploy builds it for this machine (the "host"), built into
    the module's wheelhouse cache, which the deploys then reuse."""
    python = subprocess.run(
        ["python3.11", "-c", PYTHON_PROBE], capture_output=True, text=True, check=True
    ).stdout.split()  # lowlat.python "auto" on the test profile's OS (AL2023): python3.11
    arch = os.uname().machine
    major, minor = (int(x) for x in python[3].split(".")[:2])
    facts = HostFacts(arch, f"{python[0]}.{python[1]}", (major, minor))
    settings = Settings.from_config({"lowlat": {"wheelhouse_cache": str(wheelhouse_cache)}})
    b = build_ops.build("HEAD", facts, settings)
    tar = build_ops.payload_tar(b, tmp_path_factory.mktemp("payload"), READY_TIMEOUT_S)
    size = tar.stat().st_size
    return Sizes(size, size + max(size, release_ops.installed_bytes(b)))


@pytest.fixture
def host(ssh_server, tmp_path, wheelhouse_cache):
    h = make_host(tmp_path / "host", ssh_server.ssh_config, wheelhouse_cache)
    yield h
    h.stop()


def live_previous_release(host) -> Path:
    """A release that is live: its directory, ``current`` pointing at it, its record."""
    release = host.prefix / "releases" / PREVIOUS
    (release / "venv/bin").mkdir(parents=True)
    (release / "marker").write_text("the previous release\n")
    host.current.symlink_to(release)
    (host.prefix / "releases.log").write_text(RECORD)
    return release


def assert_nothing_of_the_new_release(host, result, *fragments: str) -> str:
    out = output(result)
    assert result.returncode == 1, out  # the host failed; the input was fine
    assert "Traceback" not in out, out
    failed = [line for line in out.splitlines() if "deploy: FAILED" in line]
    assert len(failed) == 1, out
    for fragment in ("no room for the release on the host", "MiB free on", "nothing changed",
                     f"still {PREVIOUS}", *fragments):  # fmt: skip
        assert fragment in failed[0], (fragment, out)
    # nothing of the new release: no partial tar, no half-unpacked directory (hidden or not)
    assert sorted(os.listdir(host.prefix / "releases")) == [PREVIOUS], out
    assert os.readlink(host.current) == str(host.prefix / "releases" / PREVIOUS)
    assert (host.prefix / "releases" / PREVIOUS / "marker").read_text() == "the previous release\n"
    assert (host.prefix / "releases.log").read_text() == RECORD
    assert not (host.root / "run/lowlat-test-supervisor/calls.log").exists()  # nothing started
    return failed[0]


def upload_file(host) -> Path | None:
    """The tar being uploaded, once it exists."""
    found = list((host.prefix / "releases").glob(".*.upload/release.tar.part"))
    return found[0] if found else None


def test_a_host_too_small_for_the_release_is_refused_before_uploading(host, sizes):
    with tmpfs(host.prefix, 64 * MIB):
        live_previous_release(host)
        result = host.fab("deploy", "--host", LOOPBACK)
        line = assert_nothing_of_the_new_release(host, result)
        assert f"it needs {sizes.room / MIB:,.0f} MiB" in line, line
        assert "filled up" not in line  # refused by the check before the upload


@pytest.mark.parametrize("when", ["uploading", "unpacking"])
def test_a_disk_that_fills_up_during_the_deploy(host, sizes, when):
    # room for the release and a little more: the check before the upload passes
    with tmpfs(host.prefix, sizes.room + 32 * MIB) as mount:
        live_previous_release(host)

        def leave() -> int:
            if when == "uploading":
                return 0  # full: the upload's next write fails
            part = upload_file(host)  # what the upload still needs, and 4 MiB: the unpack fails
            try:
                sent = part.stat().st_size if part else sizes.tar
            except FileNotFoundError:  # renamed: it is all there
                sent = sizes.tar
            return sizes.tar - sent + 4 * MIB

        filler = DiskFiller(mount, lambda: upload_file(host) is not None, leave)
        filler.start()
        try:
            result = host.fab("deploy", "--host", LOOPBACK)
        finally:
            filler.stop()
        assert filler.filled.is_set(), output(result)
        assert_nothing_of_the_new_release(host, result, f"(it filled up while {when})")
