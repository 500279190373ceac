"""`python -m ami apply`: the rendered tuning files, written idempotently under a root."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ami import render as r
from ami.__main__ import main
from ami.check.network import default_route_nic
from ami.hostos import host_os
from contracts.profile import SYSCTLS, TuningProfile
from tests.support.paths import REPO
from tests.support.rehearse import rehearse


def apply(root: Path, *extra: str, vcpus: int = 4) -> int:
    return main(["apply", "--root", str(root), "--vcpus", str(vcpus), *extra])


def at(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


# where the default profile's OS (AL2023) reads the irqbalance ban
IRQBALANCE_CONF = host_os(TuningProfile.for_vcpus(4)).irqbalance_conf


@pytest.fixture
def applied(tmp_path, capsys) -> Path:
    assert apply(tmp_path) == 0
    capsys.readouterr()
    return tmp_path


def test_kernel_args_for_4_vcpus(applied):
    args = at(applied, r.KERNEL_ARGS).read_text()
    assert args.count("\n") == 1  # one line: grubby --args takes it whole
    # the profile's arguments (their values: tests/contracts/test_profile.py), as rendered
    assert args.split() == TuningProfile.for_vcpus(4).kernel_args()
    assert "isolcpus=managed_irq,domain,1-3" in args
    script = at(applied, r.APPLY_KERNEL_ARGS).read_text()
    assert "grubby --update-kernel=ALL --args=" in script
    assert r.KERNEL_ARGS in script and "reboot" in script


def test_cpu_affinity_irqbalance_sysctls_limits(applied):
    affinity = at(applied, r.CPU_AFFINITY_CONF).read_text()
    assert "[Manager]\nCPUAffinity=0\n" in affinity
    assert "IRQBALANCE_BANNED_CPULIST=1-3\n" in at(applied, IRQBALANCE_CONF).read_text()
    sysctls = at(applied, r.SYSCTL_CONF).read_text()
    for key, value in TuningProfile.for_vcpus(4).sysctls.items():
        assert f"{key} = {value}\n" in sysctls
        # every known key carries its reason on the line above
        assert f"# {SYSCTLS[key][1]}\n{key} = " in sysctls
    assert "lowlat - memlock unlimited" in at(applied, r.LIMITS_CONF).read_text()
    assert at(applied, r.SYSUSERS_CONF).read_text().splitlines()[-1].startswith("u lowlat ")


def test_tune_script_and_unit(applied):
    script = at(applied, r.TUNE_SCRIPT).read_text()
    assert "workqueue_mask=1\n" in script  # housekeeping = cpu0
    assert "queues=1\n" in script and "nic=auto\n" in script  # one queue per housekeeping CPU
    assert 'ethtool -L "$nic" combined "$queues"' in script
    assert "rx_usecs=0\n" in script and 'ethtool -C "$nic" rx-usecs "$rx_usecs"' in script
    assert "swapoff -a" in script
    assert "echo never >" in script and "transparent_hugepage/{enabled,defrag}" in script
    assert 'install -d -m 0750 -o "$user" -g "$user" "$root$shm_dir"' in script
    unit = at(applied, r.TUNE_UNIT).read_text()
    assert "Type=oneshot" in unit and f"ExecStart={r.TUNE_SCRIPT}" in unit
    assert "Before=lowlat-engine.service lowlat-telemetry.service" in unit
    # nic=auto: the default route's interface exists once the network is online
    assert "Wants=network-online.target\nAfter=network-online.target " in unit


def test_tune_unit_waits_for_a_named_nic():
    unit = r.tune_unit(TuningProfile.for_vcpus(4, nic="ens5"))
    assert "Wants=sys-subsystem-net-devices-ens5.device\n" in unit
    assert "network-online" not in unit


def test_scripts_are_valid_bash(applied):
    for path in r.SCRIPTS:
        result = subprocess.run(["bash", "-n", at(applied, path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_modes(applied):
    for path in r.render(TuningProfile.for_vcpus(4)):
        mode = stat.S_IMODE(at(applied, path).stat().st_mode)
        assert mode == (0o755 if path in r.SCRIPTS else 0o644), path


def test_service_toml_loads_with_the_isolated_cores(applied):
    from service.config import load

    config = load(at(applied, r.SERVICE_CONFIG))
    assert config.service.shm_dir == "/dev/hugepages/lowlat"
    assert config.service.shm_prefix == "lowlat"
    assert config.cores == {"feed": 1, "engine": 2, "gateway": 3}
    assert set(config.cores.values()) <= set(TuningProfile.for_vcpus(4).isolated)
    assert (config.telemetry.host, config.telemetry.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize("vcpus", [2, 3, 16, 64])
def test_service_toml_cores_for_other_sizes(tmp_path, vcpus, capsys):
    from service.config import load

    assert apply(tmp_path, vcpus=vcpus) == 0
    profile = TuningProfile.for_vcpus(vcpus)
    config = load(at(tmp_path, r.SERVICE_CONFIG))
    assert config.cores == profile.stage_cores()
    assert set(config.cores.values()) <= set(profile.isolated)


def test_first_run_creates_second_changes_nothing(tmp_path, capsys):
    assert apply(tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    files = r.render(TuningProfile.for_vcpus(4))
    assert [line.split()[0] for line in out[:-1]] == ["created"] * len(files)
    assert out[-1].startswith(f"changed {len(files)} of {len(files)} files")

    mtimes = {p: at(tmp_path, p).stat().st_mtime_ns for p in files}
    assert apply(tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:-1]] == ["unchanged"] * len(files)
    assert out[-1].startswith("nothing to change")
    assert {p: at(tmp_path, p).stat().st_mtime_ns for p in files} == mtimes  # not rewritten


def test_dry_run_writes_nothing(tmp_path, capsys):
    assert apply(tmp_path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert f"would be created     {r.KERNEL_ARGS}" in out
    n = len(r.render(TuningProfile.for_vcpus(4)))
    assert out.splitlines()[-1].startswith(f"would change {n} of {n} files")


def test_modified_file_is_changed_and_restored(applied, capsys):
    conf = at(applied, IRQBALANCE_CONF)
    good = conf.read_text()
    conf.write_text(good.replace("BANNED_CPULIST=1-3", "BANNED_CPULIST=2-3"))
    script = at(applied, r.TUNE_SCRIPT)
    script.chmod(0o644)

    assert apply(applied, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"would be changed     {IRQBALANCE_CONF}" in out
    assert "-IRQBALANCE_BANNED_CPULIST=2-3\n+IRQBALANCE_BANNED_CPULIST=1-3\n" in out  # the diff
    assert "mode 0644 -> 0755" in out
    assert "BANNED_CPULIST=2-3" in conf.read_text()  # dry run: still wrong

    assert apply(applied) == 0
    out = capsys.readouterr().out
    assert f"changed              {IRQBALANCE_CONF}" in out
    assert f"changed              {r.TUNE_SCRIPT}" in out
    assert "unchanged            /etc/lowlat/kernel-args" in out
    n = len(r.render(TuningProfile.for_vcpus(4)))
    assert f"(0 created, 2 changed, {n - 2} unchanged)" in out
    assert conf.read_text() == good
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert not [p for p in conf.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_profile_file_overrides(tmp_path, capsys):
    profile = tmp_path / "profile.toml"
    profile.write_text('vcpus = 16\nhousekeeping = "0-1"\nisolated = "2-15"\nnic = "ens5"\n')
    root = tmp_path / "root"
    assert main(["apply", "--root", str(root), "--profile", str(profile)]) == 0
    assert "isolcpus=managed_irq,domain,2-15 " in at(root, r.KERNEL_ARGS).read_text()
    assert "CPUAffinity=0-1" in at(root, r.CPU_AFFINITY_CONF).read_text()
    run = rehearse(
        at(root, r.TUNE_SCRIPT).read_text(), tuned_tree(tmp_path / "host", "ens5"), TUNE_COMMANDS
    )
    assert (tmp_path / "host/sys/devices/virtual/workqueue/cpumask").read_text() == "3\n"
    assert ["ethtool", "-L", "ens5", "combined", "2"] in run.calls


def test_render_prints_one_file(capsys):
    assert main(["render", "--vcpus", "4", r.CPU_AFFINITY_CONF]) == 0
    assert "CPUAffinity=0" in capsys.readouterr().out
    assert main(["render", "--vcpus", "4", "/etc/nope"]) == 2
    assert "is not rendered" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("vcpus = 4\nisolated = [0, 1]\n", "CPUs 0 are both housekeeping and isolated"),
        ("colour = 1\n", "unknown key colour"),
        ("vcpus = [", "not valid TOML"),
    ],
)
def test_bad_profile_is_one_line_exit_2(tmp_path, text, message):
    profile = tmp_path / "bad.toml"
    profile.write_text(text)
    root = tmp_path / "root"
    result = subprocess.run(
        [sys.executable, "-m", "ami", "apply", "--root", root, "--profile", profile],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not root.exists()


TUNE_COMMANDS = ("ethtool", "swapoff", "install", "sleep")


@pytest.mark.parametrize("booted_with_args", [False, True])
def test_apply_kernel_args_script(tmp_path, booted_with_args):
    args = " ".join(TuningProfile.for_vcpus(4).kernel_args())
    (tmp_path / "etc/lowlat").mkdir(parents=True)
    (tmp_path / "etc/lowlat/kernel-args").write_text(args + "\n")
    (tmp_path / "proc").mkdir()
    running = "BOOT_IMAGE=/vmlinuz root=UUID=x ro" + (f" {args}" if booted_with_args else "")
    (tmp_path / "proc/cmdline").write_text(running + "\n")

    script = r.apply_kernel_args_script(TuningProfile.for_vcpus(4))
    run = rehearse(script, tmp_path, ("grubby",))
    assert run.result.returncode == 0, run.result.stderr
    assert run.calls == [["grubby", "--update-kernel=ALL", f"--args={args}"]]
    out = run.result.stdout
    if booted_with_args:
        assert "no reboot needed" in out
    else:
        assert "reboot needed for: isolcpus=managed_irq,domain,1-3 nohz_full=1-3" in out


ROUTE_HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


def route_table(*routes: tuple[str, str, int, str]) -> str:
    """/proc/net/route's text for (interface, destination, metric, mask) rows."""
    rows = [f"{i}\t{d}\t0102000A\t0003\t0\t0\t{m}\t{k}\t0\t0\t0\n" for i, d, m, k in routes]
    return ROUTE_HEADER + "".join(rows)


def tuned_tree(root: Path, nic: str = "eth0") -> Path:
    """The parts of /sys and /proc the tune script writes or looks at; ``nic`` has the
    default route."""
    (root / "sys/devices/virtual/workqueue").mkdir(parents=True)
    (root / "sys/class/net" / nic).mkdir(parents=True)
    (root / "proc/net").mkdir(parents=True)
    (root / "proc/net/route").write_text(route_table((nic, "00000000", 100, "00000000")))
    (root / "sys/kernel/mm/transparent_hugepage").mkdir(parents=True)
    for name in ("enabled", "defrag"):
        (root / "sys/kernel/mm/transparent_hugepage" / name).write_text("always\n")
    return root


def test_tune_script_tolerates_a_nic_without_the_feature(tmp_path):
    root = tuned_tree(tmp_path / "root")
    # ethtool fails as with "Operation not supported" from the driver
    run = rehearse(r.tune_script(TuningProfile.for_vcpus(4)), root, TUNE_COMMANDS, ethtool=1)
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert "queue count not changeable here (skipped)" in run.result.stdout
    assert (root / "sys/devices/virtual/workqueue/cpumask").read_text() == "1\n"
    thp = root / "sys/kernel/mm/transparent_hugepage"
    assert (thp / "enabled").read_text() == (thp / "defrag").read_text() == "never\n"
    shm_dir = f"{root}/dev/hugepages/lowlat"
    assert run.calls == [
        ["ethtool", "-L", "eth0", "combined", "1"],
        ["ethtool", "-C", "eth0", "rx-usecs", "0"],
        ["swapoff", "-a"],
        ["install", "-d", "-m", "0750", "-o", "lowlat", "-g", "lowlat", shm_dir],
    ]


ROUTES = [
    # a second NIC's default route with a higher metric, a subnet route, a host route
    (("ens6", "00000000", 200, "00000000"), ("ens5", "00000000", 100, "00000000"),
     ("ens5", "0000000A", 0, "0000FFFF")),
    (("enp0s1", "00000000", 1024, "00000000"),),
    (("ens5", "0000000A", 0, "0000FFFF"), ("ens5", "0202000A", 0, "FFFFFFFF")),  # no default
    (),
]  # fmt: skip


@pytest.mark.parametrize("routes", ROUTES)
def test_tune_script_and_check_host_pick_the_same_nic(tmp_path, routes):
    """nic=auto: lowlat-tune's awk and check-host's reader apply one rule to /proc/net/route."""
    root = tmp_path / "root"
    (root / "sys/devices/virtual/workqueue").mkdir(parents=True)
    (root / "proc/net").mkdir(parents=True)
    (root / "proc/net/route").write_text(route_table(*routes))
    for name in ("ens5", "ens6", "enp0s1"):
        (root / "sys/class/net" / name).mkdir(parents=True)
    chosen = default_route_nic((root / "proc/net/route").read_text())
    run = rehearse(r.tune_script(TuningProfile.for_vcpus(4)), root, TUNE_COMMANDS)
    tuned = [call[2] for call in run.calls if call[0] == "ethtool"]
    assert tuned == ([chosen, chosen] if chosen else [])
    assert len(run.called("sleep")) == (0 if chosen else r.ROUTE_WAIT_S)
    assert chosen == {0: "ens5", 1: "enp0s1"}.get(ROUTES.index(routes))


def test_tune_script_fails_when_swap_stays_on(tmp_path):
    root = tmp_path / "root"
    (root / "sys/devices/virtual/workqueue").mkdir(parents=True)
    run = rehearse(r.tune_script(TuningProfile.for_vcpus(4)), root, TUNE_COMMANDS, swapoff=1)
    assert run.result.returncode == 1
    assert "swapoff -a failed" in run.result.stderr
    assert "no IPv4 default route: no NIC to tune" in run.result.stdout  # no proc/net/route
    assert len(run.called("sleep")) == r.ROUTE_WAIT_S  # it waited for one, then went on


def test_irqbalance_runs_with_one_housekeeping_cpu(applied):
    """The packaged unit's ConditionCPUs=>1 counts systemd's CPUAffinity (the housekeeping CPUs):
    the drop-in resets the conditions first (an empty assignment resets all of them), then sets
    the container one again."""
    assert r.IRQBALANCE_DROPIN in r.render(TuningProfile.for_vcpus(2))
    dropin = at(applied, r.IRQBALANCE_DROPIN).read_text()
    lines = [line for line in dropin.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Unit]", "ConditionCPUs=", "ConditionVirtualization=!container"]
