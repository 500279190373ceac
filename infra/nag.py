"""cdk-nag for lowlat: the AwsSolutions pack, and every finding we accept, with the reason.

cdk-nag is pinned to 2.x (pyproject.toml): 3.x replaced ``Aspects``/``NagSuppressions`` with a
``Validations`` API, which failed here through ``Aspects`` ("aspect.visit is not a function").
``apply_checks(app)`` adds the pack; ``acknowledge``
adds the suppressions to each stack. A finding not acknowledged here shows as an error or
warning annotation on synth, and tests/infra/test_nag.py fails on it.

Each acknowledgement names the rule, the reason, and (where the finding is about specific
resources or IAM entries) the ``applies_to`` entries, so a new wildcard elsewhere still fails.
"""

from __future__ import annotations

from aws_cdk import Aspects, Stack
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import IConstruct

from ami import cloudwatch

SSM_CORE = "Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore"
IMAGE_BUILDER_INSTANCE = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/EC2InstanceProfileForImageBuilder"
)


def apply_checks(scope: IConstruct) -> None:
    """Run the AwsSolutions pack over everything under ``scope`` at synthesis."""
    Aspects.of(scope).add(AwsSolutionsChecks(verbose=True))


def _log_group_arns() -> list[str]:
    groups = sorted({cloudwatch.LOG_GROUP, cloudwatch.PROMETHEUS_LOG_GROUP})
    return [
        f"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{g}"
        ":log-stream:*"
        for g in groups
    ]


def acknowledge_host_stack(stack: Stack, *, termination_protection: bool) -> None:
    """The TradingHostStack's accepted findings."""
    NagSuppressions.add_stack_suppressions(
        stack,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason=(
                    "AmazonSSMManagedInstanceCore is AWS's maintained minimum for Session "
                    "Manager and Run Command; copying it inline would only freeze it. It is the "
                    "only managed policy on the host role."
                ),
                applies_to=[SSM_CORE],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason=(
                    "cloudwatch:PutMetricData has no resource type (its resource must be *); the "
                    "statement is scoped by the cloudwatch:namespace condition to the lowlat "
                    "namespace. Log streams are named by the agent per instance, so the "
                    "statement names the agent's two log groups and any stream in them."
                ),
                applies_to=["Resource::*", *_log_group_arns()],
            ),
            *(
                []
                if termination_protection
                else [
                    NagPackSuppression(
                        id="AwsSolutions-EC29",
                        reason=(
                            "Termination protection is the terminationProtection context key "
                            "(default false so test deployments can be torn down); production "
                            "deployments set it to true."
                        ),
                    )
                ]
            ),
        ],
        apply_to_nested_stacks=True,
    )


def acknowledge_ami_stack(stack: Stack) -> None:
    """The TunedAmiStack's accepted findings."""
    NagSuppressions.add_stack_suppressions(
        stack,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason=(
                    "The build instance needs exactly what Image Builder's own instance policy "
                    "(EC2InstanceProfileForImageBuilder) and SSM core grant: Image Builder drives "
                    "the build through SSM and maintains both policies."
                ),
                applies_to=[SSM_CORE, IMAGE_BUILDER_INSTANCE],
            ),
        ],
    )
