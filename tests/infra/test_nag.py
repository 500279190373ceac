"""cdk-nag's AwsSolutions pack over both stacks: every finding fixed or acknowledged with a
written reason (infra/nag.py), in each AMI mode and for one and several hosts."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Annotations, Match

from infra.nag import apply_checks
from tests.support.infra_apps import VARIANTS, synth

NAG = Match.string_like_regexp("AwsSolutions-.*")


def _findings(stack: cdk.Stack) -> list[str]:
    annotations = Annotations.from_stack(stack)
    found = annotations.find_error("*", NAG) + annotations.find_warning("*", NAG)
    return [f"{f.id}: {f.entry.data}" for f in found]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("which", ["ami", "hosts"])
def test_no_unacknowledged_finding(variant, which):
    stack = getattr(synth(variant), which)
    if stack is None:  # no image pipeline for this OS
        assert (variant, which) == ("debian12", "ami")
        return
    assert _findings(stack) == []


def test_the_checks_do_catch_a_finding():
    # the same machinery on a stack with a known violation: an unencrypted topic (SNS2/SNS3)
    app = cdk.App()
    stack = cdk.Stack(app, "Bad")
    sns.Topic(stack, "Plain")
    apply_checks(app)
    app.synth()
    assert any("AwsSolutions-SNS" in f for f in _findings(stack))


def test_acknowledgements_have_reasons():
    s = synth("default")
    for stack in (s.ami, s.hosts):
        suppressions = stack.template_options.metadata.get("cdk_nag", {}).get("rules_to_suppress")
        assert suppressions, stack.stack_name
        for rule in suppressions:
            assert len(rule["reason"]) >= 60, rule  # a sentence that says why, not a shrug
