"""Where the hosts live: a new VPC (public subnets, no NAT, flow logs) or an existing one.

The hosts need outbound internet (dnf, PyPI, the SSM and CloudWatch endpoints) and, when
``allowedCidrs`` is set, inbound SSH and telemetry: public subnets with an internet gateway give
both, and no NAT gateway means no hourly charge for a path nothing uses. An existing VPC is
imported from ids given in context (``Vpc.from_vpc_attributes``): ``Vpc.from_lookup`` would need
AWS credentials at synth time.

The flow-log group is encrypted with a rotating KMS key of its own, whose policy lets this
region's CloudWatch Logs use it for log groups of this account and region only.

The security group is here too: it admits SSH and the telemetry port from ``allowedCidrs`` and
nothing else (no ingress at all when the list is empty: people come in through SSM Session
Manager).
"""

from __future__ import annotations

import ipaddress

from aws_cdk import Aws, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

SSH_PORT = 22


class Network(Construct):
    """The VPC, the subnet the hosts go in, and their security group.

    Attributes: ``vpc``, ``subnets`` (a SubnetSelection of the one subnet every host uses, so
    a cluster placement group can hold them), ``security_group``, ``flow_log`` and
    ``flow_log_key`` (None for an imported VPC, whose owner decides about flow logs).
    """

    def __init__(  # noqa: PLR0913 -- CDK props: one keyword-only argument each
        self,
        scope: Construct,
        id_: str,
        *,
        allowed_cidrs: tuple[str, ...],
        telemetry_port: int,
        vpc_id: str | None = None,
        subnet_ids: tuple[str, ...] = (),
        availability_zones: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, id_)
        self.flow_log: ec2.FlowLog | None = None
        self.flow_log_key: kms.Key | None = None
        if vpc_id:
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=vpc_id,
                availability_zones=list(availability_zones),
                public_subnet_ids=list(subnet_ids),
            )
        else:
            self.vpc = ec2.Vpc(
                self,
                "Vpc",
                ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/16"),
                # one AZ unless pinned: hosts share one subnet (a cluster placement group
                # lives in one AZ); pinning also picks an AZ that offers the instance type
                max_azs=None if availability_zones else 1,
                availability_zones=list(availability_zones) or None,
                nat_gateways=0,
                subnet_configuration=[
                    ec2.SubnetConfiguration(
                        name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                    )
                ],
                restrict_default_security_group=True,
            )
            _drop_redundant_depends_on(Stack.of(self))
            self.flow_log_key = flow_log_key(self, "FlowLogKey")
            log_group = logs.LogGroup(
                self,
                "FlowLogGroup",
                retention=logs.RetentionDays.ONE_MONTH,
                encryption_key=self.flow_log_key,
                removal_policy=RemovalPolicy.DESTROY,
            )
            self.flow_log = ec2.FlowLog(
                self,
                "FlowLog",
                resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group),
                traffic_type=ec2.FlowLogTrafficType.ALL,
            )
        self.subnets = ec2.SubnetSelection(subnets=[self.vpc.public_subnets[0]])

        self.security_group = ec2.SecurityGroup(
            self,
            "HostSecurityGroup",
            vpc=self.vpc,
            description="lowlat hosts: SSH and telemetry from allowedCidrs only",
            # outbound: dnf, PyPI, and the SSM, CloudWatch and S3 endpoints over the internet
            allow_all_outbound=True,
        )
        for cidr in allowed_cidrs:
            network = ipaddress.ip_network(cidr)
            peer = ec2.Peer.ipv4(cidr) if network.version == 4 else ec2.Peer.ipv6(cidr)
            self.security_group.add_ingress_rule(
                peer, ec2.Port.tcp(SSH_PORT), f"SSH from allowedCidrs {cidr}"
            )
            self.security_group.add_ingress_rule(
                peer, ec2.Port.tcp(telemetry_port), f"telemetry API from allowedCidrs {cidr}"
            )


def flow_log_key(scope: Construct, id_: str) -> kms.Key:
    """A rotating KMS key for the flow-log group. CloudWatch Logs encrypts with it as the
    regional service principal, so the key policy must let ``logs.<region>.amazonaws.com`` use it
    (or creating the log group fails), for log groups of this account and region only (the
    encryption context CloudWatch Logs sends names the log group; the group's own ARN would be
    a circular reference)."""
    key = kms.Key(
        scope,
        id_,
        description=f"{Stack.of(scope).stack_name}: encrypts the VPC flow-log group",
        enable_key_rotation=True,
        # it encrypts only the flow logs, which go with the stack (RemovalPolicy.DESTROY)
        removal_policy=RemovalPolicy.DESTROY,
        pending_window=Duration.days(7),
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogsEncryptFlowLogs",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=[
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                    )
                }
            },
        )
    )
    return key


RESTRICT_SG_PROVIDER = "Custom::VpcRestrictDefaultSGCustomResourceProvider"


def _drop_redundant_depends_on(stack: Stack) -> None:
    """The handler CDK adds to strip the default security group's rules depends on its role
    twice: by ``Fn::GetAtt`` and by ``DependsOn``. cfn-lint warns about the redundant one
    (W3005); the GetAtt alone already orders them, so drop the DependsOn."""
    provider = stack.node.try_find_child(RESTRICT_SG_PROVIDER)
    handler = provider.node.try_find_child("Handler") if provider else None
    if isinstance(handler, CfnResource):
        handler.add_deletion_override("DependsOn")
