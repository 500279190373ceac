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
Manager). With an exchange in the context (``exchange_rules``) it also admits the market data,
UDP to its port from the exchange's ranges, and its outbound is narrowed to what a trading host
uses: TCP to the exchange's recovery and order entry, HTTPS and HTTP for packages and the AWS
endpoints, and IGMP for a multicast feed.
"""

from __future__ import annotations

import ipaddress

from aws_cdk import Aws, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from contracts.network import Endpoint
from contracts.profile import Exchange

SSH_PORT = 22
# What a host reaches outside the exchange when its outbound is narrowed: dnf, PyPI, the SSM,
# CloudWatch and S3 endpoints over HTTPS; Debian's and Ubuntu's apt mirrors over HTTP. DNS (the
# VPC's resolver), NTP (Amazon Time Sync, 169.254.169.123) and the instance metadata service are
# link-local or the VPC's own and never filtered by a security group.
HOST_EGRESS_PORTS = {443: "HTTPS: dnf, PyPI, SSM, CloudWatch and S3 endpoints", 80: "HTTP: apt"}
# AWS's own minimum for an IGMP member of a Transit Gateway multicast domain: inbound IGMP
# queries come from 0.0.0.0/32; a leave goes to 224.0.0.2, a join to the group itself.
IGMP_QUERIER = "0.0.0.0/32"
IGMP_LEAVE = "224.0.0.2/32"


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
        exchange: Exchange | None = None,
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
            # the description stays as it was: changing it replaces the group
            description="lowlat hosts: SSH and telemetry from allowedCidrs only",
            # outbound: dnf, PyPI, and the SSM, CloudWatch and S3 endpoints over the internet;
            # with an exchange, only those ports and the exchange (exchange_rules)
            allow_all_outbound=exchange is None,
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
        if exchange is not None:
            exchange_rules(self.security_group, exchange)


def _peer(cidr: str) -> ec2.IPeer:
    return ec2.Peer.ipv4(cidr) if ipaddress.ip_network(cidr).version == 4 else ec2.Peer.ipv6(cidr)


def _host(endpoint: Endpoint) -> str:
    return f"{endpoint.host}/{endpoint.ip.max_prefixlen}"


def exchange_rules(group: ec2.SecurityGroup, exchange: Exchange) -> None:
    """Open ``group`` to ``exchange`` and nothing more: its market data in, its recovery and
    order entry out (the replies of a TCP connection need no rule: a group is stateful).

    Multicast in a VPC is Transit Gateway multicast: the VPC's subnet is associated with a
    multicast domain of a transit gateway (outside this app: the exchange's side, or the
    network team's, owns it), which supports IGMPv2 only (the host's IGMP version is pinned to
    2 in its sysctls) or static members. A member's group must admit UDP from the source's own
    addresses (a security group cannot be the source) and IGMP queries from 0.0.0.0/32, and let
    out IGMP joins to the group and leaves to 224.0.0.2 (docs.aws.amazon.com/vpc/latest/tgw/
    how-multicast-works.html)."""
    feed = exchange.market_data
    for cidr in exchange.cidrs:
        if ipaddress.ip_network(cidr).version == feed.ip.version:
            group.add_ingress_rule(
                _peer(cidr), ec2.Port.udp(feed.port), f"exchange market data from {cidr}"
            )
    for what, endpoint in (("recovery", exchange.recovery), ("order entry", exchange.orders)):
        group.add_egress_rule(
            _peer(_host(endpoint)), ec2.Port.tcp(endpoint.port), f"exchange {what} {endpoint}"
        )
    for port, why in HOST_EGRESS_PORTS.items():
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), why)
    if exchange.group is not None and exchange.group.ip.version == 4:
        igmp = ec2.Port(protocol=ec2.Protocol.IGMP, string_representation="IGMP")
        group.add_ingress_rule(ec2.Peer.ipv4(IGMP_QUERIER), igmp, "IGMP queries (multicast)")
        group.add_egress_rule(ec2.Peer.ipv4(_host(exchange.group)), igmp, "IGMP join")
        group.add_egress_rule(ec2.Peer.ipv4(IGMP_LEAVE), igmp, "IGMP leave")


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
