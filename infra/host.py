"""The trading hosts: instance role, optional cluster placement group, instances, user data.

Each host is an ``ec2.Instance`` (IMDSv2 only, encrypted gp3 root, detailed monitoring,
EBS-optimised, termination protection per config) in the network's one subnet, booting the
stock arm64 image of the profile's OS (``ami.hostos``: its public SSM parameter and root device).

User data (``user_data_script``) sets a host up from the same renderers the Image Builder
component uses, so both AMI modes end with the same files:

- ``userdata``: install what the OS lacks (``HostOS.install_commands``: dnf, or apt and the
  CloudWatch agent's .deb); unpack the tuning files (``ami.render``), the agent's files
  (``ami.cloudwatch.agent_files``) and the profile (carried as one xz-compressed tar, because EC2
  caps user data at 16 KiB); create the service user; enable the agent, irqbalance, chrony, the
  tuning unit, the firewall and the check-host timer; write the kernel arguments and reboot once
  into them. A marker file guards the reboot, so a re-run of the script never loops, and every step
  is safe to run again.
- ``bake``: the image already holds all of that (TunedAmiStack); user data only makes sure the
  agent runs.

Like every lowlat script, the user data prefixes the host paths it touches with ``$root``
(``${LOWLAT_ROOT:-}``: empty under cloud-init), which is how the tests run the very same script
twice in a scratch tree. The engine and telemetry units stay disabled until ``fab deploy``
installs a release.
"""

from __future__ import annotations

import base64
import io
import lzma
import posixpath
import shlex
import tarfile

import jsii
from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from ami import cloudwatch, imagebuilder, render
from ami.hostos import AGENT_CTL, host_os
from contracts.profile import INSTALLED_PROFILE, TuningProfile

USER_DATA_LIMIT = 16 * 1024  # EC2's cap on raw user data
ROOT_VOLUME_GIB = 30  # the OS, releases under /opt/lowlat, numba's cache and a week of logs
REBOOT_MARKER = "/var/lib/lowlat/first-boot-tuned"
ROOT_LINE = 'root="${LOWLAT_ROOT:-}"'  # the scripts' one seam: a scratch root in the tests


def host_files(profile: TuningProfile) -> dict[str, tuple[str, int]]:
    """Every file user data installs: path -> (content, mode)."""
    files = {path: (text, render.file_mode(path)) for path, text in render.render(profile).items()}
    files.update({path: (text, 0o644) for path, text in cloudwatch.agent_files(profile).items()})
    files[INSTALLED_PROFILE] = (imagebuilder.profile_toml(profile), 0o644)
    return files


def files_archive(profile: TuningProfile) -> bytes:
    """``host_files`` as an xz-compressed tar, byte-for-byte the same for the same profile (fixed
    mtimes and owners) so an unchanged profile never changes the template. xz, not gzip: it is
    a tenth smaller, and Ubuntu's user data (apt lines, the agent's .deb) came within bytes of
    EC2's 16 KiB cap with gzip."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (text, mode) in sorted(host_files(profile).items()):
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME)


# Python's b85encode does Z85's arithmetic (4 bytes, big-endian, as 5 base-85 digits) with RFC
# 1924's alphabet; translated, it is ZeroMQ's Z85, which coreutils' basenc --z85 decodes (every
# host OS has coreutils 8.31 or later). A sixth smaller than base64: the largest host's user data
# stays under EC2's 16 KiB cap.
_RFC1924 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
_Z85 = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_TO_Z85, _FROM_Z85 = bytes.maketrans(_RFC1924, _Z85), bytes.maketrans(_Z85, _RFC1924)


def z85(data: bytes, width: int = 80) -> str:
    """``data`` (a multiple of 4 bytes, as an .xz stream always is) as Z85 lines."""
    if len(data) % 4:
        raise ValueError(f"Z85 takes whole 4-byte groups; {len(data)} bytes is not one")
    text = base64.b85encode(data).translate(_TO_Z85).decode()
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def unz85(text: str) -> bytes:
    """What ``basenc --z85 -d`` makes of ``z85``'s lines."""
    return base64.b85decode("".join(text.split()).encode().translate(_FROM_Z85))


def user_data_script(profile: TuningProfile, ami_mode: str) -> list[str]:
    """The user data's commands (after the shebang) for ``ami_mode``."""
    if ami_mode == "bake":
        return [
            "set -euo pipefail",
            "# Tuned image (TunedAmiStack): tuning, agent config and units are already there.",
            "systemctl enable --now amazon-cloudwatch-agent",
        ]
    archive = z85(files_archive(profile))
    user = shlex.quote(profile.service_user)
    marker = f'"$root{REBOOT_MARKER}"'
    return [
        "set -euo pipefail",
        ROOT_LINE,
        *host_os(profile).install_commands(),
        "# the files ami/ renders for this host's profile (tuning, units, agent config)",
        f"basenc --z85 -d <<'EOF' | tar -xJf - -C \"$root/\" --no-same-owner\n{archive}\nEOF",
        "systemd-sysusers",
        f'install -d -o {user} -g {user} -m 0755 "$root{cloudwatch.LOG_DIR}"',
        "systemctl daemon-reload",
        f"systemctl enable {' '.join(imagebuilder.enabled_units(profile))}",
        f'"$root{AGENT_CTL}" -a fetch-config -m ec2 -c "file:$root{cloudwatch.AGENT_CONFIG_PATH}"',
        "# kernel arguments take a reboot; the marker makes it happen once whatever re-runs this",
        f"if [[ ! -e {marker} ]]; then",
        f'  bash "$root{imagebuilder.APPLY_KERNEL_ARGS}"',
        f'  mkdir -p "$root{posixpath.dirname(REBOOT_MARKER)}" && : > {marker}',
        "  systemctl reboot",
        "fi",
    ]


@jsii.implements(ec2.IMachineImage)
class PinnedImage:
    """One image id in any region: ``MachineImage.generic_linux`` wants a region map, which an
    environment-agnostic stack cannot give."""

    def __init__(self, image_id: str) -> None:
        self.image_id = image_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(
            image_id=self.image_id,
            os_type=ec2.OperatingSystemType.LINUX,
            user_data=ec2.UserData.for_linux(),
        )


def machine_image(
    profile: TuningProfile, ami_mode: str, tuned_ami_parameter: str, ami_id: str | None = None
) -> ec2.IMachineImage:
    """The image hosts boot: a pinned id, or the stock arm64 image of the profile's OS or the
    tuned image through SSM parameters that CloudFormation resolves at deploy time (no lookup,
    so synth needs no credentials; but a deploy after a new image replaces the hosts, hence
    ``ami_id``)."""
    if ami_id:
        return PinnedImage(ami_id)
    name = tuned_ami_parameter if ami_mode == "bake" else host_os(profile).ssm_image_parameter
    if name is None:
        raise ValueError(f"{host_os(profile).title} has no public image parameter to boot")
    return ec2.MachineImage.from_ssm_parameter(name, os=ec2.OperatingSystemType.LINUX)


class TradingHosts(Construct):
    """``host_count`` tuned hosts. Attributes: ``role``, ``placement_group`` (None for one
    host), ``instances`` (host 1 first), ``profile``."""

    def __init__(  # noqa: PLR0913 -- CDK props: one keyword-only argument each
        self,
        scope: Construct,
        id_: str,
        *,
        deployment_name: str,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        instance_type: str,
        host_count: int,
        profile: TuningProfile,
        ami_mode: str,
        tuned_ami_parameter: str,
        ssh_key_name: str | None = None,
        termination_protection: bool = False,
        ami_id: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.profile = profile
        self.role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="lowlat host: SSM Session Manager and the CloudWatch agent, nothing else",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
            ],
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PutMetricsInLowlatNamespace",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; the namespace scopes it
                conditions={"StringEquals": {"cloudwatch:namespace": cloudwatch.NAMESPACE}},
            )
        )
        log_groups = sorted({cloudwatch.LOG_GROUP, cloudwatch.PROMETHEUS_LOG_GROUP})
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ShipAgentLogGroups",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{group}"
                    + suffix
                    for group in log_groups
                    for suffix in ("", ":log-stream:*")
                ],
            )
        )

        self.placement_group = None
        if host_count > 1:
            # all hosts in one low-latency network segment of one AZ
            self.placement_group = ec2.PlacementGroup(
                self, "PlacementGroup", strategy=ec2.PlacementGroupStrategy.CLUSTER
            )

        user_data = ec2.UserData.for_linux()
        user_data.add_commands(*user_data_script(profile, ami_mode))
        rendered = user_data.render()
        if len(rendered.encode()) > USER_DATA_LIMIT:
            raise ValueError(
                f"user data is {len(rendered.encode())} bytes; EC2 accepts {USER_DATA_LIMIT}"
            )
        image = machine_image(profile, ami_mode, tuned_ami_parameter, ami_id)
        key_pair = (
            ec2.KeyPair.from_key_pair_name(self, "KeyPair", ssh_key_name) if ssh_key_name else None
        )

        self.instances: list[ec2.Instance] = []
        for i in range(1, host_count + 1):
            instance = ec2.Instance(
                self,
                f"Host{i}",
                instance_name=f"{deployment_name}-host{i}",
                vpc=vpc,
                vpc_subnets=subnets,
                security_group=security_group,
                instance_type=ec2.InstanceType(instance_type),
                machine_image=image,
                role=self.role,
                user_data=user_data,
                key_pair=key_pair,
                placement_group=self.placement_group,
                require_imdsv2=True,
                detailed_monitoring=True,
                ebs_optimized=True,
                disable_api_termination=termination_protection,
                associate_public_ip_address=True,
                block_devices=[
                    ec2.BlockDevice(
                        device_name=host_os(profile).root_device,
                        volume=ec2.BlockDeviceVolume.ebs(
                            ROOT_VOLUME_GIB,
                            volume_type=ec2.EbsDeviceVolumeType.GP3,
                            encrypted=True,
                            delete_on_termination=True,
                        ),
                    )
                ],
            )
            # The subnet fixes the zone; the zone CDK repeats next to it is a literal for an
            # imported VPC, which cfn-lint rightly flags (W3010). SubnetId alone is enough.
            instance.instance.add_property_deletion_override("AvailabilityZone")
            self.instances.append(instance)
