"""Every class of bad input and hostile environment found when lowlat was tried as a new user
would, through the real command line: one line on stderr (what, where, what would be right),
exit 2 for input (1 when the machine cannot do it now), no traceback, nothing left on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "service.cli"]


def run(*args, env=None, timeout=120):
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def refused(result, code: int, *words: str) -> str:
    """The result is exactly one line on stderr naming ``words``, with exit ``code``."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / f"c-{uuid.uuid4().hex[:6]}.toml"
    prefix = f"lltest-cli-{uuid.uuid4().hex[:8]}"
    path.write_text(f'[service]\nshm_prefix = "{prefix}"\n{text}')
    return path


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only), mounted read-write; ``remount_ro`` makes it read-only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_binary_model_file(tmp_path):
    model = tmp_path / "model.toml"
    model.write_bytes(bytes(range(256)))
    result = run("run", "--config", config(tmp_path, f'[engine]\nmodel_file = "{model}"\n'))
    refused(result, 2, str(model), "not UTF-8")


@pytest.mark.parametrize("prefix", ["a/b", "../x", "", "x.y", "a b", "é"])
def test_an_shm_prefix_that_is_not_a_plain_name(tmp_path, prefix):
    path = tmp_path / "c.toml"
    path.write_text(f'[service]\nshm_prefix = "{prefix}"\n')
    refused(run("run", "--config", path), 2, "shm_prefix", "letters, digits")


def test_a_replay_file_that_cannot_be_read(tmp_path):
    # /proc/self/mem opens but every read at offset 0 fails (EIO): as root, the one file that
    # reliably cannot be read whatever the permissions say
    text = '[feed]\nsource = "replay"\nreplay_file = "/proc/self/mem"\n'
    refused(run("run", "--config", config(tmp_path, text)), 2, "/proc/self/mem", "cannot read")


def test_an_unwritable_numba_cache_still_serves_the_small_commands(tmp_path):
    """No locator for numba's cache must not stop kill-switch, top or run: they compile in
    memory and say so once."""
    env = {"NUMBA_CACHE_DIR": "/etc/passwd/numba"}  # under a file: cannot exist
    result = run("kill-switch", "status", "--config", config(tmp_path), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no locator" not in result.stderr
    assert "numba cache /etc/passwd/numba is not writable" in result.stderr
    assert "no such segment" in result.stderr


def test_shm_dir_too_small_for_the_segments(tmp_path, tmpfs):
    line = refused(
        run("run", "--duration", "1", "--config", config(tmp_path, f'shm_dir = "{tmpfs}"\n')),
        2,
        str(tmpfs),
        "MiB free",
    )
    assert "need" in line
    assert list(tmpfs.iterdir()) == []  # nothing half-made


def test_run_json_into_a_read_only_directory_is_refused_before_the_run(tmp_path, tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = run("run", "--duration", "30", "--json", tmpfs / "out.json")
    refused(result, 2, "--json", "not writable")


@pytest.mark.parametrize("target", ["dir", "missing"])
def test_outputs_are_checked_before_the_work(tmp_path, target):
    out = tmp_path if target == "dir" else tmp_path / "no" / "such" / "x.json"
    why = "is a directory" if target == "dir" else "does not exist"
    refused(run("run", "--duration", "30", "--json", out), 2, why)
    refused(run("bench", "--json", out), 2, why)
    refused(run("record", "--out", out, "--messages", "10"), 2, why)


def test_record_larger_than_the_free_space_is_refused_before_writing(tmpfs):
    out = tmpfs / "day.lmd"
    refused(run("record", "--out", out, "--messages", "100000"), 2, "--out", "MiB free")
    assert list(tmpfs.iterdir()) == []


def test_disk_full_while_recording_leaves_no_partial_file(tmpfs):
    """The space check passes, then the disk fills (another writer): a clear error, and the
    temporary file is gone; the old recording under that name is untouched."""
    from service.config import Config
    from service.runtime.recording import record_simulated

    out = tmpfs / "day.lmd"
    out.write_bytes(b"previous")
    with pytest.raises(OSError, match="No space left"):
        record_simulated(out, Config().feed, 100_000)
    assert sorted(p.name for p in tmpfs.iterdir()) == ["day.lmd"]
    assert out.read_bytes() == b"previous"


def test_a_busy_telemetry_port_is_refused_before_the_run(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = f"[telemetry]\nport = {port}\n"
        result = run("run", "--telemetry", "--duration", "30", "--config", config(tmp_path, text))
    refused(result, 1, f"127.0.0.1:{port}", "cannot listen")


def test_clean_removes_stale_segments_and_refuses_live_ones(tmp_path):
    from service.runtime.shm import Segment

    path = config(tmp_path, f'shm_dir = "{tmp_path}"\n')
    prefix = path.read_text().split('"')[1]
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from service.runtime.shm import Segment; import sys; "
            f"Segment.create(sys.argv[1], '{prefix}.warmup-9.stats', 4096, 2)",
            str(tmp_path),
        ],
        check=True,
    )
    assert child.returncode == 0
    live = Segment.create(tmp_path, f"{prefix}.control", 4096, 3)  # this process: alive
    dry = run("clean", "--dry-run", "--config", path)
    assert dry.returncode == 1  # a live segment was refused
    assert "would remove" in dry.stdout and (tmp_path / f"{prefix}.warmup-9.stats").exists()
    done = run("clean", "--config", path, "--json")
    assert done.returncode == 1
    assert not (tmp_path / f"{prefix}.warmup-9.stats").exists()
    assert (tmp_path / f"{prefix}.control").exists()
    live.unlink()
    assert run("clean", "--config", path).returncode == 0
