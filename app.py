#!/usr/bin/env python3
"""lowlat's CDK app: read the context once into a ``DeploymentConfig``, build both stacks.

    cdk synth                         # cdk.json runs this file with the merged context
    cdk synth -c hostCount=2 -c allowedCidrs=203.0.113.0/24

The only place that reads the CDK context (and so the environment). A bad context value, or an
unknown camelCase key (a typo such as ``hostcount``), is one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

# jsii prints a ten-line banner about Node 20's end of life on every run, which buries the
# one-line config errors below; the Node version is the machine's, not the app's, to fix
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk

from contracts.constants import EXIT_USAGE
from infra.config import CONTEXT_KEYS, ConfigError, DeploymentConfig, unknown_keys
from infra.stacks import build_app


def passed_context_keys() -> list[str]:
    """The context keys the CLI passed (cdk.json's and -c's arrive in CDK_CONTEXT_JSON)."""
    try:
        context = json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}")
    except (ValueError, RecursionError):  # not JSON, a huge number, or nested too deep
        return []
    return list(context) if isinstance(context, dict) else []


def main() -> int:
    app = cdk.App()
    typos = unknown_keys(passed_context_keys())
    if typos:
        print(
            f"lowlat: unknown context key(s) {', '.join(typos)}; known: {', '.join(CONTEXT_KEYS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        config = DeploymentConfig.from_context(app.node.try_get_context)
    except ConfigError as exc:
        print(f"lowlat: {exc}", file=sys.stderr)
        return EXIT_USAGE
    build_app(app, config)  # with cdk-nag's AwsSolutions pack and our acknowledgements
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
