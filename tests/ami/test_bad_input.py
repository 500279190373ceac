"""`python -m ami`: every bad input is one line on stderr and exit status 2, with no traceback
and nothing written under --root; a write that fails all the same leaves --root as it was."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ami import apply as ami_apply
from ami import render as r
from ami.__main__ import main
from contracts.profile import TuningProfile
from tests.support.paths import REPO

IS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """A relative --root that slipped through would land in a scratch directory, not the repo."""
    monkeypatch.chdir(tmp_path)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for a directory)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def one_line_exit_2(argv: list[str], capsys, *words: str) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith("python -m ami"), err
    for word in words:
        assert word in err, err
    return err


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ami", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )


# ------------------------------------------------------------------------------ the profile

PROFILES = {
    "binary": (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "not UTF-8 text (byte 0x"),
    "latin-1": ("nic = 'éth0'\n".encode("latin-1"), "not UTF-8 text"),
    "not-toml": (b"this is not toml\n", "not valid TOML"),
    "deep": (b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deep"),
    "huge-number": (b"vcpus = " + b"9" * 5000, "not valid TOML here"),
    "not-a-profile": (b"colour = 1\n", "unknown key colour"),
    "huge-cpulist": (b'isolated = "0-99999999999"\n', "use a cpulist"),
    "world-open": (b'ssh_cidrs = ["0.0.0.0/1", "128.0.0.0/1"]\n', "whole IPv4 internet"),
    "newline-key": (b'"a\\nb" = 1\n', "unknown key a\\nb"),
    "too-big": (b"#" * (2 << 20), "more than 1048576 bytes"),
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_bad_profile_file(tmp_path, capsys, name):
    content, words = PROFILES[name]
    profile = tmp_path / "profile.toml"
    profile.write_bytes(content)
    root = tmp_path / "root"
    one_line_exit_2(["apply", "--root", str(root), "--profile", str(profile)], capsys, words)
    assert not root.exists()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "no such profile file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.symlink_to("/dev/zero"), "not a file (a device"),  # never read at all
    ],
    ids=["missing", "directory", "device"],
)
def test_a_profile_that_is_no_file(tmp_path, capsys, make, words):
    profile = tmp_path / "profile.toml"
    make(profile)
    root = tmp_path / "root"
    one_line_exit_2(["apply", "--root", str(root), "--profile", str(profile)], capsys, words)
    assert not root.exists()


def test_an_unreadable_profile(tmp_path, capsys, monkeypatch):
    profile = tmp_path / "profile.toml"
    profile.write_text("vcpus = 4\n")
    if IS_ROOT:  # root reads any file: make the read fail as it would for another user

        def denied(self, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

        monkeypatch.setattr(Path, "open", denied)
    else:
        profile.chmod(0)
    root = tmp_path / "root"
    one_line_exit_2(
        ["apply", "--root", str(root), "--profile", str(profile)],
        capsys,
        f"{profile}: cannot read the profile (Permission denied)",
    )
    assert not root.exists()


def test_a_binary_profile_through_the_command(tmp_path):
    """The same, as a process: no traceback anywhere, nothing on stdout."""
    profile = tmp_path / "profile.toml"
    profile.write_bytes(PROFILES["binary"][0])
    root = tmp_path / "root"
    result = run("apply", "--root", str(root), "--profile", str(profile))
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not root.exists()


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["apply", "--root", "{root}", "--vcpus", "0"], "--vcpus: '0': use a whole number from 2"),
        (["apply", "--root", "{root}", "--vcpus", "1"], "from 2 to 1024"),
        (["apply", "--root", "{root}", "--vcpus", "99999999999999999999"], "from 2 to 1024"),
        (["apply", "--root", "{root}", "--vcpus", "\u0664"], "use a whole number"),
        (["apply", "--root", "{root}", "--os", "centos"], "invalid choice: 'centos'"),
        (["apply"], "required: --root"),
        (["apply", "--root", ""], "argument --root: '': give the directory"),
        (["install", "--root", "{root}"], "invalid choice: 'install'"),
        ([], "required: command"),
        (["render", "--vcpus", "4", "/etc/nope"], "'/etc/nope' is not rendered; one of:"),
        (["render", "--vcpus", "4", "/etc/a\nb"], "'/etc/a\\nb' is not rendered"),
    ],
)
def test_bad_arguments(tmp_path, capsys, argv, words):
    root = tmp_path / "root"
    one_line_exit_2([a.format(root=root) for a in argv], capsys, words)
    assert not root.exists()


def test_bad_arguments_through_the_command(tmp_path):
    """argparse's usage text would be more lines: as a process, it is still one."""
    for argv in (["apply", "--root", str(tmp_path / "root"), "--vcpus", "0"], ["bogus"]):
        result = run(*argv)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stdout == ""
        assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert not (tmp_path / "root").exists()


# ------------------------------------------------------------------------------ the root


def test_a_root_that_is_a_file(tmp_path, capsys):
    root = tmp_path / "root"
    root.write_text("not a directory\n")
    one_line_exit_2(["apply", "--root", str(root), "--vcpus", "4"], capsys, "not a directory")
    assert root.read_text() == "not a directory\n"


def test_a_file_where_a_directory_should_be(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/lowlat").write_text("a file\n")
    before = snapshot(root)
    one_line_exit_2(["apply", "--root", str(root), "--vcpus", "4"], capsys, "etc/lowlat")
    assert snapshot(root) == before


def test_a_directory_where_a_file_should_be(tmp_path, capsys):
    root = tmp_path / "root"
    (root / r.KERNEL_ARGS.lstrip("/")).mkdir(parents=True)
    before = snapshot(root)
    one_line_exit_2(
        ["apply", "--root", str(root), "--vcpus", "4"], capsys, f"a directory where {r.KERNEL_ARGS}"
    )
    assert snapshot(root) == before


def test_a_root_that_is_not_writable(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    if IS_ROOT:  # root may write anywhere: answer as the kernel would for another user
        real = os.access
        monkeypatch.setattr(
            ami_apply.os, "access", lambda p, mode: False if Path(p) == root else real(p, mode)
        )
    else:
        root.chmod(0o555)
    one_line_exit_2(["apply", "--root", str(root), "--vcpus", "4"], capsys, f"{root}: not writable")
    root.chmod(0o755)
    assert snapshot(root) == {}


def test_a_full_disk_is_found_before_writing(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setattr(
        ami_apply.shutil, "disk_usage", lambda path: type("U", (), {"free": 4096})()
    )
    one_line_exit_2(["apply", "--root", str(root), "--vcpus", "4"], capsys, "4096 bytes free")
    assert not root.exists()


@pytest.mark.parametrize("installed", [False, True])
def test_a_write_that_fails_midway_leaves_the_root_as_it_was(
    tmp_path, capsys, monkeypatch, installed
):
    root = tmp_path / "root"
    if installed:  # an older tuning is there, one file of it changed since
        assert main(["apply", "--root", str(root), "--vcpus", "8"]) == 0
        (root / r.KERNEL_ARGS.lstrip("/")).write_text("edited\n")
        capsys.readouterr()
    before = snapshot(root)
    real, calls = ami_apply._stage, []
    fail_at = 2 if installed else 5  # the older tuning differs in 3 files, a fresh root in all

    def stage(dest, text, mode):
        calls.append(dest)
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))
        return real(dest, text, mode)

    monkeypatch.setattr(ami_apply, "_stage", stage)
    assert main(["apply", "--root", str(root), "--vcpus", "4"]) == 1
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and "No space left on device" in err, err
    assert "nothing was changed" in err and out == ""
    assert len(calls) == fail_at
    assert snapshot(root) == before  # no file, no temporary, no directory made for nothing


def test_a_rename_that_fails_says_how_far_it_got(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    real, calls = ami_apply.os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        real(src, dst)

    monkeypatch.setattr(ami_apply.os, "replace", replace)
    assert main(["apply", "--root", str(root), "--vcpus", "4"]) == 1
    err = capsys.readouterr().err
    n = len(r.render(TuningProfile.for_vcpus(4)))
    assert f"Input/output error; 1 of {n} changed files were already in place" in err, err
    assert len(err.splitlines()) == 1
    assert not [p for p in root.rglob(".*")]  # no temporary left behind


def test_a_good_run_still_writes_everything(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["apply", "--root", str(root), "--vcpus", "4"]) == 0
    files = r.render(TuningProfile.for_vcpus(4))
    assert {p for p, c in snapshot(root).items() if c is not None} == {p.lstrip("/") for p in files}
