"""lowlat's two stacks; each only composes constructs from ``infra/`` and wires their outputs.

- ``TunedAmiStack``: the Image Builder pipeline (``infra.image_pipeline``) and its first image.
- ``TradingHostStack``: network, hosts, the alarm topic and monitoring. Its outputs are read by
  the Fabric tasks through CloudFormation ``describe_stacks`` (``ops/hosts.py``): the names
  ``Host<N>InstanceId``, ``Host<N>PublicDnsName``, ``Host<N>TelemetryUrl``, ``Host<N>SsmCommand``,
  ``HostCount``, ``DashboardName``, ``DashboardUrl`` and ``AlarmTopicArn`` are an interface.

Both stacks are environment-agnostic (no account or region): synthesis then needs no lookup
and no credentials.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, CfnParameter, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from ami.hostos import BAKEABLE
from infra.checkov import apply_skips
from infra.config import S3_WHEEL, DeploymentConfig
from infra.host import TradingHosts
from infra.image_pipeline import TunedImagePipeline
from infra.monitoring import MonitoredHost, Monitoring
from infra.nag import acknowledge_ami_stack, acknowledge_host_stack, apply_checks
from infra.network import Network


class TunedAmiStack(Stack):
    """EC2 Image Builder: the tuned image, its pipeline, and the SSM parameter with its id."""

    def __init__(self, scope: Construct, id_: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, id_, **kwargs)
        # A stack parameter, so the image can be rebuilt from a new wheel without a new synth;
        # wheelS3Uri in context sets its default (and versions the recipe: see image_pipeline).
        wheel = CfnParameter(
            self,
            "WheelS3Uri",
            type="String",
            description="s3:// URI of the lowlat wheel the image build installs",
            allowed_pattern=f"^{S3_WHEEL.pattern}$",  # the context's own check, one source
            constraint_description="an s3://BUCKET/path/lowlat-VERSION-py3-none-any.whl URI",
            default=config.wheel_s3_uri,
        )
        self.pipeline = TunedImagePipeline(
            self,
            "ImagePipeline",
            deployment_name=config.deployment_name,
            profile=config.profile,
            instance_type=config.instance_type,
            wheel_s3_uri=wheel.value_as_string,
            wheel_version_key=config.wheel_s3_uri or "parameter",
            ami_parameter_name=config.tuned_ami_parameter,
            vpc=_imported_vpc(self, config),
        )
        CfnOutput(self, "ImageId", value=self.pipeline.image.attr_image_id)
        CfnOutput(self, "ImagePipelineArn", value=self.pipeline.pipeline.attr_arn)
        CfnOutput(
            self,
            "TunedAmiParameter",
            value=config.tuned_ami_parameter,
            description="SSM parameter holding the newest tuned image id (amiMode=bake)",
        )


def _imported_vpc(scope: Construct, config: DeploymentConfig) -> ec2.IVpc | None:
    """The deployment's own VPC (vpcId) for the image build, or None: the default VPC."""
    if not config.vpc_id:
        return None
    return ec2.Vpc.from_vpc_attributes(
        scope,
        "Vpc",
        vpc_id=config.vpc_id,
        availability_zones=list(config.availability_zones),
        public_subnet_ids=list(config.subnet_ids),
    )


class AlarmTopic(Construct):
    """The SNS topic every alarm notifies: KMS-encrypted with a rotating key of its own (the
    AWS-managed SNS key cannot let CloudWatch publish), TLS-only, and an email subscription when
    one is given. Attributes: ``topic``, ``key``."""

    def __init__(
        self, scope: Construct, id_: str, *, deployment_name: str, email: str | None
    ) -> None:
        super().__init__(scope, id_)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{deployment_name}: encrypts the alarm topic",
            enable_key_rotation=True,
            # it encrypts only notifications in flight: nothing to keep once the topic is gone
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        cloudwatch = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        # CloudWatch alarms publish to the encrypted topic: they need the key's data keys
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[cloudwatch],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{deployment_name} alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[cloudwatch],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))


class TradingHostStack(Stack):
    """Network, tuned hosts, alarm topic and monitoring; outputs for the Fabric tasks."""

    def __init__(self, scope: Construct, id_: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, id_, **kwargs)
        profile = config.profile
        self.network = Network(
            self,
            "Network",
            allowed_cidrs=config.allowed_cidrs,
            telemetry_port=config.telemetry_port,
            vpc_id=config.vpc_id,
            subnet_ids=config.subnet_ids,
            availability_zones=config.availability_zones,
            exchange=config.exchange,
        )
        self.hosts = TradingHosts(
            self,
            "Hosts",
            deployment_name=config.deployment_name,
            vpc=self.network.vpc,
            subnets=self.network.subnets,
            security_group=self.network.security_group,
            instance_type=config.instance_type,
            host_count=config.host_count,
            profile=profile,
            ami_mode=config.ami_mode,
            tuned_ami_parameter=config.tuned_ami_parameter,
            ssh_key_name=config.ssh_key_name,
            termination_protection=config.termination_protection,
            ami_id=config.ami_id,
        )
        self.alarm_topic = AlarmTopic(
            self, "AlarmTopic", deployment_name=config.deployment_name, email=config.alarm_email
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            deployment=config.deployment_name,
            hosts=[
                MonitoredHost(label=f"host{i}", instance=instance, profile=profile)
                for i, instance in enumerate(self.hosts.instances, start=1)
            ],
            slo_p50_us=config.slo_p50_us,
            slo_p99_us=config.slo_p99_us,
            slo_p999_us=config.slo_p999_us,
            runbook_base_url=config.runbook_base_url,
            alarm_topic=self.alarm_topic.topic,
        )
        self._outputs(config)

    def _outputs(self, config: DeploymentConfig) -> None:
        # Fabric finds the hosts by these exact output names (ops/hosts.py)
        port = config.telemetry_port
        for i, instance in enumerate(self.hosts.instances, start=1):
            CfnOutput(self, f"Host{i}InstanceId", value=instance.instance_id)
            CfnOutput(self, f"Host{i}PublicDnsName", value=instance.instance_public_dns_name)
            if config.allowed_cidrs:
                url = f"http://{instance.instance_public_dns_name}:{port}/"
                note = f"reachable from allowedCidrs ({', '.join(config.allowed_cidrs)})"
            else:
                # no ingress at all: the API listens on loopback; an SSM port forward reaches it
                url = f"http://127.0.0.1:{port}/"
                note = (
                    "loopback only: aws ssm start-session --target <id> --document-name "
                    "AWS-StartPortForwardingSession --parameters "
                    f"portNumber={port},localPortNumber={port}"
                )
            CfnOutput(self, f"Host{i}TelemetryUrl", value=url, description=f"telemetry API; {note}")
            CfnOutput(
                self,
                f"Host{i}SsmCommand",
                value=f"aws ssm start-session --target {instance.instance_id}",
                description="a shell on the host through SSM Session Manager (no SSH needed)",
            )
        CfnOutput(self, "HostCount", value=str(len(self.hosts.instances)))
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard_name)
        CfnOutput(
            self,
            "DashboardUrl",
            value=(
                f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards:name={self.monitoring.dashboard_name}"
            ),
        )
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic.topic_arn)


def stack_names(config: DeploymentConfig) -> tuple[str, str]:
    """CloudFormation names of (TunedAmiStack, TradingHostStack): ``lowlat`` gives
    ``LowlatTunedAmi`` and ``LowlatHosts`` (what ``fab ... --stack`` takes)."""
    camel = "".join(part.capitalize() for part in config.deployment_name.split("-"))
    return f"{camel}TunedAmi", f"{camel}Hosts"


def build_app(
    app, config: DeploymentConfig, *, nag: bool = True
) -> tuple[TunedAmiStack | None, TradingHostStack]:
    """The stacks on ``app`` (a ``cdk.App`` or a test's ``App``) for ``config``, with the
    cdk-nag pack and lowlat's acknowledgements unless ``nag`` is false, and always with the
    checkov skips (``infra.checkov``: template metadata, not a check). TunedAmiStack only for
    an OS that EC2 Image Builder can build (``ami.hostos.BAKEABLE``): a Debian 12 deployment
    is user data only, and has none."""
    ami_name, hosts_name = stack_names(config)
    ami = None
    if config.host_os in BAKEABLE:
        ami = TunedAmiStack(
            app,
            "TunedAmiStack",
            config=config,
            stack_name=ami_name,
            description="lowlat: EC2 Image Builder pipeline for the tuned Graviton image",
            termination_protection=config.termination_protection,
        )
    hosts = TradingHostStack(
        app,
        "TradingHostStack",
        config=config,
        stack_name=hosts_name,
        description="lowlat: tuned Graviton trading hosts, dashboard and alarms",
        termination_protection=config.termination_protection,
    )
    if ami and config.ami_mode == "bake" and not config.ami_id:
        # the hosts boot the image whose id the pipeline's first build writes to SSM
        hosts.add_dependency(ami, "hosts boot the tuned image (amiMode=bake)")
    apply_skips(app)
    if nag:
        if ami:
            acknowledge_ami_stack(ami)
        acknowledge_host_stack(hosts, termination_protection=config.termination_protection)
        apply_checks(app)
    return ami, hosts
