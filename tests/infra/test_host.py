"""The hosts' user data and the tuning unit it enables are idempotent, for each host OS.

The user data exactly as EC2 receives it (``ec2.UserData`` rendered, as ``TradingHosts`` does)
runs for real, twice, in a scratch root. The seam is the one every lowlat script has:
``root="${LOWLAT_ROOT:-}"`` prefixes each host path it touches (empty under cloud-init), so
nothing in the script is rewritten for the test. Package managers, systemd and the boot loader
tools are stubs (tests/support/rehearse.py); basenc, tar, xz, mkdir and bash are the real
ones, so the archive really unpacks into the scratch root and the kernel-argument script really
runs. The first run installs, unpacks, writes the boot entries and reboots once; the second
changes nothing in the tree and reboots nothing. Then ``lowlat-tune``, as unpacked, runs twice
(as at two boots): the same calls, the same tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import aws_ec2 as ec2

from ami import render
from ami.hostos import AGENT_CTL, host_os
from infra.config import DeploymentConfig
from infra.host import REBOOT_MARKER, user_data_script
from tests.support.rehearse import UPDATE_GRUB, Rehearsal, rehearse, tree

STUBS = (
    *("dnf", "apt-get", "curl", "rm"),  # packages
    *("systemd-sysusers", "install", "systemctl"),  # systemd; install -o needs root
    *("grubby", "update-grub"),  # the boot loader
    "amazon-cloudwatch-agent-ctl",  # what the agent's package installs (below)
)
REAL = ("basenc", "tar", "xz", "mkdir", "bash")
TUNE_STUBS = ("ethtool", "swapoff", "install")

# dnf and apt in miniature: the call that installs the CloudWatch agent puts its ctl (a
# recording stub) where the package would, so that later steps and runs find it.
AGENT_PACKAGE = f"""ctl="$LOWLAT_ROOT{AGENT_CTL}"
if [[ " $* " == *amazon-cloudwatch-agent* && ! -e "$ctl" ]]; then
    /bin/mkdir -p "$LOWLAT_ROOT{Path(AGENT_CTL).parent}"
    /bin/cp "${{0%/*}}/amazon-cloudwatch-agent-ctl" "$ctl"
fi"""


def stock_host(root: Path, os_name: str) -> Path:
    """What a stock image has that the scripts read: the kernel command line, /sys, GRUB."""
    (root / "proc").mkdir(parents=True)
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=LABEL=root ro quiet\n")
    (root / "sys/devices/virtual/workqueue").mkdir(parents=True)
    (root / "sys/class/net/eth0").mkdir(parents=True)
    (root / "proc/net").mkdir()
    (root / "proc/net/route").write_text(  # eth0 has the default route: nic = "auto" picks it
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\n"
    )
    thp = root / "sys/kernel/mm/transparent_hugepage"
    thp.mkdir(parents=True)
    for name in ("enabled", "defrag"):
        (thp / name).write_text("always\n")
    if host_os(DeploymentConfig(host_os=os_name).profile).uses_grub_dropins:
        (root / "etc/default/grub.d").mkdir(parents=True)
        (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT=""\n')
        (root / "etc/default/grub.d/50-cloudimg-settings.cfg").write_text(
            'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n'
        )
        (root / "boot/grub").mkdir(parents=True)
    return root


def user_data(os_name: str) -> str:
    """The user data as EC2 gets it for a default deployment on ``os_name``."""
    commands = ec2.UserData.for_linux()
    commands.add_commands(*user_data_script(DeploymentConfig(host_os=os_name).profile, "userdata"))
    return commands.render()


def run_user_data(script: str, root: Path) -> Rehearsal:
    effects = {"dnf": AGENT_PACKAGE, "apt-get": AGENT_PACKAGE, "update-grub": UPDATE_GRUB}
    run = rehearse(script, root, STUBS, passthrough=REAL, effects=effects)
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert run.unexpected == []
    return run


def boot_writes(run: Rehearsal) -> list[list[str]]:
    return run.called("grubby") + run.called("update-grub")


@pytest.mark.parametrize("os_name", ["al2023", "ubuntu2404"])
def test_user_data_twice_changes_nothing_the_second_time_and_reboots_once(tmp_path, os_name):
    root = stock_host(tmp_path / "root", os_name)
    script = user_data(os_name)

    first = run_user_data(script, root)
    assert first.called("systemctl")[-1] == ["systemctl", "reboot"]
    assert len(first.called("systemctl")) == 3  # daemon-reload, enable, reboot
    assert len(boot_writes(first)) == 1
    assert "reboot needed for: isolcpus=" in first.result.stdout
    assert (root / REBOOT_MARKER.lstrip("/")).exists()
    assert (root / "etc/lowlat/profile.toml").read_text().count(f'os = "{os_name}"') == 1
    for path in render.render(DeploymentConfig(host_os=os_name).profile):
        assert (root / path.lstrip("/")).is_file(), path
    if os_name == "ubuntu2404":  # the agent's .deb came from AWS's bucket, the args via GRUB
        assert len(first.called("curl")) == 1
        grub_cfg = (root / "boot/grub/grub.cfg").read_text()
        assert "console=ttyS0 isolcpus=managed_irq,domain,1-3" in grub_cfg
    after_first = tree(root)

    second = run_user_data(script, root)
    assert ["systemctl", "reboot"] not in second.calls
    assert boot_writes(second) == [] and second.called("curl") == []
    assert all(call in first.calls for call in second.calls)  # nothing the first did not do
    assert tree(root) == after_first  # and it changed nothing


@pytest.mark.parametrize("os_name", ["al2023", "ubuntu2404"])
def test_the_tuning_unit_at_every_boot_does_the_same_and_changes_nothing_more(tmp_path, os_name):
    root = stock_host(tmp_path / "root", os_name)
    run_user_data(user_data(os_name), root)
    tune = (root / render.TUNE_SCRIPT.lstrip("/")).read_text()  # as unpacked on the host

    first = rehearse(tune, root, TUNE_STUBS)
    after_first = tree(root)
    second = rehearse(tune, root, TUNE_STUBS)
    for boot in (first, second):
        assert boot.result.returncode == 0, boot.result.stdout + boot.result.stderr
        assert boot.unexpected == []
        assert not [call for call in boot.calls if "reboot" in call]
    assert second.calls == first.calls
    assert ["ethtool", "-L", "eth0", "combined", "1"] in second.calls
    assert tree(root) == after_first
    assert (root / "sys/devices/virtual/workqueue/cpumask").read_text() == "1\n"
    assert (root / "sys/kernel/mm/transparent_hugepage/enabled").read_text() == "never\n"
