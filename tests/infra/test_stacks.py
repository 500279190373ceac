"""The CDK constructs (each on a bare Stack) and the two stacks: properties, counts, outputs."""

from __future__ import annotations

import io
import json
import lzma
import subprocess
import tarfile

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from ami import cloudwatch, imagebuilder, render
from ami.hostos import ADAPTERS
from infra.config import DeploymentConfig
from infra.host import (
    REBOOT_MARKER,
    ROOT_LINE,
    USER_DATA_LIMIT,
    TradingHosts,
    files_archive,
    host_files,
    unz85,
    user_data_script,
)
from infra.image_pipeline import TunedImagePipeline
from infra.network import Network
from infra.stacks import AlarmTopic, stack_names
from tests.support.infra_apps import synth

AL2023_ARM64_PARAMETER = ADAPTERS["al2023"].ssm_image_parameter
UBUNTU_ARM64_PARAMETER = ADAPTERS["ubuntu2404"].ssm_image_parameter
# ------------------------------------------------------------------------------ helpers


def _hosts_template(
    *,
    host_count=1,
    ami_mode="userdata",
    termination_protection=False,
    ssh_key_name=None,
    ami_id=None,
    host_os="al2023",
) -> Template:
    config = DeploymentConfig(
        host_count=host_count, ami_mode=ami_mode, ami_id=ami_id, host_os=host_os
    )
    stack = cdk.Stack()
    network = Network(stack, "Network", allowed_cidrs=(), telemetry_port=8000)
    TradingHosts(
        stack,
        "Hosts",
        deployment_name="lowlat",
        vpc=network.vpc,
        subnets=network.subnets,
        security_group=network.security_group,
        instance_type=config.instance_type,
        host_count=host_count,
        profile=config.profile,
        ami_mode=ami_mode,
        tuned_ami_parameter=config.tuned_ami_parameter,
        ssh_key_name=ssh_key_name,
        termination_protection=termination_protection,
        ami_id=config.ami_id,
    )
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def one_host() -> Template:
    return _hosts_template()


@pytest.fixture(scope="module")
def three_hosts() -> Template:
    return _hosts_template(host_count=3, termination_protection=True, ssh_key_name="ops")


@pytest.fixture(scope="module")
def ubuntu_host() -> Template:
    return _hosts_template(host_os="ubuntu2404")


def _ingress(template: Template) -> list[dict]:
    (sg,) = template.find_resources("AWS::EC2::SecurityGroup").values()
    return sg["Properties"].get("SecurityGroupIngress", [])


# ------------------------------------------------------------------------------ Network


def test_new_vpc_is_public_only_without_nat_and_with_flow_logs():
    stack = cdk.Stack()
    Network(stack, "Network", allowed_cidrs=(), telemetry_port=8000)
    t = Template.from_stack(stack)
    t.resource_count_is("AWS::EC2::VPC", 1)
    t.resource_count_is("AWS::EC2::NatGateway", 0)
    t.resource_count_is("AWS::EC2::Subnet", 1)
    t.has_resource_properties("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": True})
    t.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    t.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    # no CIDRs: no ingress at all (people come in through SSM Session Manager)
    assert _ingress(t) == []


def test_security_group_opens_only_ssh_and_telemetry_to_allowed_cidrs():
    stack = cdk.Stack()
    cidrs = ("203.0.113.0/24", "2001:db8::/32")
    Network(stack, "Network", allowed_cidrs=cidrs, telemetry_port=9100)
    rules = _ingress(Template.from_stack(stack))
    got = {(r.get("CidrIp") or r.get("CidrIpv6"), r["FromPort"], r["ToPort"]) for r in rules}
    assert got == {(c, p, p) for c in cidrs for p in (22, 9100)}
    assert len(rules) == 4
    assert all(r["IpProtocol"] == "tcp" for r in rules)


def _egress(template: Template) -> list[dict]:
    (sg,) = template.find_resources("AWS::EC2::SecurityGroup").values()
    return sg["Properties"].get("SecurityGroupEgress", [])


def _rule(r: dict) -> tuple:
    peer = r.get("CidrIp") or r.get("CidrIpv6")
    return (r["IpProtocol"], peer, r.get("FromPort"), r.get("ToPort"))


def _network_with(exchange: dict) -> Template:
    stack = cdk.Stack()
    config = DeploymentConfig.from_context({"exchange": exchange}.get)
    Network(stack, "Network", allowed_cidrs=(), telemetry_port=8000, exchange=config.exchange)
    return Template.from_stack(stack)


EXCHANGE = {
    "marketData": "239.192.0.1:31001",
    "recovery": "10.50.0.10:31002",
    "orders": "10.50.0.11:31003",
    "cidrs": ["10.50.0.0/24", "10.60.0.0/24", "fd00:50::/64"],
}


def test_without_an_exchange_all_outbound_stays_open():
    stack = cdk.Stack()
    Network(stack, "Network", allowed_cidrs=(), telemetry_port=8000)
    (rule,) = _egress(Template.from_stack(stack))
    assert _rule(rule) == ("-1", "0.0.0.0/0", None, None)


def test_an_exchange_opens_its_market_data_recovery_and_orders_only():
    t = _network_with(EXCHANGE)
    ingress = {_rule(r) for r in _ingress(t)}
    assert ingress == {
        # market data: UDP to its port from the exchange's IPv4 ranges (the group is IPv4)
        ("udp", "10.50.0.0/24", 31001, 31001),
        ("udp", "10.60.0.0/24", 31001, 31001),
        # Transit Gateway multicast: IGMP queries come from 0.0.0.0/32
        ("2", "0.0.0.0/32", None, None),
    }
    egress = {_rule(r) for r in _egress(t)}
    assert egress == {
        ("tcp", "10.50.0.10/32", 31002, 31002),  # recovery
        ("tcp", "10.50.0.11/32", 31003, 31003),  # order entry
        ("tcp", "0.0.0.0/0", 443, 443),  # packages, SSM, CloudWatch, S3
        ("tcp", "0.0.0.0/0", 80, 80),  # apt mirrors
        ("2", "239.192.0.1/32", None, None),  # IGMP join
        ("2", "224.0.0.2/32", None, None),  # IGMP leave
    }
    assert not [r for r in _egress(t) if r["IpProtocol"] == "-1"]  # no longer all outbound


def test_an_ipv6_group_is_admitted_from_the_ipv6_ranges_without_igmp():
    t = _network_with({**EXCHANGE, "marketData": "[ff15::1]:31001"})
    assert {_rule(r) for r in _ingress(t)} == {("udp", "fd00:50::/64", 31001, 31001)}
    assert not [r for r in _egress(t) if r["IpProtocol"] == "2"]


def test_the_exchange_variant_synthesizes_with_the_exchange_in_its_rules():
    s = synth("exchange")
    rules = {_rule(r) for r in _ingress(s.hosts_template)}
    assert ("udp", "10.50.0.0/24", 31001, 31001) in rules
    assert ("tcp", "203.0.113.0/24", 22, 22) in rules  # allowedCidrs as ever
    assert ("tcp", "10.50.0.11/32", 31003, 31003) in {_rule(r) for r in _egress(s.hosts_template)}


def test_existing_vpc_is_imported_without_lookup():
    stack = cdk.Stack()
    network = Network(
        stack,
        "Network",
        allowed_cidrs=(),
        telemetry_port=8000,
        vpc_id="vpc-0123456789abcdef0",
        subnet_ids=("subnet-0123456789abcdef0",),
        availability_zones=("eu-west-1a",),
    )
    t = Template.from_stack(stack)
    t.resource_count_is("AWS::EC2::VPC", 0)
    t.resource_count_is("AWS::EC2::FlowLog", 0)
    t.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": "vpc-0123456789abcdef0"})
    assert network.flow_log is None
    assert network.subnets.subnets[0].subnet_id == "subnet-0123456789abcdef0"


# ------------------------------------------------------------------------------ hosts


def test_host_instance_is_hardened(one_host):
    one_host.resource_count_is("AWS::EC2::Instance", 1)
    one_host.has_resource_properties(
        "AWS::EC2::Instance",
        {
            "InstanceType": "c6g.xlarge",
            "Monitoring": True,
            "EbsOptimized": True,
            "DisableApiTermination": False,
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                        "VolumeSize": 30,
                    },
                }
            ],
            "ImageId": {"Ref": Match.string_like_regexp("SsmParameterValue.*al2023.*arm64")},
        },
    )
    # IMDSv2 only, through the launch template CDK attaches for require_imdsv2
    one_host.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {"LaunchTemplateData": {"MetadataOptions": {"HttpTokens": "required"}}},
    )
    one_host.resource_count_is("AWS::EC2::PlacementGroup", 0)
    (instance,) = one_host.find_resources("AWS::EC2::Instance").values()
    assert "PlacementGroupName" not in instance["Properties"]
    assert "KeyName" not in instance["Properties"]


def test_several_hosts_share_a_cluster_placement_group(three_hosts):
    three_hosts.resource_count_is("AWS::EC2::Instance", 3)
    three_hosts.resource_count_is("AWS::EC2::PlacementGroup", 1)
    three_hosts.has_resource_properties("AWS::EC2::PlacementGroup", {"Strategy": "cluster"})
    for instance in three_hosts.find_resources("AWS::EC2::Instance").values():
        props = instance["Properties"]
        assert "PlacementGroupName" in props
        assert props["DisableApiTermination"] is True
        assert props["KeyName"] == "ops"
    names = {
        next(t["Value"] for t in i["Properties"]["Tags"] if t["Key"] == "Name")
        for i in three_hosts.find_resources("AWS::EC2::Instance").values()
    }
    assert names == {"lowlat-host1", "lowlat-host2", "lowlat-host3"}


def test_host_role_is_ssm_core_plus_scoped_agent_permissions(one_host):
    roles = one_host.find_resources("AWS::IAM::Role")
    host_roles = [
        r
        for r in roles.values()
        if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "ec2.amazonaws.com"}
    ]
    assert len(host_roles) == 1
    managed = json.dumps(host_roles[0]["Properties"]["ManagedPolicyArns"])
    assert "AmazonSSMManagedInstanceCore" in managed
    assert "CloudWatchAgentServerPolicy" not in managed
    policies = [
        p
        for p in one_host.find_resources("AWS::IAM::Policy").values()
        if "InstanceRole" in json.dumps(p["Properties"]["Roles"])
    ]
    (policy,) = policies
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {"PutMetricsInLowlatNamespace", "ShipAgentLogGroups"}
    put = statements["PutMetricsInLowlatNamespace"]
    assert put["Action"] == "cloudwatch:PutMetricData"
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": cloudwatch.NAMESPACE}}
    logs = statements["ShipAgentLogGroups"]
    assert all(a.startswith("logs:") for a in logs["Action"])
    resources = json.dumps(logs["Resource"])
    assert cloudwatch.LOG_GROUP in resources and cloudwatch.PROMETHEUS_LOG_GROUP in resources
    assert "log-group:*" not in resources


def _user_data(template: Template) -> str:
    (instance,) = list(template.find_resources("AWS::EC2::Instance").values())[:1]
    parts = instance["Properties"]["UserData"]["Fn::Base64"]
    return parts if isinstance(parts, str) else json.dumps(parts)


def test_userdata_mode_installs_everything_and_reboots_once(one_host):
    text = _user_data(one_host)
    assert text.startswith("#!/bin/bash")
    assert "dnf install -y python3.11" in text
    assert "amazon-cloudwatch-agent" in text
    assert f'if [[ ! -e "$root{REBOOT_MARKER}" ]]' in text
    assert text.count("systemctl reboot") == 1
    assert "apt-get" not in text and "update-grub" not in text
    assert len(text.encode()) <= USER_DATA_LIMIT


def test_ubuntu_hosts_boot_canonicals_image_and_use_apt_and_grub(ubuntu_host):
    text = _user_data(ubuntu_host)
    assert "apt-get -o DPkg::Lock::Timeout=600" in text and "dnf" not in text
    assert "python3.12 python3.12-venv" in text
    assert "ubuntu/arm64/latest/amazon-cloudwatch-agent.deb" in text
    assert "chrony.service" in text and text.count("systemctl reboot") == 1
    assert len(text.encode()) <= USER_DATA_LIMIT
    # the kernel arguments go through the GRUB drop-in and update-grub (in the archive)
    files = host_files(DeploymentConfig(host_os="ubuntu2404").profile)
    assert "/etc/default/grub.d/99-lowlat.cfg" in files
    assert "update-grub" in files[render.APPLY_KERNEL_ARGS][0]
    (instance,) = ubuntu_host.find_resources("AWS::EC2::Instance").values()
    props = instance["Properties"]
    assert props["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    param = props["ImageId"]["Ref"]
    assert ubuntu_host.to_json()["Parameters"][param]["Default"] == UBUNTU_ARM64_PARAMETER


def test_bake_mode_boots_the_tuned_image_without_retuning():
    t = _hosts_template(ami_mode="bake")
    text = _user_data(t)
    assert "systemctl reboot" not in text and "dnf install" not in text
    (instance,) = t.find_resources("AWS::EC2::Instance").values()
    param = instance["Properties"]["ImageId"]["Ref"]
    assert t.to_json()["Parameters"][param]["Default"] == "/lowlat/tuned-ami-id"
    assert AL2023_ARM64_PARAMETER not in json.dumps(t.to_json()["Parameters"])


def test_debian12_has_no_image_pipeline_and_its_hosts_boot_debians_image():
    s = synth("debian12")
    assert s.ami is None and set(s.templates()) == {"TradingHostStack"}
    t = s.hosts_template.to_json()
    assert ADAPTERS["debian12"].ssm_image_parameter in json.dumps(t["Parameters"])
    script = "\n".join(user_data_script(s.config.profile, "userdata"))
    assert "apt-get" in script and "python3.11-venv" in script and "dnf" not in script


@pytest.mark.parametrize("host_os", ["al2023", "ubuntu2404", "debian12"])
def test_user_data_is_valid_bash(host_os):
    for mode in ("userdata", "bake") if host_os != "debian12" else ("userdata",):
        profile = DeploymentConfig(host_os=host_os).profile
        script = "#!/bin/bash\n" + "\n".join(user_data_script(profile, mode))
        result = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert result.returncode == 0, result.stderr


def test_user_data_unpacks_the_rendered_files_with_their_modes(tmp_path):
    # the script's own extraction line, run by bash into a scratch root (LOWLAT_ROOT) instead of /
    profile = DeploymentConfig(instance_type="c7g.2xlarge").profile
    script = user_data_script(profile, "userdata")
    (command,) = [c for c in script if c.startswith("basenc --z85 -d")]
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{ROOT_LINE}\n{command}"],
        check=True,
        env={"PATH": "/usr/bin:/bin", "LOWLAT_ROOT": str(tmp_path)},
    )
    for path, (text, mode) in host_files(profile).items():
        written = tmp_path / path.lstrip("/")
        assert written.read_text() == text, path
        assert written.stat().st_mode & 0o777 == mode, path


def test_user_data_carries_exactly_the_rendered_files():
    profile = DeploymentConfig().profile
    script = "\n".join(user_data_script(profile, "userdata"))
    encoded = script.split("--no-same-owner\n")[1].split("\nEOF")[0]
    archive = unz85(encoded)
    assert archive == files_archive(profile)  # same bytes every time for one profile
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(archive))) as tar:
        got = {"/" + m.name: (tar.extractfile(m).read().decode(), m.mode) for m in tar}
    assert got == host_files(profile)
    assert set(cloudwatch.agent_files(profile)) <= set(got)
    assert "/etc/lowlat/profile.toml" in got


@pytest.mark.parametrize("host_os", ["al2023", "ubuntu2404"])
def test_user_data_fits_even_for_the_largest_host(host_os):
    config = DeploymentConfig(
        instance_type="c8g.48xlarge", allowed_cidrs=("10.0.0.0/8",), host_os=host_os
    )
    script = "#!/bin/bash\n" + "\n".join(user_data_script(config.profile, "userdata"))
    assert len(script.encode()) <= USER_DATA_LIMIT


# ------------------------------------------------------------------------------ image pipeline


def _pipeline_template(host_os: str = "al2023") -> Template:
    stack = cdk.Stack()
    TunedImagePipeline(
        stack,
        "Pipeline",
        deployment_name="lowlat",
        profile=DeploymentConfig(host_os=host_os).profile,
        instance_type="c6g.xlarge",
        wheel_s3_uri="s3://bucket/dist/lowlat-0.1.0-py3-none-any.whl",
        wheel_version_key="s3://bucket/dist/lowlat-0.1.0-py3-none-any.whl",
        ami_parameter_name="/lowlat/tuned-ami-id",
    )
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def pipeline() -> Template:
    return _pipeline_template()


def test_component_is_the_ami_document(pipeline):
    (component,) = pipeline.find_resources("AWS::ImageBuilder::Component").values()
    props = component["Properties"]
    assert props["Data"] == imagebuilder.component_document(DeploymentConfig().profile)
    assert props["Platform"] == "Linux"
    assert props["Version"].startswith("1.0.")
    assert props["SupportedOsVersions"] == ["Amazon Linux 2023"]


def test_the_ubuntu_pipeline_builds_on_canonicals_image():
    t = _pipeline_template("ubuntu2404")
    (component,) = t.find_resources("AWS::ImageBuilder::Component").values()
    props = component["Properties"]
    ubuntu = DeploymentConfig(host_os="ubuntu2404").profile
    assert props["Data"] == imagebuilder.component_document(ubuntu)
    assert props["SupportedOsVersions"] == ["Ubuntu 24"]
    assert "apt-get" in props["Data"] and "dnf install" not in props["Data"]
    t.has_resource_properties(
        "AWS::ImageBuilder::ImageRecipe",
        {
            "ParentImage": f"ssm:{UBUNTU_ARM64_PARAMETER}",
            "BlockDeviceMappings": [Match.object_like({"DeviceName": "/dev/sda1"})],
            "Description": "stock Ubuntu 24.04 LTS arm64 + the lowlat tuning component",
        },
    )
    # a different parent image is a different recipe version (recipes are immutable)
    (recipe,) = t.find_resources("AWS::ImageBuilder::ImageRecipe").values()
    (al2023,) = _pipeline_template().find_resources("AWS::ImageBuilder::ImageRecipe").values()
    assert recipe["Properties"]["Version"] != al2023["Properties"]["Version"]


def test_no_pipeline_for_an_os_image_builder_cannot_build():
    with pytest.raises(ValueError, match="Image Builder cannot build Debian 12"):
        _pipeline_template("debian12")


def test_recipe_builds_on_al2023_arm64_with_the_wheel(pipeline):
    pipeline.has_resource_properties(
        "AWS::ImageBuilder::ImageRecipe",
        {
            # AL2023 arm64 through its public SSM parameter, as the hosts boot it
            "ParentImage": f"ssm:{AL2023_ARM64_PARAMETER}",
            "BlockDeviceMappings": [Match.object_like({"DeviceName": "/dev/xvda"})],
            "Components": [
                {
                    "ComponentArn": Match.any_value(),
                    "Parameters": [
                        {
                            "Name": imagebuilder.WHEEL_PARAMETER,
                            "Value": ["s3://bucket/dist/lowlat-0.1.0-py3-none-any.whl"],
                        }
                    ],
                }
            ],
        },
    )
    pipeline.has_resource_properties(
        "AWS::ImageBuilder::InfrastructureConfiguration",
        {
            "InstanceTypes": ["c6g.xlarge"],
            "TerminateInstanceOnFailure": True,
            "InstanceMetadataOptions": {"HttpTokens": "required"},
        },
    )


def test_distribution_publishes_the_image_id_to_ssm(pipeline):
    pipeline.has_resource_properties(
        "AWS::ImageBuilder::DistributionConfiguration",
        {
            "Distributions": [
                Match.object_like(
                    {
                        "SsmParameterConfigurations": [
                            {"ParameterName": "/lowlat/tuned-ami-id", "DataType": "aws:ec2:image"}
                        ]
                    }
                )
            ]
        },
    )
    pipeline.resource_count_is("AWS::ImageBuilder::ImagePipeline", 1)
    pipeline.resource_count_is("AWS::ImageBuilder::Image", 1)
    pipeline.has_resource_properties(
        "AWS::ImageBuilder::ImagePipeline",
        {"ImageTestsConfiguration": {"ImageTestsEnabled": True}, "Status": "ENABLED"},
    )


def test_build_role_reads_only_the_wheel(pipeline):
    statements = [
        s
        for p in pipeline.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert [s["Action"] for s in statements] == ["s3:GetObject"]
    assert "lowlat-0.1.0-py3-none-any.whl" in json.dumps(statements[0]["Resource"])


# ------------------------------------------------------------------------------ alarm topic


def test_alarm_topic_is_encrypted_tls_only_and_subscribes_the_email():
    stack = cdk.Stack()
    AlarmTopic(stack, "AlarmTopic", deployment_name="lowlat", email="oncall@example.com")
    t = Template.from_stack(stack)
    t.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    t.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    t.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )
    t.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )


def test_alarm_topic_without_email_has_no_subscription():
    stack = cdk.Stack()
    AlarmTopic(stack, "AlarmTopic", deployment_name="lowlat", email=None)
    Template.from_stack(stack).resource_count_is("AWS::SNS::Subscription", 0)


# ------------------------------------------------------------------------------ stacks


def _outputs(template: Template) -> dict:
    return template.to_json()["Outputs"]


def test_host_stack_outputs_for_one_host():
    s = synth("default")
    outputs = _outputs(s.hosts_template)
    assert set(outputs) == {
        "Host1InstanceId",
        "Host1PublicDnsName",
        "Host1TelemetryUrl",
        "Host1SsmCommand",
        "HostCount",
        "DashboardName",
        "DashboardUrl",
        "AlarmTopicArn",
    }
    assert outputs["HostCount"]["Value"] == "1"
    assert outputs["DashboardName"]["Value"] == s.hosts.monitoring.dashboard_name
    ssm = json.dumps(outputs["Host1SsmCommand"]["Value"])
    assert "aws ssm start-session --target " in ssm
    assert outputs["Host1TelemetryUrl"]["Value"] == "http://127.0.0.1:8000/"  # loopback only
    assert "#dashboards:name=" in json.dumps(outputs["DashboardUrl"]["Value"])
    s.hosts_template.resource_count_is("AWS::EC2::Instance", 1)
    s.hosts_template.resource_count_is("AWS::EC2::PlacementGroup", 0)
    assert _ingress_of_stack(s.hosts_template) == []


def _ingress_of_stack(template: Template) -> list[dict]:
    sgs = template.find_resources(
        "AWS::EC2::SecurityGroup",
        {"Properties": {"GroupDescription": Match.string_like_regexp("allowedCidrs")}},
    )
    (sg,) = sgs.values()
    return sg["Properties"].get("SecurityGroupIngress", [])


def test_host_stack_with_two_hosts():
    s = synth("two_hosts")
    t = s.hosts_template
    outputs = _outputs(t)
    for i in (1, 2):
        for kind in ("InstanceId", "PublicDnsName", "TelemetryUrl", "SsmCommand"):
            assert f"Host{i}{kind}" in outputs
    assert "Host3InstanceId" not in outputs
    assert outputs["HostCount"]["Value"] == "2"
    assert ":8000/" in json.dumps(outputs["Host1TelemetryUrl"]["Value"])
    assert "PublicDnsName" in json.dumps(outputs["Host1TelemetryUrl"]["Value"])
    t.resource_count_is("AWS::EC2::Instance", 2)
    t.resource_count_is("AWS::EC2::PlacementGroup", 1)
    assert len(_ingress_of_stack(t)) == 4
    t.resource_count_is("AWS::SNS::Subscription", 1)
    assert s.ami.termination_protection and s.hosts.termination_protection
    # the monitoring construct watches every host
    assert len(s.hosts.monitoring.alarms) > 0


def test_stacks_are_environment_agnostic_and_named_for_fabric():
    s = synth("default")
    for stack in (s.ami, s.hosts):
        assert cdk.Token.is_unresolved(stack.account) and cdk.Token.is_unresolved(stack.region)
    assert (s.ami.stack_name, s.hosts.stack_name) == stack_names(s.config)
    assert stack_names(s.config) == ("LowlatTunedAmi", "LowlatHosts")
    assert s.ami not in s.hosts.dependencies  # userdata mode: hosts do not need the image


def test_bake_mode_hosts_depend_on_the_image_stack():
    s = synth("bake")
    assert s.ami in s.hosts.dependencies
    params = s.hosts_template.to_json()["Parameters"]
    assert any(p.get("Default") == "/lowlat/tuned-ami-id" for p in params.values())
    infrastructure = s.ami_template.find_resources("AWS::ImageBuilder::InfrastructureConfiguration")
    assert "SubnetId" not in next(iter(infrastructure.values()))["Properties"]  # default VPC
    s.ami_template.has_parameter(
        "WheelS3Uri", {"Type": "String", "Default": "s3://bucket/lowlat-0.1.0.whl"}
    )
    assert set(_outputs(s.ami_template)) == {"ImageId", "ImagePipelineArn", "TunedAmiParameter"}


def test_existing_vpc_deployment():
    s = synth("existing_vpc")
    t = s.hosts_template
    t.resource_count_is("AWS::EC2::VPC", 0)
    t.has_resource_properties(
        "AWS::EC2::Instance",
        {
            "NetworkInterfaces": [
                Match.object_like(
                    {"SubnetId": "subnet-0123456789abcdef0", "AssociatePublicIpAddress": True}
                )
            ]
        },
    )
    assert stack_names(s.config) == ("LowlatProdTunedAmi", "LowlatProdHosts")
    assert s.hosts.stack_name == "LowlatProdHosts"
    # the image builds in the same VPC, with an outbound-only security group
    s.ami_template.has_resource_properties(
        "AWS::ImageBuilder::InfrastructureConfiguration",
        {"SubnetId": "subnet-0123456789abcdef0", "SecurityGroupIds": [Match.any_value()]},
    )
    (sg,) = s.ami_template.find_resources("AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in sg["Properties"]


def test_a_pinned_image_id_replaces_the_ssm_parameter():
    t = _hosts_template(ami_id="ami-0123456789abcdef0")
    t.has_resource_properties("AWS::EC2::Instance", {"ImageId": "ami-0123456789abcdef0"})
    assert AL2023_ARM64_PARAMETER not in json.dumps(t.to_json().get("Parameters", {}))


def test_telemetry_listens_beyond_loopback_only_with_allowed_cidrs():
    closed = host_files(DeploymentConfig().profile)
    assert 'host = "127.0.0.1"' in closed[render.SERVICE_CONFIG][0]
    assert "IPAddressDeny=any" in closed[render.TELEMETRY_UNIT][0]
    opened = host_files(DeploymentConfig(allowed_cidrs=("203.0.113.0/24",)).profile)
    assert 'host = "0.0.0.0"' in opened[render.SERVICE_CONFIG][0]
    assert "IPAddressDeny" not in opened[render.TELEMETRY_UNIT][0]
