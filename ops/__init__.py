"""Operator-side work behind the Fabric tasks (fabfile.py): hosts, releases, benchmarks.

``hosts`` finds and reaches the hosts and runs a task on each; ``release`` ships, rolls back and
inspects releases; ``bench``, ``report`` and ``publish`` measure a live host, draw the report
and send the figures to CloudWatch; ``ui`` is the terminal output they share. Nothing here
imports numba or the service's hot path: ``fab --list`` stays fast.
"""
