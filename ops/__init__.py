"""Operator-side work behind the Fabric tasks (fabfile.py): hosts, releases, benchmarks.

``hosts`` finds and reaches the hosts and runs a task on each; ``remote`` runs commands on one
and reads what it runs; ``build`` makes a release locally from git; ``release`` ships it and
rolls back; ``inspect`` holds the read-only tasks (status, logs, check-host); ``bench``,
``report`` and ``publish`` measure a live host, draw the report and send the figures to
CloudWatch, over the documents typed in ``bench_doc``; ``ui`` is the terminal output they
share. Nothing here imports numba or the service's hot path: ``fab --list`` stays fast.
"""
