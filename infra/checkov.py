"""checkov for lowlat: every check we skip, where, and why, in one table.

checkov (the Bridgecrew/Prisma Cloud IaC scanner) runs over every synthesized template in
tests/infra/test_checkov.py and must report no failed check. A finding is fixed in the CDK code
where that is cheap and right (the flow-log group's KMS key: ``infra.network.flow_log_key``);
what remains is skipped here, on the resources it concerns only, with its reason.

checkov reads skips from a resource's CloudFormation metadata::

    Metadata: {checkov: {skip: [{id: CKV_AWS_88, comment: "why"}]}}

``apply_skips(app)`` adds an Aspect that writes exactly that onto every resource a ``SKIPS`` row
matches, so a skip is never spelled anywhere else (``grep -rn CKV_ infra/`` finds them all), and
the test's expected list of (check, resource) pairs fails when one appears that nobody reviewed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jsii
from aws_cdk import Aspects, CfnResource, CustomResourceProviderBase, IAspect
from aws_cdk import aws_ec2 as ec2
from constructs import IConstruct

from infra.host import TradingHosts


def _cdk_provider_handler(resource: CfnResource) -> bool:
    """The Lambda function of one of CDK's own custom-resource providers (such as the one
    ``restrict_default_security_group`` adds to strip the VPC's default security group): CDK
    writes its code, role and properties; we only choose to use the feature."""
    return resource.cfn_resource_type == "AWS::Lambda::Function" and isinstance(
        resource.node.scope, CustomResourceProviderBase
    )


def _trading_host(resource: CfnResource) -> bool:
    """A trading host's instance (``infra.host.TradingHosts``)."""
    owner = resource.node.scope
    return (
        isinstance(resource, ec2.CfnInstance)
        and owner is not None
        and isinstance(owner.node.scope, TradingHosts)
    )


@dataclass(frozen=True)
class Resources:
    """Which resources a row of ``SKIPS`` concerns: in words, and as a test on the L1."""

    what: str
    matches: Callable[[CfnResource], bool]


CDK_PROVIDER_HANDLER = Resources(
    "the Lambda function of a CDK custom-resource provider", _cdk_provider_handler
)
TRADING_HOST = Resources("a trading host's EC2 instance", _trading_host)

_CDK_OWNS_IT = (
    "CDK generates this function for one of its own custom resources (in lowlat: the one "
    "that removes the rules of the VPC's default security group at deploy time) and owns its "
    "code and properties; "
)

# which resources -> {checkov check id: why the check does not apply to them}
SKIPS: dict[Resources, dict[str, str]] = {
    CDK_PROVIDER_HANDLER: {
        "CKV_AWS_115": _CDK_OWNS_IT
        + "it runs only when CloudFormation creates, updates or deletes the resource, once per "
        "stack operation, so there is no load for a reserved-concurrency limit to cap, and "
        "reserving concurrency would take it from the account's unreserved pool for nothing.",
        "CKV_AWS_116": _CDK_OWNS_IT
        + "CloudFormation invokes it and waits for its answer on a pre-signed S3 URL, and its "
        "handler reports any failure there: the stack operation fails and rolls back, which is "
        "where a failure is seen, and running the operation again is the retry. A dead-letter "
        "queue would only keep an event nobody can replay.",
        "CKV_AWS_117": _CDK_OWNS_IT
        + "it calls only the EC2 API and answers CloudFormation through S3, holds no data and "
        "reaches nothing inside the VPC; in the VPC it would need a NAT gateway or interface "
        "endpoints, which the VPC has none of (public subnets only, by design: infra/network.py).",
    },
    TRADING_HOST: {
        "CKV_AWS_88": "The hosts live in a public subnet with a public IP by design "
        "(infra/network.py): it is their only path to dnf/apt, PyPI and the SSM and CloudWatch "
        "endpoints (a new VPC has public subnets and no NAT gateway, an hourly charge for a "
        "path nothing else needs; an existing VPC is given by its public subnets), and with "
        "allowedCidrs it is the address operators reach SSH and the telemetry API on. Inbound, "
        "the security group admits only allowedCidrs, to those two ports; without allowedCidrs "
        "it admits nothing (people come in through SSM Session Manager).",
    },
}


def skips_for(resource: CfnResource) -> list[dict[str, str]]:
    """checkov's skip entries for ``resource``: every matching row of ``SKIPS``, by check id."""
    found = {
        check: reason
        for resources, checks in SKIPS.items()
        if resources.matches(resource)
        for check, reason in checks.items()
    }
    return [{"id": check, "comment": reason} for check, reason in sorted(found.items())]


@jsii.implements(IAspect)
class CheckovSkips:
    """Writes ``skips_for`` into each resource's ``Metadata.checkov.skip``, keeping any skips
    already there (by id)."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource):
            return
        skips = skips_for(node)
        if not skips:
            return
        existing = (node.get_metadata("checkov") or {}).get("skip", [])
        merged = {entry["id"]: entry for entry in [*existing, *skips]}
        node.add_metadata("checkov", {"skip": [merged[check] for check in sorted(merged)]})


def apply_skips(scope: IConstruct) -> None:
    """Add ``SKIPS`` to every matching resource under ``scope`` at synthesis."""
    Aspects.of(scope).add(CheckovSkips())
