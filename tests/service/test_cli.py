"""The command line as people meet it: help, config printing, clear errors for mistakes."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from service.config import from_dict, load

CLI = [sys.executable, "-m", "service.cli"]


def run(*args, timeout=120):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_help_teaches_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("run", "config", "record", "bench", "kill-switch", "examples:"):
        assert command in result.stdout
    sub = run("run", "--help")
    assert "--duration" in sub.stdout and "Exit 0" in sub.stdout


def test_config_prints_the_effective_config_as_valid_toml(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text("[feed]\nrate = 12345\n")
    result = run("config", "--config", mine)
    assert result.returncode == 0
    printed = from_dict(tomllib.loads(result.stdout), "<printed>")
    assert printed.feed.rate == 12345
    assert printed.engine == load(None).engine
    assert "# offered messages per second" in result.stdout


def test_kill_switch_without_a_running_service_says_so(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[service]\nshm_prefix = "lltest-nothing-here"\n')
    result = run("kill-switch", "on", "--config", config)
    assert result.returncode == 1
    assert "no such segment" in result.stderr and "Traceback" not in result.stderr


def test_record_into_a_missing_directory_fails_cleanly(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "md.lmd"
    result = run("record", "--out", target, "--messages", "10")
    assert result.returncode == 2  # input: the directory to write to
    assert str(target) in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()


def test_bad_numbers_on_the_command_line_are_usage_errors():
    for args in (
        ["run", "--duration", "-1"],
        ["run", "--duration", "soon"],
        ["record", "--out", "x", "--messages", "0"],
    ):
        result = run(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


def test_a_bad_model_file_is_refused_before_starting(tmp_path):
    model = tmp_path / "model.toml"
    model.write_text('kind = "logistic"\n[weights]\nmomentum = 1.0\n')
    config = tmp_path / "c.toml"
    config.write_text(f'[service]\nshm_prefix = "lltest-model"\n[engine]\nmodel_file = "{model}"\n')
    result = run("run", "--config", config, "--duration", "1")
    assert result.returncode == 2
    assert "momentum" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_shm_dir_is_a_config_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[service]\nshm_dir = "{tmp_path / "nope"}"\n')
    result = run("run", "--config", config, "--duration", "1")
    assert result.returncode == 2
    assert "[service] shm_dir" in result.stderr and "not a directory" in result.stderr
    assert "Traceback" not in result.stderr
