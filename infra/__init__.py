"""lowlat's CDK constructs and stacks, composed by ``app.py``.

- ``config``: the typed, validated deployment config read from the CDK context (light).
- ``network``: the VPC (new, public subnets, no NAT, flow logs; or imported) and the hosts'
  security group.
- ``host``: instance role, cluster placement group, the tuned instances and their user data.
- ``image_pipeline``: EC2 Image Builder, from ``ami.imagebuilder``'s component.
- ``monitoring``: the dashboard and one alarm per ``contracts.alarms`` entry and host.
- ``stacks``: ``TunedAmiStack`` and ``TradingHostStack``, which only compose the above.
- ``nag``: cdk-nag's AwsSolutions pack and every acknowledged finding with its reason.
- ``checkov``: every checkov check skipped, on which resources, with its reason.

Nothing here imports the service or numba: ``cdk synth`` reads ``contracts`` and ``ami`` only
(``lint-imports`` checks it).
"""
