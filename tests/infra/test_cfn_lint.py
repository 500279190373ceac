"""cfn-lint on every synthesized template (both stacks, every test variant): no errors and no
warnings. Informational findings are allowed; nothing is ignored."""

from __future__ import annotations

import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.support.infra_apps import VARIANTS, synth


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_templates_lint_clean(variant):
    problems = []
    for stack, path in synth(variant).templates().items():
        # every region: the stacks are environment-agnostic, so any region may get them
        matches = lint_file(path, ManualArgs(regions=["us-east-1", "eu-west-1", "ap-northeast-1"]))
        problems += [
            f"{stack}: {m.rule.id} {m.message} ({m.path_string})"
            for m in matches
            if m.rule.id[0] in "EW"
        ]
    assert problems == []
