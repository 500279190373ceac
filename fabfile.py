"""Fabric tasks that ship and measure lowlat on its hosts: ``fab --list`` is the manual.

    fab deploy --host H [--ref REV]      build, upload, switch `current`, restart, gate on /ready
    fab rollback --host H                back to the previous recorded release, same gate
    fab status --host H                  units, release, /ready, tuning, last bench
    fab logs --host H [--since 1h]       the service's logs
    fab check-host --host H              the host's tuning against its profile
    fab bench --host H [--rates 100k,1m] live benchmark with a report under bench-results/

Every task takes one host (``--host``), several (``--hosts a,b,c``, run in parallel with a fleet
summary) or a CloudFormation stack whose outputs name them (``--stack LowlatHosts``, through
boto3). SSH user, key and port come from the usual places: ``~/.ssh/config`` (or ``fab -S
FILE``), Fabric's config files, ``fab -i KEY``. To go through SSM Session Manager instead of
an open SSH port, see runbooks/reaching-hosts.md.

Settings under ``lowlat:`` in a Fabric config file (``fab --config FILE``, ``fabric.yaml``,
``~/.fabric.yaml``) override the defaults in ``ops.hosts.SETTINGS``, the table of what each
means and accepts; the tests use them to deploy into a throwaway root on a loopback SSH server.

Exit status: 0 done; 1 a host failed (its own line says why: FAILED and the reason); 2 bad
input, refused before any host is reached: a setting, a flag, a --ref, an output directory
that cannot be written. Bad input is one line, ``fab TASK: what, where, what would be right``:
every task goes through the one handler of ``ops.hosts.OpsError`` (``refusing_bad_input``).

The work is in ``ops/``; this file only declares the tasks. It never imports numba or the hot
path: ``fab --list`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import sys

from fabric import task
from invoke import Collection

from ops import bench as bench_ops
from ops import inspect as inspect_ops
from ops import release
from ops.hosts import Settings, for_each_host, refusing_bad_input

TARGETS_HELP = {
    "host": "the host to act on (name, address or ~/.ssh/config alias)",
    "hosts": "several hosts, comma-separated: run on all in parallel",
    "stack": "take the hosts from this CloudFormation stack's outputs (boto3)",
}


@task(help={**TARGETS_HELP, "ref": "git revision to build (default HEAD)"})
def deploy(c, host=None, hosts=None, stack=None, ref="HEAD"):
    """Ship a release built from REV; roll back by itself when it does not become ready."""
    sha = release.preflight(Settings.from_config(c.config), ref)
    for_each_host(
        c, "deploy", host, hosts, stack, lambda conn, s: release.deploy(conn, s, ref=ref, sha=sha)
    )


@task(help=TARGETS_HELP)
def rollback(c, host=None, hosts=None, stack=None):
    """Go back to the previous recorded release and wait until it is ready."""
    for_each_host(c, "rollback", host, hosts, stack, release.rollback)


@task(help=TARGETS_HELP)
def status(c, host=None, hosts=None, stack=None):
    """Show unit states, current release, /ready reasons, tuning and the last bench."""
    for_each_host(c, "status", host, hosts, stack, inspect_ops.status)


SINCE_HELP = (
    "how far back: a duration (15m, 2h, 2d) or a time (2026-11-21 13:00, today, yesterday); "
    "times are UTC for the log files, the host's time zone for the journal (default 1h)"
)


@task(help={**TARGETS_HELP, "since": SINCE_HELP})
def logs(c, host=None, hosts=None, stack=None, since="1h"):
    """Print the engine's and telemetry API's logs since SINCE.

    The units' journal, then the lines of /var/log/lowlat/{engine,telemetry}.log stamped at or
    after SINCE: a duration counts back from the host's clock, a date or time is read as UTC
    (the lines' stamps are UTC; journalctl reads it in the host's time zone, UTC on AL2023).
    """
    # a bad --since (or a date that does not exist) is one line before any host is reached
    inspect_ops.since_cutoff(since, dt.datetime.now(dt.UTC))
    for_each_host(
        c, "logs", host, hosts, stack, lambda conn, s: inspect_ops.logs(conn, s, since=since)
    )


@task(name="check-host", help=TARGETS_HELP)
def check_host(c, host=None, hosts=None, stack=None):
    """Judge the host's tuning against its installed profile (exit 1 when it fails)."""
    for_each_host(c, "check-host", host, hosts, stack, inspect_ops.check_host)


@task(
    help={
        **TARGETS_HELP,
        "duration": "seconds of load per offered rate (default 60)",
        "rates": "offered rates, comma-separated, e.g. 100k,1m,2.5m (default 100k,1m)",
        "out": "report under DIR/<host>/ (default bench-results/<host>/<UTC timestamp>/)",
        "publish": "also send the figures to CloudWatch, where the dashboard shows them",
    }
)
def bench(  # noqa: PLR0913 -- Fabric makes each parameter a command-line option
    c, host=None, hosts=None, stack=None, duration="60", rates="100k,1m", out=None, publish=False
):
    """Benchmark a host (stops lowlat-engine meanwhile): check-host, jitter, service bench, report.

    Exits 1 when an SLO is missed. The engine is started again afterwards, whatever happens.
    """
    options = bench_ops.BenchOptions.parse(duration=duration, rates=rates, out=out, publish=publish)
    for_each_host(c, "bench", host, hosts, stack, lambda conn, s: bench_ops.bench(conn, s, options))


ns = Collection.from_module(sys.modules[__name__])
for _task in ns.tasks.values():
    # The one handler of bad input, for every task: an OpsError that escapes one is one line
    # on stderr and exit status 2, no traceback (a host's own failure is its FAILED line, 1).
    _task.body = refusing_bad_input(f"fab {_task.name}", _task.body)
# Remote commands never read this terminal's stdin: fleets run one thread per host, and
# nothing here is interactive (sudo must not prompt: use NOPASSWD or run as root).
# No "lowlat" defaults here: Settings.from_config applies them, after checking the section
# (invoke would refuse to merge a "lowlat:" that is not a mapping over them, with a traceback).
ns.configure({"run": {"in_stream": False}})
