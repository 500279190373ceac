"""The release tasks given bad input: each one clear line, a non-zero exit, nothing half-deployed.

Bad input, refused before any host is reached, is ONE line on stderr (``fab TASK: what, where,
what would be right``) and exit status 2, through the one handler every task goes through
(fabfile.py, ``ops.hosts.refusing_bad_input``): a Fabric config setting (``lowlat:``, checked
against ``ops.hosts.SETTINGS``), a ``--config`` file that is not there, a malformed ``--host``,
``--hosts`` or ``--stack``, a bad ``--ref`` or ``--since``, an output directory that cannot be
written (``fab bench --out``, ``lowlat.wheelhouse_cache``). A host that fails is its own FAILED
line and exit status 1: unknown host, refused SSH and a wrong key (ops/hosts.py); a host
without the configured Python or not a lowlat image (ops/remote.py); a rollback with nothing to
go back to (ops/release.py). None of these starts the service, and none gets as far as
uploading anything: after each, the host's install prefix holds no release and no ``current``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.fabtest import MIB, fill, make_host, output, run_fab, tmpfs
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


def refused(result, line: str) -> None:
    """Bad input: exit status 2 and exactly ``line``, on stderr, and nothing else."""
    out = output(result)
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    assert result.stdout == "", out
    assert result.stderr.strip().splitlines() == [line], out


def refused_starting(result, task: str, start: str, *fragments: str) -> str:
    """Bad input: exit status 2 and one line ``fab TASK: START...`` with every fragment."""
    out = output(result)
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and result.stdout == "", out
    assert lines[0].startswith(f"fab {task}: {start}"), out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, out)
    return lines[0]


def untouched(host) -> None:
    """The host was not reached: no unit was asked anything, nothing deployed."""
    assert not (host.root / "run/lowlat-test-supervisor/calls.log").exists()
    nothing_deployed(host)


def set_setting(host, key: str, yaml_value: str) -> None:
    """``lowlat.<key>: <yaml_value>`` in the host's Fabric config, written as YAML text."""
    lines = [ln for ln in host.config.read_text().splitlines() if not ln.startswith(f"  {key}:")]
    host.config.write_text("\n".join([*lines, f"  {key}: {yaml_value}"]) + "\n")


def test_unknown_host(host):
    result = host.fab("deploy", "--host", "no-such-host.invalid", timeout=120)
    one_clear_line(result, "deploy", "no-such-host.invalid")
    assert result.returncode == 1  # the host failed, not the input
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
    # input: refused before any host is reached (every host of a fleet would refuse it alike)
    result = host.fab("deploy", "--host", LOOPBACK, "--ref", "no-such-ref-6f3a", timeout=120)
    refused_starting(result, "deploy", "--ref no-such-ref-6f3a: no such commit")
    untouched(host)


def test_option_like_ref(host):
    result = host.fab("deploy", "--host", LOOPBACK, "--ref=--output=/tmp/x", timeout=120)
    refused_starting(result, "deploy", "--ref '--output=/tmp/x': not a git revision")
    untouched(host)


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
    refused_starting(
        result, "status", "Fabric config lowlat.keep_releasez = 3: unknown setting; did you mean "
        "keep_releases? known: root, sudo, systemctl,"
    )  # fmt: skip
    untouched(host)


# ---------------------------------------------------------------- the lowlat: settings

SETTINGS_REFUSED = [
    # (key, as written in the YAML file, shown as, what the line says is allowed)
    ("sudo", "'no'", "'no'", "true or false, unquoted (a YAML boolean;"),
    ("sudo", '"false"', "'false'", "true or false, unquoted"),
    ("sudo", "1", "1", "true or false"),
    ("ready_timeout_s", "soon", "'soon'", "a number of seconds > 0 and <= 86400"),
    ("ready_timeout_s", ".nan", "nan", "a number of seconds > 0"),
    ("ready_timeout_s", "1.0e+400", "inf", "a number of seconds > 0"),
    ("ready_timeout_s", "1e400", "'1e400'", "a number of seconds > 0"),  # YAML: a string
    ("ready_timeout_s", "0", "0", "a number of seconds > 0"),
    ("ready_timeout_s", "true", "true", "a number of seconds"),
    ("connect_timeout_s", "-1", "-1", "a number of seconds > 0 and <= 3600"),
    ("connect_timeout_s", "[15]", "[15]", "a number of seconds"),
    ("keep_releases", "abc", "'abc'", "a whole number, at least 2"),
    ("keep_releases", "2.5", "2.5", "a whole number, at least 2"),
    ("keep_releases", "true", "true", "a whole number"),
    ("keep_releases", "1", "1", "a whole number, at least 2 (the current release and the one"),
    ("keep_releases", "1000000", "1000000", "a whole number, at least 2"),
    ("root", "relative/root", "'relative/root'", "an absolute path on the host"),
    ("root", "", "null", "an absolute path"),
    ("python", '"python3; rm -rf /"', "'python3; rm -rf /'", '"auto" (the Python of the host'),
    ("python", "3.11", "3.11", '"auto" (the Python of the host\'s OS) or an interpreter'),
    ("systemctl", '""', "''", "a command on one line"),
    ("journalctl", '"journalctl\\n-f"', "'journalctl\\n-f'", "a command on one line"),
    ("wheelhouse_cache", "{a: 1}", "{'a': 1}", "a local directory path"),
]


@pytest.mark.parametrize(("key", "written", "shown", "allowed"), SETTINGS_REFUSED)
def test_each_setting_is_type_checked(host, key, written, shown, allowed):
    set_setting(host, key, written)
    result = host.fab("status", "--host", LOOPBACK, timeout=120)
    refused_starting(result, "status", f"Fabric config lowlat.{key} = {shown}: {allowed}")
    untouched(host)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("lowlat: 5\n", "5"), ("lowlat: [root]\n", "['root']"), ("lowlat:\n", "null"),
     ("lowlat: 'root: /'\n", "'root: /'")],
)  # fmt: skip
def test_the_lowlat_section_must_be_a_mapping(host, text, shown):
    host.config.write_text(text)
    result = host.fab("status", "--host", LOOPBACK, timeout=120)
    refused_starting(
        result, "status", f"Fabric config lowlat = {shown}: a mapping of settings", "known: root"
    )
    untouched(host)


def test_settings_not_indented_under_lowlat(host):
    # "lowlat:" then unindented keys: YAML makes them top-level keys, which Fabric ignores;
    # running with the defaults instead (root "/", sudo) would act on the real system
    host.config.write_text(f"lowlat:\nroot: {host.root}\nkeep_releases: 3\n")
    result = host.fab("status", "--host", LOOPBACK, timeout=120)
    refused(
        result,
        f"fab status: Fabric config root = '{host.root}': a lowlat setting outside the lowlat: "
        "section; indent it under lowlat:",
    )


def test_a_config_file_that_is_not_there(host, tmp_path):
    missing = tmp_path / "fabirc.yaml"  # a typo: invoke would go on with the defaults
    result = run_fab("--config", str(missing), "-S", str(host.ssh_config), "status", "--host",
                     LOOPBACK, timeout=120)  # fmt: skip
    refused(
        result,
        f"fab status: --config {missing}: no such file: give the path of a Fabric config file "
        "(.yaml, .yml, .json or .py)",
    )


def fab_tasks() -> list[str]:
    import fabfile

    return sorted(fabfile.ns.task_names)


@pytest.mark.parametrize("task", fab_tasks())
def test_every_task_refuses_bad_input_through_the_one_handler(host, task):
    set_setting(host, "sudo", "'no'")
    result = host.fab(task, "--host", LOOPBACK, timeout=120)
    refused(
        result,
        f"fab {task}: Fabric config lowlat.sudo = 'no': true or false, unquoted (a YAML boolean; "
        "a quoted 'no' is a string)",
    )
    untouched(host)


def test_a_failing_host_is_exit_1_and_bad_input_exit_2(host):
    assert host.fab("status", "--host", "no-such-host.invalid", timeout=120).returncode == 1
    assert host.fab("status", "--host", "no such host", timeout=120).returncode == 2


# ----------------------------------------------------------------------- the targets


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--host", "a b"), "--host 'a b': not a host; use a host name, address or "
         "~/.ssh/config alias, optionally user@host:port"),
        (("--host", "-oProxyCommand=sh"), "--host '-oProxyCommand=sh': not a host;"),
        (("--host", "h:99999"), "--host 'h:99999': not a host;"),
        (("--host", "a,b"), "--host 'a,b': one host; give several with --hosts a,b,c"),
        (("--hosts", "a,,b"), "--hosts 'a,,b': use host names separated by commas, e.g. a,b,c"),
        (("--hosts", "a, b c"), "--hosts 'a, b c': 'b c' is not a host;"),
        (("--stack", "my stack"), "--stack 'my stack': not a CloudFormation stack name"),
        (("--host", "a", "--hosts", "b"), "--host and --hosts together: give only one of"),
        ((), "give one of --host H, --hosts a,b,c or --stack NAME"),
    ],
)  # fmt: skip
def test_bad_targets(host, args, line):
    result = host.fab("status", *args, timeout=120)
    refused_starting(result, "status", line)
    untouched(host)


# ------------------------------------------------------------- outputs, before the work


def bench_out(host, out: Path | str) -> subprocess.CompletedProcess:
    # a reachable host: only the check before connecting keeps the bench from starting
    return host.fab("bench", "--host", LOOPBACK, "--duration", "1", "--out", str(out),
                    timeout=120)  # fmt: skip


def test_bench_out_that_is_a_file(host, tmp_path):
    out = tmp_path / "report.txt"
    out.write_text("not a directory\n")
    refused(
        bench_out(host, out), f"fab bench: --out {out}: it is not a directory; give a directory"
    )
    untouched(host)
    assert out.read_text() == "not a directory\n"


def test_bench_out_under_a_file(host, tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "reports"
    refused(
        bench_out(host, out),
        f"fab bench: --out {out}: {tmp_path / 'file'} is not a directory; give a directory",
    )
    untouched(host)


def test_bench_out_on_a_read_only_file_system(host, tmp_path):
    with tmpfs(tmp_path / "ro", MIB, read_only=True) as mount:
        result = bench_out(host, mount / "reports")
    refused(
        result,
        f"fab bench: --out {mount / 'reports'}: cannot write in {mount} (Read-only file system); "
        "give a directory you can write to",
    )
    untouched(host)


def test_bench_out_on_a_full_disk(host, tmp_path):
    with tmpfs(tmp_path / "small", 8 * MIB) as mount:
        fill(mount / "filler", lambda: 0)
        result = bench_out(host, mount / "reports")
        assert not (mount / "reports").exists()  # the check creates nothing
    line = refused_starting(result, "bench", f"--out {mount / 'reports'}: ", "free on", "needed")
    assert line.endswith("16 MiB needed; free some space or give another directory"), line
    untouched(host)


def test_deploy_with_a_wheelhouse_cache_it_cannot_write(host, tmp_path):
    (tmp_path / "file").write_text("")
    set_setting(host, "wheelhouse_cache", str(tmp_path / "file" / "wheelhouse"))
    result = host.fab("deploy", "--host", LOOPBACK, timeout=120)
    refused(
        result,
        f"fab deploy: lowlat.wheelhouse_cache {tmp_path / 'file' / 'wheelhouse'}: "
        f"{tmp_path / 'file'} is not a directory; give a directory",
    )
    untouched(host)
