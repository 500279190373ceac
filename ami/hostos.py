"""What differs between the host operating systems lowlat tunes: one small adapter each.

The tuning itself (``ami/render.py``) is written once; where an OS puts a file, how it installs
packages, how it boots with extra kernel arguments and which Python it ships come from here.
``contracts.profile.TuningProfile.os`` names the adapter:

- ``al2023``: Amazon Linux 2023 (dnf, grubby, Python 3.11). The AWS default image.
- ``ubuntu2404``: Ubuntu 24.04 LTS (apt, GRUB drop-in + update-grub, Python 3.12). Canonical
  builds its 24.04 generic kernel with CONFIG_NO_HZ_FULL; the EC2 images boot its linux-aws
  derivative, so the image build checks the booted kernel's config rather than trusting this.
- ``debian12``: Debian 12 (apt, GRUB drop-in + update-grub, Python 3.11): user data only (no
  Image Builder support); the host lab's OS.

``install_commands`` is the one list of shell lines that puts the packages on a host, shared by
the Image Builder component and the hosts' user data; like every lowlat script they prefix host
paths with ``$root`` (``${LOWLAT_ROOT:-}``, unset on a host) so that tests can rehearse them.

Standard library only: the CDK app, the Fabric tasks and check-host read it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from contracts.profile import HOST_OSES, TuningProfile

AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
# The agent's .deb from its global bucket, which AWS documents for every commercial region. A
# regional bucket would keep the download in-region, but the component document is static (the
# region would need an IMDS lookup at run time) and nothing here reaches S3 privately: the
# hosts go out through the internet gateway for apt and PyPI anyway.
AGENT_DEB_URL = (
    "https://amazoncloudwatch-agent.s3.amazonaws.com"
    "/{distro}/arm64/latest/amazon-cloudwatch-agent.deb"
)
AGENT_DEB = "/var/tmp/lowlat-amazon-cloudwatch-agent.deb"
# Sorts after the drop-ins cloud images ship (Ubuntu's 40-force-partuuid.cfg and
# 50-cloudimg-settings.cfg, which assigns GRUB_CMDLINE_LINUX_DEFAULT outright), so ours appends
# to what they set rather than being overwritten by them.
GRUB_DROPIN = "/etc/default/grub.d/99-lowlat.cfg"
GRUB_CFG = "/boot/grub/grub.cfg"
# Amazon Time Sync Service: link-local on every Nitro instance, no internet needed.
TIME_SYNC_SOURCE = "server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4"
# apt on a first boot: never prompt, keep the image's config files, wait for a dpkg lock that
# cloud-init or unattended-upgrades may hold, and (Ubuntu's needrestart hook) restart nothing
# in the middle of a build.
APT = (
    "apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef "
    "-o Dpkg::Options::=--force-confold"
)
APT_ENV = "export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1"
# APT, spelled once in a script (a bash array), each use "${apt[@]}": user data is capped at
# 16 KiB, and Debian's and Ubuntu's came within bytes of it.
APT_ARRAY = f"apt=({APT})"
RUN_APT = '"${apt[@]}"'


@dataclass(frozen=True)
class HostOS:
    """One host operating system, as far as the tuning is concerned."""

    name: str  # contracts.profile.HOST_OSES
    title: str
    family: str  # "rhel" (dnf, grubby) or "debian" (apt, GRUB drop-ins)
    python: str  # the interpreter release venvs are made from
    python_packages: tuple[str, ...]  # that interpreter with a working `-m venv`
    packages: tuple[str, ...]  # everything else the tuned host needs from the OS
    irqbalance_conf: str  # where irqbalance reads IRQBALANCE_BANNED_CPULIST
    chrony_conf: str
    chrony_unit: str
    # A chrony source file for Amazon Time Sync, in a directory the OS's chrony.conf reads
    # (``sourcedir``); None where the image already points chrony at it (AL2023 does).
    chrony_sources: str | None
    login_user: str  # the image's default SSH user
    root_device: str  # the image's root block device name, for the CDK block device mapping
    ssm_image_parameter: str | None  # the public SSM parameter of the current arm64 image
    imagebuilder_os: str | None  # Image Builder's name for it; None: Image Builder cannot build it
    agent_deb_distro: str | None  # the agent bucket's folder of the .deb; None: in the OS's repo

    @property
    def uses_grub_dropins(self) -> bool:
        return self.family == "debian"

    @property
    def grub_dropin(self) -> str | None:
        """The GRUB drop-in carrying the kernel arguments (None: grubby edits the entries)."""
        return GRUB_DROPIN if self.uses_grub_dropins else None

    @property
    def install_python(self) -> str:
        """The command that gives this OS its Python for lowlat (for error messages)."""
        tool = "apt-get install" if self.family == "debian" else "dnf install"
        return f"{tool} {' '.join(self.python_packages)}"

    def boot_entries_command(self) -> str:
        """Shell that makes the boot loader carry ``$args`` (the kernel arguments) from the
        next boot on: grubby edits every entry; on Debian and Ubuntu the drop-in (rendered
        beside the script) adds them to GRUB_CMDLINE_LINUX_DEFAULT and update-grub rewrites
        grub.cfg from it."""
        if not self.uses_grub_dropins:
            return 'grubby --update-kernel=ALL --args="$args"'
        return f"""if [[ ! -e "$root{GRUB_DROPIN}" ]]; then
    echo "lowlat-apply-kernel-args: no {GRUB_DROPIN} (python -m ami apply installs it)" >&2
    exit 1
fi
update-grub"""

    def install_commands(self) -> list[str]:
        """Shell lines that install everything lowlat needs from the OS; running them again
        installs nothing new (dnf install and apt-get install --no-upgrade leave installed
        packages as they are; the agent's .deb is fetched only while the agent is missing)."""
        packages = shlex.join((*self.python_packages, *self.packages))
        if self.family != "debian":
            return [f"dnf install -y {packages}"]
        url = AGENT_DEB_URL.format(distro=self.agent_deb_distro)
        return [
            APT_ENV,
            APT_ARRAY,
            f"{RUN_APT} update",
            f"{RUN_APT} install -y --no-install-recommends --no-upgrade {packages}",
            "# the CloudWatch agent is not in the distribution: AWS's own arm64 package",
            f'if [[ ! -x "$root{AGENT_CTL}" ]]; then',
            f'    curl -fsSL --proto =https --retry 5 -o "$root{AGENT_DEB}" {url}',
            f'    {RUN_APT} install -y "$root{AGENT_DEB}"',
            f'    rm -f "$root{AGENT_DEB}"',
            "fi",
        ]


_APT_PACKAGES = ("irqbalance", "ethtool", "chrony", "nftables", "curl", "ca-certificates")
# What Ubuntu and Debian share: apt, and where irqbalance and chrony keep their settings.
_DEBIAN_FAMILY: dict[str, Any] = {
    "family": "debian",
    "packages": _APT_PACKAGES,
    "irqbalance_conf": "/etc/default/irqbalance",
    "chrony_conf": "/etc/chrony/chrony.conf",
    "chrony_unit": "chrony.service",
    "chrony_sources": "/etc/chrony/sources.d/lowlat-aws.sources",
}

ADAPTERS = {
    "al2023": HostOS(
        name="al2023",
        title="Amazon Linux 2023",
        family="rhel",
        python="python3.11",
        python_packages=("python3.11", "python3.11-pip"),
        packages=("amazon-cloudwatch-agent", "irqbalance", "ethtool", "chrony", "nftables"),
        irqbalance_conf="/etc/sysconfig/irqbalance",
        chrony_conf="/etc/chrony.conf",
        chrony_unit="chronyd.service",
        chrony_sources=None,
        login_user="ec2-user",
        root_device="/dev/xvda",
        ssm_image_parameter="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
        imagebuilder_os="Amazon Linux 2023",
        agent_deb_distro=None,
    ),
    "ubuntu2404": HostOS(
        name="ubuntu2404",
        title="Ubuntu 24.04 LTS",
        python="python3.12",
        python_packages=("python3.12", "python3.12-venv"),
        **_DEBIAN_FAMILY,
        login_user="ubuntu",
        root_device="/dev/sda1",
        ssm_image_parameter=(
            "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"
        ),
        imagebuilder_os="Ubuntu 24",
        agent_deb_distro="ubuntu",
    ),
    "debian12": HostOS(
        name="debian12",
        title="Debian 12",
        python="python3.11",
        python_packages=("python3.11", "python3.11-venv"),
        **_DEBIAN_FAMILY,
        login_user="admin",
        root_device="/dev/xvda",
        # Debian's own public parameter; the host lab boots its own build of the same release
        ssm_image_parameter="/aws/service/debian/release/bookworm/latest/arm64",
        imagebuilder_os=None,  # no Image Builder platform: user data only
        agent_deb_distro="debian",
    ),
}
if set(ADAPTERS) != set(HOST_OSES):
    raise ImportError(f"ami.hostos has adapters {sorted(ADAPTERS)}, the profile {HOST_OSES}")

# The OSes a CDK deployment can boot (a public image parameter), and those the image pipeline
# (amiMode=bake) can also build (Image Builder supports them).
DEPLOYABLE = tuple(n for n, a in ADAPTERS.items() if a.ssm_image_parameter)
BAKEABLE = tuple(n for n in DEPLOYABLE if ADAPTERS[n].imagebuilder_os)


def host_os(profile: TuningProfile) -> HostOS:
    """The adapter of the OS the profile is for."""
    return ADAPTERS[profile.os]
