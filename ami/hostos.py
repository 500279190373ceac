"""What differs between the host operating systems lowlat tunes: one small adapter each.

The tuning itself (``ami/render.py``) is written once; where an OS puts a file, how it installs
packages, how it boots with extra kernel arguments and which Python it ships come from here.
``contracts.profile.TuningProfile.os`` names the adapter:

- ``al2023``: Amazon Linux 2023 (dnf, grubby, Python 3.11). The AWS default image.
- ``ubuntu2404``: Ubuntu 24.04 LTS (apt, GRUB drop-in + update-grub, Python 3.12). Its generic
  kernel is built with CONFIG_NO_HZ_FULL, so ``nohz_full=`` and ``rcu_nocbs=`` take effect.
- ``debian12``: Debian 12 (apt, GRUB drop-in + update-grub, Python 3.11): the host lab's OS.

Standard library only: the CDK app, the Fabric tasks and check-host read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.profile import HOST_OSES, TuningProfile


@dataclass(frozen=True)
class HostOS:
    """One host operating system, as far as the tuning is concerned."""

    name: str  # contracts.profile.HOST_OSES
    title: str
    family: str  # "rhel" (dnf, grubby) or "debian" (apt, GRUB drop-ins)
    python: str  # the interpreter release venvs are made from
    irqbalance_conf: str  # where irqbalance reads IRQBALANCE_BANNED_CPULIST
    chrony_conf: str
    chrony_unit: str
    login_user: str  # the image's default SSH user
    root_device: str  # the image's root block device name, for the CDK block device mapping
    ssm_image_parameter: str | None  # the public SSM parameter of the current arm64 image

    @property
    def uses_grub_dropins(self) -> bool:
        return self.family == "debian"


ADAPTERS = {
    "al2023": HostOS(
        name="al2023",
        title="Amazon Linux 2023",
        family="rhel",
        python="python3.11",
        irqbalance_conf="/etc/sysconfig/irqbalance",
        chrony_conf="/etc/chrony.conf",
        chrony_unit="chronyd.service",
        login_user="ec2-user",
        root_device="/dev/xvda",
        ssm_image_parameter="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    ),
    "ubuntu2404": HostOS(
        name="ubuntu2404",
        title="Ubuntu 24.04 LTS",
        family="debian",
        python="python3.12",
        irqbalance_conf="/etc/default/irqbalance",
        chrony_conf="/etc/chrony/chrony.conf",
        chrony_unit="chrony.service",
        login_user="ubuntu",
        root_device="/dev/sda1",
        ssm_image_parameter=(
            "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"
        ),
    ),
    "debian12": HostOS(
        name="debian12",
        title="Debian 12",
        family="debian",
        python="python3.11",
        irqbalance_conf="/etc/default/irqbalance",
        chrony_conf="/etc/chrony/chrony.conf",
        chrony_unit="chrony.service",
        login_user="admin",
        root_device="/dev/xvda",
        ssm_image_parameter=None,  # the host lab builds its own image
    ),
}
if set(ADAPTERS) != set(HOST_OSES):
    raise ImportError(f"ami.hostos has adapters {sorted(ADAPTERS)}, the profile {HOST_OSES}")


def host_os(profile: TuningProfile) -> HostOS:
    """The adapter of the OS the profile is for."""
    return ADAPTERS[profile.os]
