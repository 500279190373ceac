"""No profile value can inject anything: every field is refused in one line unless it fits its
grammar, and whatever fits renders to scripts that run exactly the intended commands.

The property tests draw values from hostile alphabets (shell metacharacters, quotes, blanks,
newlines) and from each field's own grammar. A value the profile accepts is rendered, the boot
script is checked with ``bash -n`` and then rehearsed in a scratch tree with every program
stubbed: the calls must be exactly the intended ones, each value one whole argument.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ami import render as r
from contracts.profile import (
    ABSOLUTE_PATH,
    INTERFACE,
    SYSCTL_VALUE,
    USER,
    ProfileError,
    TuningProfile,
    load_profile,
)
from tests.support.paths import REPO
from tests.support.rehearse import rehearse

HOSTILE = st.text(alphabet=";|&$`'\" \n\t\\(){}<>*?!#~-./_=aZ09é", max_size=24)


def fitting(grammar) -> st.SearchStrategy[str]:
    return st.from_regex(grammar.pattern, fullmatch=True)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"nic": "eth0; reboot"}, "nic = 'eth0; reboot': use an interface name"),
        ({"nic": "-eth0"}, "nic = '-eth0'"),
        ({"nic": "a" * 16}, "at most 15"),
        ({"telemetry_port": 70000}, "telemetry_port = 70000: use a whole number from 1 to 65535"),
        ({"telemetry_port": True}, "telemetry_port = True"),
        ({"service_user": "a b"}, "service_user = 'a b': use a user name"),
        ({"service_user": "Root"}, "service_user = 'Root'"),
        ({"install_prefix": "opt/lowlat"}, "install_prefix = 'opt/lowlat': use an absolute path"),
        ({"install_prefix": "/opt/../etc"}, "install_prefix = '/opt/../etc'"),
        ({"shm_dir": "/dev/shm/a b"}, "shm_dir = '/dev/shm/a b'"),
        ({"sysctls": {"vm.swappiness": "0\nkernel.x = 1"}}, "sysctls.vm.swappiness"),
        ({"sysctls": {"vm swappiness": "0"}}, "sysctls key = 'vm swappiness'"),
        ({"telemetry_host": "127.0.0.1; rm"}, "telemetry_host = '127.0.0.1; rm'"),
        ({"ssh_cidrs": ("10.0.0.1/8",)}, "has host bits set: write 10.0.0.0/8"),
        ({"ssh_cidrs": ("10.0.0.0/8 ",)}, "write 10.0.0.0/8"),
        ({"ssh_cidrs": ("10.0.0/8",)}, "is not a CIDR"),
        ({"ssh_root_login": "yes"}, "ssh_root_login = 'yes': use one of 'no', 'prohibit-password'"),
        ({"os": "centos"}, "os = 'centos'"),
        ({"hugepages": -1}, "hugepages = -1"),
        ({"rx_usecs": 5000}, "rx_usecs = 5000"),
    ],
)
def test_every_field_is_refused_in_one_line(overrides, words):
    with pytest.raises(ProfileError) as info:
        TuningProfile.for_vcpus(4, **overrides)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('nic = "eth0; reboot"\n', "nic = 'eth0; reboot'"),
        ('housekeeping = "abc"\n', "housekeeping = 'abc': use a cpulist"),
        ('isolated = [1, "2"]\n', "isolated = [1, '2']"),
        ("vcpus = true\n", "vcpus = True"),
        ("vcpus = 4096\n", "vcpus = 4096"),
        ('[sysctls]\n"vm.swappiness" = 1.5\n', "sysctls.vm.swappiness = 1.5"),
        ('ssh_cidrs = "10.0.0.0/8"\n', "use a list of CIDRs"),
        ("telemetry_port = 70000\n", "telemetry_port = 70000"),
    ],
)
def test_profile_files_are_refused_naming_file_key_and_value(tmp_path, content, words):
    path = tmp_path / "profile.toml"
    path.write_text(content)
    with pytest.raises(ProfileError) as info:
        load_profile(path, 4)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def test_a_directory_or_unreadable_profile_is_one_line(tmp_path):
    with pytest.raises(ProfileError, match="is a directory"):
        load_profile(tmp_path, 4)
    binary = tmp_path / "profile.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(binary, 4)


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "ami", "apply", "--root", "{root}", "--profile", "{profile}"],
        ["-m", "service.cli", "check-host", "--profile", "{profile}", "--irq-window", "0"],
    ],
    ids=["ami-apply", "check-host"],
)
@pytest.mark.parametrize("content", ['nic = "eth0; reboot"\n', 'housekeeping = "abc"\n', None])
def test_commands_refuse_bad_profiles_with_exit_2_and_write_nothing(tmp_path, command, content):
    profile = tmp_path / "profile.toml"
    if content is None:
        profile.mkdir()  # a directory where the file should be
    else:
        profile.write_text(content)
    root = tmp_path / "root"
    argv = [a.format(root=root, profile=profile) for a in command]
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(profile) in result.stderr and "Traceback" not in result.stderr
    assert not root.exists()


def _accepted(**overrides) -> TuningProfile | None:
    try:
        return TuningProfile.for_vcpus(4, **overrides)
    except ProfileError:
        return None


TUNE_COMMANDS = ("ethtool", "swapoff", "install")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    nic=st.one_of(HOSTILE, fitting(INTERFACE)),
    user=st.one_of(HOSTILE, fitting(USER)),
    shm_dir=st.one_of(HOSTILE, fitting(ABSOLUTE_PATH)),
)
def test_accepted_values_run_only_the_intended_commands(tmp_path_factory, nic, user, shm_dir):
    profile = _accepted(nic=nic, service_user=user, shm_dir=shm_dir)
    if profile is None:
        return  # refused: nothing is rendered
    script = r.tune_script(profile)
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    root = tmp_path_factory.mktemp("host") / "root"
    (root / "sys/devices/virtual/workqueue").mkdir(parents=True)
    (root / "sys/class/net" / nic).mkdir(parents=True)
    run = rehearse(script, root, TUNE_COMMANDS)
    assert not run.unexpected, run.unexpected
    assert run.calls == [
        ["ethtool", "-L", nic, "combined", "1"],
        ["ethtool", "-C", nic, "rx-usecs", "0"],
        ["swapoff", "-a"],
        ["install", "-d", "-m", "0750", "-o", user, "-g", user, f"{root}{shm_dir}"],
    ]


@settings(max_examples=100, deadline=None)
@given(value=st.one_of(HOSTILE, fitting(SYSCTL_VALUE)), user=st.one_of(HOSTILE, fitting(USER)))
def test_accepted_values_stay_one_line_in_every_rendered_file(value, user):
    profile = _accepted(sysctls={"vm.swappiness": value}, service_user=user)
    if profile is None:
        return
    files = r.render(profile)
    assert f"vm.swappiness = {value}\n" in files[r.SYSCTL_CONF]
    for path in (r.SYSUSERS_CONF, r.LIMITS_CONF):
        lines = [line for line in files[path].splitlines() if user in line.split()]
        assert lines, path  # the user is there, as one word of one line
    for path in (r.ENGINE_UNIT, r.TELEMETRY_UNIT):
        assert f"\nUser={user}\nGroup={user}\n" in files[path]


def test_the_hostile_alphabet_reaches_the_renderer_when_it_fits(tmp_path):
    """The grammars are not so narrow that the property tests above test nothing."""
    assert _accepted(nic="eth0.100", service_user="svc-lowlat_2", shm_dir="/dev/shm/x.y-z")
    assert Path(r.TUNE_SCRIPT).is_absolute()
