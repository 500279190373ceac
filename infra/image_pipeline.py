"""The EC2 Image Builder pipeline that bakes the tuned lowlat image (``amiMode=bake``).

The stock arm64 image of the profile's OS (AL2023 or Ubuntu 24.04: ``ami.hostos``), named by its
public SSM parameter (``ssm:`` in the recipe, which Image Builder resolves at each build, the
same parameter the hosts boot from in ``userdata`` mode) + the component
``ami.imagebuilder.component_document(profile)`` (install, tune, reboot, validate with
``check-host``; its test phase checks a fresh instance of the new image), built on the
deployment's own instance type so that the profile's CPU split matches the build host.

The distribution writes each new image id to an SSM parameter (``/<deployment>/tuned-ami-id``)
that the host stack reads through ``MachineImage.from_ssm_parameter``: a rebuild of the pipeline
updates it without a stack update, and synthesis needs no lookup. ``CfnImage`` builds the first
image while the stack deploys, so the parameter exists before any host needs it.

Image Builder components and recipes are immutable per (name, version), and CloudFormation
creates a replacement before it deletes the old one: the versions here are derived from the
content, so any change gets a new version instead of a name clash.
"""

from __future__ import annotations

import hashlib

from aws_cdk import Aws, Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_imagebuilder as imagebuilder
from constructs import Construct

from ami import imagebuilder as component
from ami.hostos import HostOS, host_os
from contracts.profile import TuningProfile

ROOT_VOLUME_GIB = 30
TEST_TIMEOUT_MIN = 90


def parent_image(system: HostOS) -> str:
    """The recipe's parent image: the OS's public SSM parameter, resolved at build time."""
    if not system.ssm_image_parameter or not system.imagebuilder_os:
        raise ValueError(f"Image Builder cannot build {system.title} here")
    return f"ssm:{system.ssm_image_parameter}"


def content_version(*parts: str) -> str:
    """A semantic version that changes whenever any part does (Image Builder wants x.y.z,
    each at most 2^30 - 1)."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"1.0.{int(digest[:7], 16)}"


class TunedImagePipeline(Construct):
    """Component, recipe, infrastructure and distribution configurations, the pipeline and its
    first image. Attributes: ``component``, ``recipe``, ``infrastructure``, ``distribution``,
    ``pipeline``, ``image``, ``role``, ``ami_parameter_name``."""

    def __init__(  # noqa: PLR0913 -- CDK props: one keyword-only argument each
        self,
        scope: Construct,
        id_: str,
        *,
        deployment_name: str,
        profile: TuningProfile,
        instance_type: str,
        wheel_s3_uri: str,
        wheel_version_key: str,
        ami_parameter_name: str,
        vpc: ec2.IVpc | None = None,
    ) -> None:
        """``wheel_s3_uri`` may be a token (a stack parameter); ``wheel_version_key`` is the
        synth-time text that stands for it in the recipe's version. Without ``vpc`` the build
        runs in the account's default VPC; with it, in its first public subnet."""
        super().__init__(scope, id_)
        self.ami_parameter_name = ami_parameter_name
        system = host_os(profile)
        parent = parent_image(system)
        document = component.component_document(profile)
        self.component = imagebuilder.CfnComponent(
            self,
            "Component",
            name=f"{deployment_name}-{component.COMPONENT_NAME}",
            platform="Linux",
            version=content_version(document),
            data=document,
            supported_os_versions=[str(system.imagebuilder_os)],
            description=(
                f"lowlat: tune {system.title} arm64 and verify it with trading-service check-host"
            ),
        )

        # The build instance: Image Builder's own instance policy, SSM (how Image Builder drives
        # the instance), and the one wheel object the component downloads.
        self.role = iam.Role(
            self,
            "BuildInstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="lowlat image build instance: Image Builder, SSM, the lowlat wheel",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(name)
                for name in ("EC2InstanceProfileForImageBuilder", "AmazonSSMManagedInstanceCore")
            ],
        )
        wheel_object = Fn.select(1, Fn.split("s3://", wheel_s3_uri))  # "bucket/key"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTheLowlatWheel",
                actions=["s3:GetObject"],
                resources=[Fn.join("", [f"arn:{Aws.PARTITION}:s3:::", wheel_object])],
            )
        )
        instance_profile = iam.InstanceProfile(self, "BuildInstanceProfile", role=self.role)

        subnet_id: str | None = None
        security_group_ids: list[str] | None = None
        if vpc is not None:
            # no ingress: Image Builder drives the build instance through SSM, outbound only
            security_group = ec2.SecurityGroup(
                self,
                "BuildSecurityGroup",
                vpc=vpc,
                description="lowlat image build instance: outbound only (packages, PyPI, SSM, S3)",
                allow_all_outbound=True,
            )
            subnet_id = vpc.public_subnets[0].subnet_id
            security_group_ids = [security_group.security_group_id]
        self.infrastructure = imagebuilder.CfnInfrastructureConfiguration(
            self,
            "Infrastructure",
            subnet_id=subnet_id,
            security_group_ids=security_group_ids,
            name=f"{deployment_name}-tuned-host-build",
            instance_profile_name=instance_profile.instance_profile_name,
            # the profile splits this type's vCPUs; check-host on another size would fail
            instance_types=[instance_type],
            terminate_instance_on_failure=True,
            instance_metadata_options=imagebuilder.CfnInfrastructureConfiguration.InstanceMetadataOptionsProperty(
                http_tokens="required", http_put_response_hop_limit=2
            ),
            description="lowlat: builds on the deployment's instance type",
        )

        self.recipe = imagebuilder.CfnImageRecipe(
            self,
            "Recipe",
            name=f"{deployment_name}-tuned-host",
            version=content_version(
                self.component.version, parent, wheel_version_key, str(ROOT_VOLUME_GIB)
            ),
            parent_image=parent,
            components=[
                imagebuilder.CfnImageRecipe.ComponentConfigurationProperty(
                    component_arn=self.component.attr_arn,
                    parameters=[
                        imagebuilder.CfnImageRecipe.ComponentParameterProperty(
                            name=component.WHEEL_PARAMETER, value=[wheel_s3_uri]
                        )
                    ],
                )
            ],
            block_device_mappings=[
                imagebuilder.CfnImageRecipe.InstanceBlockDeviceMappingProperty(
                    device_name=system.root_device,
                    ebs=imagebuilder.CfnImageRecipe.EbsInstanceBlockDeviceSpecificationProperty(
                        volume_size=ROOT_VOLUME_GIB,
                        volume_type="gp3",
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
            description=f"stock {system.title} arm64 + the lowlat tuning component",
        )

        dist = imagebuilder.CfnDistributionConfiguration
        self.distribution = dist(
            self,
            "Distribution",
            name=f"{deployment_name}-tuned-host",
            distributions=[
                dist.DistributionProperty(
                    region=Aws.REGION,
                    ami_distribution_configuration={
                        "Name": f"{deployment_name}-tuned-host-{{{{ imagebuilder:buildDate }}}}",
                        "AmiTags": {"lowlat:deployment": deployment_name},
                    },
                    ssm_parameter_configurations=[
                        dist.SsmParameterConfigurationProperty(
                            parameter_name=ami_parameter_name, data_type="aws:ec2:image"
                        )
                    ],
                )
            ],
            description="lowlat: the tuned image in this region; its id in SSM for the hosts",
        )

        tests = imagebuilder.CfnImagePipeline.ImageTestsConfigurationProperty(
            image_tests_enabled=True, timeout_minutes=TEST_TIMEOUT_MIN
        )
        self.pipeline = imagebuilder.CfnImagePipeline(
            self,
            "Pipeline",
            name=f"{deployment_name}-tuned-host",
            image_recipe_arn=self.recipe.attr_arn,
            infrastructure_configuration_arn=self.infrastructure.attr_arn,
            distribution_configuration_arn=self.distribution.attr_arn,
            image_tests_configuration=tests,
            enhanced_image_metadata_enabled=True,
            status="ENABLED",
            description="lowlat tuned host image; run it to rebuild (runbooks: rebuild image)",
        )
        self.image = imagebuilder.CfnImage(
            self,
            "Image",
            image_recipe_arn=self.recipe.attr_arn,
            infrastructure_configuration_arn=self.infrastructure.attr_arn,
            distribution_configuration_arn=self.distribution.attr_arn,
            image_tests_configuration=imagebuilder.CfnImage.ImageTestsConfigurationProperty(
                image_tests_enabled=True, timeout_minutes=TEST_TIMEOUT_MIN
            ),
            enhanced_image_metadata_enabled=True,
        )
