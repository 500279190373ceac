"""The release tasks given bad input: each one clear line, a non-zero exit, nothing half-deployed.

Unknown host, refused SSH and a wrong key are handled for every task by ops/hosts.py; a host
without the configured Python or not a lowlat image by ops/remote.py; a bad ``--ref`` by
ops/build.py; a bad ``--since`` by ops/inspect.py; a rollback with nothing to go back to by
ops/release.py. None of these starts the service, and none gets as far as uploading anything:
after each, the host's install prefix holds no release and no ``current``.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.fabtest import make_host, output, run_fab
from tests.support.net import free_port

LOOPBACK = "lowlat-loopback"


@pytest.fixture
def host(ssh_server, tmp_path):
    h = make_host(tmp_path / "host", ssh_server.ssh_config, tmp_path / "wheelhouse")
    yield h
    h.stop()


def one_clear_line(result, task: str, *fragments: str) -> str:
    """The failure line of ``task``: exactly one, containing every fragment; no traceback."""
    out = output(result)
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if f"{task}: FAILED" in line]
    assert len(lines) == 1, out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, out)
    return lines[0]


def nothing_deployed(host) -> None:
    assert not (host.prefix / "releases").exists()
    assert not host.current.is_symlink() and not host.current.exists()


def test_unknown_host(host):
    result = host.fab("deploy", "--host", "no-such-host.invalid", timeout=120)
    one_clear_line(result, "deploy", "no-such-host.invalid")
    nothing_deployed(host)


def test_refused_ssh(host, tmp_path):
    port = free_port()  # nothing listens there
    config = tmp_path / "ssh_config_refused"
    config.write_text(
        f"Host refused\n  HostName 127.0.0.1\n  Port {port}\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
    )
    result = run_fab("--config", str(host.config), "-S", str(config), "deploy", "--host",
                     "refused", timeout=120)  # fmt: skip
    one_clear_line(result, "deploy", "refused", str(port))
    nothing_deployed(host)


def test_wrong_key(host, ssh_server, tmp_path):
    config = tmp_path / "ssh_config_wrong_key"
    config.write_text(
        ssh_server.ssh_config.read_text().replace(
            str(ssh_server.user_key), str(ssh_server.wrong_key)
        )
    )
    result = run_fab("--config", str(host.config), "-S", str(config), "deploy", "--host",
                     LOOPBACK, timeout=120)  # fmt: skip
    one_clear_line(result, "deploy", "authentication failed")
    nothing_deployed(host)


def test_host_without_the_python(ssh_server, tmp_path):
    h = make_host(tmp_path / "host", ssh_server.ssh_config, tmp_path / "wh", python="python3.99")
    try:
        result = h.fab("deploy", "--host", LOOPBACK, timeout=120)
        one_clear_line(result, "deploy", "host has no python3.99", "lowlat.python")
        nothing_deployed(h)
        assert not (tmp_path / "wh").exists()  # refused before anything was built
    finally:
        h.stop()


def test_the_python_comes_from_the_host_os(host):
    """lowlat.python defaults to "auto": the Python of the OS the installed profile names
    (ami.hostos), so an Ubuntu 24.04 host is asked for python3.12, not AL2023's python3.11."""
    probe = subprocess.run(["sh", "-c", "python3.12 -c ''"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("this machine has a python3.12: the deploy would not stop at the probe")
    host.write_profile(os="ubuntu2404")
    result = host.fab("deploy", "--host", LOOPBACK, timeout=120)
    one_clear_line(result, "deploy", "host has no python3.12", "lowlat.python")
    nothing_deployed(host)


def test_bad_ref(host):
    result = host.fab("deploy", "--host", LOOPBACK, "--ref", "no-such-ref-6f3a", timeout=120)
    one_clear_line(result, "deploy", "--ref no-such-ref-6f3a", "no such commit")
    nothing_deployed(host)


def test_option_like_ref(host):
    result = host.fab("deploy", "--host", LOOPBACK, "--ref=--output=/tmp/x", timeout=120)
    one_clear_line(result, "deploy", "not a git revision")
    nothing_deployed(host)


def test_host_that_is_not_a_lowlat_image(host):
    (host.root / "etc/lowlat/profile.toml").unlink()
    result = host.fab("deploy", "--host", LOOPBACK, timeout=120)
    one_clear_line(result, "deploy", "not a lowlat image", "python -m ami apply")
    nothing_deployed(host)


def test_broken_installed_profile(host):
    (host.root / "etc/lowlat/profile.toml").write_text("vcpus = 2\nshm_dri = '/x'\n")
    result = host.fab("deploy", "--host", LOOPBACK, timeout=120)
    one_clear_line(result, "deploy", "profile.toml", "unknown key shm_dri")
    nothing_deployed(host)


@pytest.mark.parametrize("since", ["yesterdayish", "15 parsecs", "-1h; rm -rf /"])
def test_logs_bad_since(host, since):
    # a usage error: refused before any host is contacted, with exit status 2
    result = host.fab("logs", "--host", LOOPBACK, "--since", since, timeout=120)
    out = output(result)
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert out.strip().splitlines() == [
        f"fab logs: --since {since!r}: use a duration like 15m, 1h or 2d, or a time like "
        '"2026-11-21 13:00", "today"'
    ]


def test_rollback_with_nothing_recorded(host):
    result = host.fab("rollback", "--host", LOOPBACK, timeout=120)
    one_clear_line(result, "rollback", "no earlier release to roll back to")
    nothing_deployed(host)


def test_status_of_a_host_with_no_release(host):
    result = host.fab("status", "--host", LOOPBACK, timeout=120)
    out = output(result)
    assert result.returncode == 1, out
    assert "release: none" in out and "NOT ready" in out
    assert "Traceback" not in out


def test_unknown_setting_in_the_fabric_config(host):
    host.config.write_text(host.config.read_text() + "  keep_releasez: 3\n")
    result = host.fab("status", "--host", LOOPBACK, timeout=120)
    out = output(result)
    assert result.returncode == 2, out
    assert "keep_releasez" in out and "Traceback" not in out
