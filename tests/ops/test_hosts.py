"""ops.hosts: targets from flags and from a CloudFormation stack (moto server), fleets in parallel
over a real sshd on loopback, and one clear line for each way a host can be unreachable."""

from __future__ import annotations

import json
import threading

import boto3
import fabric
import pytest
from invoke import Context
from invoke.exceptions import Exit

from ops import hosts as H


@pytest.fixture()
def aws(moto_server, monkeypatch):
    moto_server.reset()
    for key, value in moto_server.env.items():
        monkeypatch.setenv(key, value)
    return moto_server


def _stack(name: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Marker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def _context(ssh_server, tmp_path, extra_hosts: tuple[str, ...] = ()) -> Context:
    """A task context whose SSH config knows the loopback server under several aliases."""
    config_text = ssh_server.ssh_config.read_text()
    settings_lines = config_text.split("\n", 1)[1]  # the block without its "Host" line
    for alias in extra_hosts:
        config_text += f"Host {alias}\n{settings_lines}"
    path = tmp_path / "ssh_config"
    path.write_text(config_text)
    return Context(config=fabric.Config(runtime_ssh_path=str(path)))


def test_stack_outputs_name_the_hosts_in_order(aws):
    _stack(
        "LowlatHosts",
        {
            "Host2InstanceId": "i-0000000000000bbbb",
            "Host2PublicDnsName": "ec2-2.compute.amazonaws.com",
            "Host1InstanceId": "i-0000000000000aaaa",
            "Host1PublicDnsName": "ec2-1.compute.amazonaws.com",
            "Host10InstanceId": "i-000000000000010aa",
            "Host10PublicDnsName": "",  # no public name: reached by instance id through SSM
            "DashboardName": "lowlat",
        },
    )
    hosts = H.stack_hosts("LowlatHosts")
    assert [h.label for h in hosts] == ["host1", "host2", "host10"]
    assert [h.address for h in hosts] == [
        "ec2-1.compute.amazonaws.com",
        "ec2-2.compute.amazonaws.com",
        "i-000000000000010aa",
    ]
    assert H.resolve_targets(None, None, "LowlatHosts") == [h.address for h in hosts]


def test_a_missing_stack_or_one_without_hosts_is_one_clear_line(aws):
    with pytest.raises(H.OpsError, match=r"^--stack NoSuchStack: .*does not exist"):
        H.stack_hosts("NoSuchStack")
    _stack("NotLowlat", {"Something": "else"})
    with pytest.raises(H.OpsError, match=r"no Host<N>InstanceId output.*TradingHostStack"):
        H.stack_hosts("NotLowlat")


def test_no_credentials_is_one_clear_line(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(H.OpsError, match=r"^--stack S: no AWS credentials"):
        H.stack_hosts("S")


@pytest.mark.parametrize(
    ("host", "hosts", "stack", "message"),
    [
        (None, None, None, "give one of --host H"),
        ("a", "b,c", None, "--host and --hosts together"),
        (None, "a,,b", None, "use host names separated by commas"),
    ],
)
def test_targets_need_exactly_one_well_formed_flag(host, hosts, stack, message):
    with pytest.raises(H.OpsError, match=message):
        H.resolve_targets(host, hosts, stack)


def test_hosts_list_keeps_order_and_drops_repeats():
    assert H.resolve_targets(None, "b, a,b", None) == ["b", "a"]


def test_settings_come_from_the_lowlat_config_section():
    config = fabric.Config(overrides={"lowlat": {"root": "/tmp/x", "sudo": False}})
    settings = H.Settings.from_config(config)
    assert settings.path("/opt/lowlat") == "/tmp/x/opt/lowlat"
    assert settings.privileged("systemctl restart x") == "systemctl restart x"
    assert H.Settings.from_config(fabric.Config()).privileged("id") == "sudo -n id"
    with pytest.raises(H.OpsError, match=r"lowlat\.roto = '/': unknown setting; did you mean root"):
        H.Settings.from_config(fabric.Config(overrides={"lowlat": {"roto": "/"}}))
    with pytest.raises(H.OpsError, match=r"lowlat\.keep_releases = 1: a whole number, at least 2"):
        H.Settings.from_config(fabric.Config(overrides={"lowlat": {"keep_releases": 1}}))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"ready_timeout_s": "soon"}, "lowlat.ready_timeout_s = 'soon': a number of seconds > 0"),
        ({"connect_timeout_s": -1}, "lowlat.connect_timeout_s = -1: a number of seconds > 0"),
        ({"connect_timeout_s": float("inf")}, "lowlat.connect_timeout_s = inf: a number"),
        ({"sudo": "no"}, "lowlat.sudo = 'no': true or false, unquoted"),
        ({"keep_releases": "abc"}, "lowlat.keep_releases = 'abc': a whole number"),
        ({"keep_releases": 2.5}, "lowlat.keep_releases = 2.5: a whole number"),
        ({"keep_releases": True}, "lowlat.keep_releases = true: a whole number"),
        ({"keep_releases": 10**5000}, "lowlat.keep_releases = a 16610-bit integer: a whole"),
        ({"root": "srv"}, "lowlat.root = 'srv': an absolute path"),
        ({"python": "python3 -c 'x'"}, 'lowlat.python = "python3 -c \'x\'": "auto"'),
        ({"systemctl": " "}, "lowlat.systemctl = ' ': a command on one line"),
        ({"wheelhouse_cache": None}, "lowlat.wheelhouse_cache = null: a local directory"),
        ({"a\nb": 1}, "lowlat.'a\\nb' = 1: unknown setting"),
    ],
)
def test_settings_are_type_checked_one_line_naming_the_key(section, message):
    with pytest.raises(H.OpsError) as caught:
        H.Settings.from_config({"lowlat": section})
    text = str(caught.value)
    assert text.startswith(f"Fabric config {message}"), text
    assert len(text.splitlines()) == 1


def test_settings_take_whole_floats_and_int_seconds_as_the_types_they_are():
    s = H.Settings.from_config({"lowlat": {"keep_releases": 3.0, "ready_timeout_s": 30}})
    assert s.keep_releases == 3 and type(s.keep_releases) is int
    assert s.ready_timeout_s == 30.0 and type(s.ready_timeout_s) is float


def test_bad_settings_and_targets_reach_the_task_handler_as_ops_errors(ssh_server, tmp_path):
    """for_each_host checks settings and targets before any host; its OpsError is what the
    fab task's one handler (refusing_bad_input) turns into one line and exit status 2."""
    c = Context(config=fabric.Config(overrides={"lowlat": {"sudo": "no"}}))
    reached = []
    with pytest.raises(H.OpsError, match=r"lowlat\.sudo = 'no'"):
        H.for_each_host(c, "probe", "lowlat-loopback", None, None, lambda *a: reached.append(a))
    body = H.refusing_bad_input("fab probe", H.for_each_host)
    with pytest.raises(Exit) as exc:
        body(c, "probe", "lowlat-loopback", None, None, lambda *a: reached.append(a))
    assert exc.value.code == H.EXIT_USAGE == 2
    assert exc.value.message.startswith("fab probe: Fabric config lowlat.sudo = 'no': true")
    assert reached == []


def test_the_handler_makes_a_wrapped_message_one_line():
    def task_body():
        raise H.OpsError("--stack S: Stack with id S does not exist\n  (ValidationError)")

    with pytest.raises(Exit) as exc:
        H.refusing_bad_input("fab status", task_body)()
    assert exc.value.message == (
        "fab status: --stack S: Stack with id S does not exist; (ValidationError)"
    )


def test_a_fleet_runs_in_parallel_over_real_ssh(ssh_server, tmp_path, capsys):
    c = _context(ssh_server, tmp_path, extra_hosts=("lowlat-loopback-2",))
    threads: set[str] = set()

    def whoami(conn, settings):
        threads.add(threading.current_thread().name)
        out = conn.run("uname -m && whoami", hide=True, in_stream=False).stdout.split()
        return H.HostResult(True, f"{out[0]} as {out[1]}")

    results = H.for_each_host(c, "probe", None, "lowlat-loopback,lowlat-loopback-2", None, whoami)
    assert all(r.ok for r in results.values()) and len(results) == 2
    assert len(threads) == 2  # one worker per host
    out = capsys.readouterr().out
    assert f"as {ssh_server.user}" in out
    assert "fleet: probe ok on 2 of 2 hosts" in out


def test_a_failing_host_fails_the_fleet_and_is_named(ssh_server, tmp_path, capsys):
    c = _context(ssh_server, tmp_path, extra_hosts=("lowlat-loopback-2",))

    def fails_on_second(conn, settings):
        if conn.original_host == "lowlat-loopback-2":
            conn.run("exit 7", hide=True, in_stream=False)
        return H.HostResult(True, "fine")

    with pytest.raises(Exit) as exc:
        H.for_each_host(
            c, "probe", None, "lowlat-loopback,lowlat-loopback-2", None, fails_on_second
        )
    assert exc.value.code == H.EXIT_FAILED
    captured = capsys.readouterr()
    assert "fleet: probe ok on 1 of 2 hosts; failed: lowlat-loopback-2" in captured.out
    assert "lowlat-loopback-2  probe: FAILED  `exit 7` exited 7" in captured.err


@pytest.mark.parametrize(
    ("alias_lines", "message"),
    [
        ("HostName no-such-host.invalid", "cannot resolve 'no-such-host.invalid'"),
        ("Port {closed}", "refused the SSH connection"),
        ("IdentityFile {wrong_key}", "SSH authentication failed"),
    ],
)
def test_unreachable_hosts_are_one_line_each(ssh_server, tmp_path, capsys, alias_lines, message):
    from tests.support.net import free_port

    line = alias_lines.format(closed=free_port(), wrong_key=ssh_server.wrong_key)
    key = line.split()[0]
    text = "\n".join(
        line if row.strip().startswith(key) else row
        for row in ssh_server.ssh_config.read_text().splitlines()
    )
    (tmp_path / "ssh_config").write_text(text + "\n")
    c = Context(config=fabric.Config(runtime_ssh_path=str(tmp_path / "ssh_config")))
    with pytest.raises(Exit):
        H.for_each_host(c, "probe", "lowlat-loopback", None, None, lambda conn, s: None)
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
