"""``fab deploy``, ``rollback``, ``status``, ``logs`` and ``check-host`` end to end.

Against a real OpenSSH server on 127.0.0.1 (tests/support/loopback.py), into a throwaway root:
the real ``fab`` CLI builds the wheel from ``git archive HEAD`` and the wheelhouse, uploads
them, makes the venv offline, renders the units with ``python -m ami apply``, swaps ``current``
and starts the real service from the installed units' own ExecStart lines through the test
supervisor (tests/support/unit_supervisor.py: no systemd runs as PID 1 here).

The tests share one host: the module-scoped fixture ``first`` makes the first deploy there and
says what it made, so each test needs only the fixtures it names and any one of them runs on
its own (``pytest tests/ops/test_release.py::test_check_host_prints_the_hosts_report``). In
file order: first deploy, status/logs/check-host, a release that cannot become ready (rolled
back by itself), a second good deploy, then ``fab rollback``.

The engine busy-polls: run this module under ``flock /tmp/lowlat-spin.lock`` when others share
the machine, e.g. ``flock /tmp/lowlat-spin.lock .venv/bin/python -m pytest
tests/ops/test_release.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass

import httpx
import pytest

from tests.support.fabtest import NO_PACKAGE_INDEX, UNITS, make_host, output

pytestmark = pytest.mark.slow

RELEASE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def wheelhouse_cache(tmp_path_factory):
    """The operator's wheelhouse cache, fresh for this module: its first deploy fills it (from
    pip's own cache or PyPI), the later ones run from it without any network."""
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="module")
def host(ssh_server, wheelhouse_cache, tmp_path_factory):
    h = make_host(tmp_path_factory.mktemp("fabhost"), ssh_server.ssh_config, wheelhouse_cache)
    yield h
    h.stop()


@dataclass(frozen=True)
class Deployed:
    """What the first deploy made: its release, and what ``fab deploy`` said."""

    name: str
    result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def first(host) -> Deployed:
    """The module's first deploy to ``host`` (it also fills the wheelhouse cache)."""
    result = host.fab("deploy", "--host", "lowlat-loopback")
    assert result.returncode == 0, output(result)
    return Deployed(_current(host), result)


def _current(host) -> str:
    return os.readlink(host.current).rstrip("/").rsplit("/", 1)[-1]


def _ready(host) -> httpx.Response:
    return httpx.get(host.ready_url, timeout=5, trust_env=False)


def _records(host) -> list[list[str]]:
    return [line.split() for line in (host.prefix / "releases.log").read_text().splitlines()]


def test_first_deploy_reaches_ready(host, first):
    result = first.result
    out = output(result)
    assert result.returncode == 0, out
    name = _current(host)
    assert name == first.name
    assert RELEASE.match(name), name
    release = host.prefix / "releases" / name
    assert (release / "venv/bin/trading-service").exists()
    assert (release / "venv/bin/python").exists()
    # installed offline from the uploaded wheelhouse; the operator-only libraries are not there
    assert list((release / "wheelhouse").glob("numba-*.whl"))
    assert not list((release / "wheelhouse").glob("fabric-*.whl"))
    assert not list((release / "wheelhouse").glob("aws_cdk_lib-*.whl"))
    # the warm-up may compile as long as the deploy waits for /ready (lowlat.ready_timeout_s)
    warm = tomllib.loads((release / "warm.toml").read_text())
    assert warm["service"]["ready_timeout_s"] == 240.0
    for unit in UNITS:
        text = (host.root / "etc/systemd/system" / unit).read_text()
        assert "ExecStart=/opt/lowlat/current/venv/bin/trading-service" in text
    assert (host.root / "etc/lowlat/service.toml").exists()
    pid = host.engine_pid()
    assert pid is not None
    os.kill(pid, 0)  # alive
    assert _ready(host).status_code == 200
    records = _records(host)
    assert records[-1][1:3] == ["deploy", name]
    # every step said on its own line
    for words in ("host: x86_64", "uploading to", "creating the venv offline", "warming",
                  "python -m ami apply", "current -> releases/", "waiting for /ready"):  # fmt: skip
        assert words in out, (words, out)
    assert f"deploy: ok  {name} is live and ready" in out
    calls = (host.root / "run/lowlat-test-supervisor/calls.log").read_text()
    assert "daemon-reload" in calls and "restart " + " ".join(UNITS) in calls
    # enabled, so that a reboot brings the release back (the lab's reboot step found them not)
    assert "enable " + " ".join(UNITS) in calls
    for unit in UNITS:
        assert (host.root / f"run/lowlat-test-supervisor/{unit}.enabled").exists()
    # the venv's modules are byte-compiled at deploy time: the units' venv is read-only to them
    assert list((release / "venv/lib").glob("python3*/site-packages/numba/__pycache__/*.pyc"))


def test_the_deployed_api_serves_the_dashboard_from_the_release_wheel(host, first):
    base = host.ready_url.removesuffix("/ready")
    page = httpx.get(f"{base}/", headers={"Accept": "text/html"}, timeout=5, trust_env=False)
    assert page.status_code == 200 and "<title>lowlat telemetry</title>" in page.text
    for asset in (
        "static/dashboard.js",
        "static/vendor/uplot/uPlot.iife.min.js",
        "static-offline-docs/swagger-ui-bundle.js",  # /docs without a CDN
    ):
        response = httpx.get(f"{base}/{asset}", timeout=5, trust_env=False)
        assert response.status_code == 200, asset
    # the files are the installed wheel's (package data), not this checkout's
    site = host.prefix / "releases" / first.name / "venv/lib"
    assert list(site.glob("python3*/site-packages/service/telemetry/web/static/vendor/uplot/*.js"))


def test_status_shows_units_release_and_ready(host, first):
    result = host.fab("status", "--host", "lowlat-loopback", timeout=120)
    out = output(result)
    assert result.returncode == 0, out
    assert "lowlat-engine.service: active" in out
    assert "lowlat-telemetry.service: active" in out
    assert f"release: {first.name}" in out
    assert "ready: yes" in out
    assert re.search(r"tuning: \d+ passed, \d+ failed", out), out
    assert "last bench: none" in out

    # what `fab bench` leaves on the host (ops/bench.py last_result), shown in one line
    bench = host.prefix / "bench/last.json"
    bench.parent.mkdir(parents=True, exist_ok=True)
    summary = "2026-11-22T01:00:00Z SLOs met: 100k p99 12.00 µs PASS"
    bench.write_text(json.dumps({"summary": summary, "report": "bench-results/x", "ok": True}))
    out = output(host.fab("status", "--host", "lowlat-loopback", timeout=120))
    assert f"last bench: {summary} (report: bench-results/x)" in out, out


def test_logs_show_the_units_output(host, first):
    result = host.fab("logs", "--host", "lowlat-loopback", "--since", "15m", timeout=120)
    out = output(result)
    assert result.returncode == 0, out
    assert "no lowlat-test-no-journalctl on this host" in out
    assert "engine.log" in out and "telemetry.log" in out
    assert "telemetry API for lowlat" in out  # the telemetry unit's first line


def test_check_host_prints_the_hosts_report(host, first):
    result = host.fab("check-host", "--host", "lowlat-loopback", timeout=120)
    out = output(result)
    # this container is not a tuned host: the report fails, and the task says so by its exit
    assert result.returncode in (0, 1), out
    assert re.search(r"\d+ passed, \d+ failed, \d+ not applicable", out), out
    assert "Traceback" not in out


def test_release_that_cannot_become_ready_is_rolled_back(host, first):
    # A profile the renderer accepts but the engine refuses at start: its shm_dir is missing.
    host.write_profile(shm_dir="/nonexistent/lowlat-test-shm")
    try:
        result = host.fab("deploy", "--host", "lowlat-loopback")
    finally:
        host.write_profile()
    out = output(result)
    assert result.returncode != 0, out
    assert f"rolled back to {first.name}, which is ready" in out, out
    assert "shm_dir" in out  # the engine's own reason, from its log
    assert "Traceback" not in out
    assert _current(host) == first.name
    assert _ready(host).status_code == 200
    # the config the previous release runs with is back, not the failed release's
    assert "/nonexistent" not in (host.root / "etc/lowlat/service.toml").read_text()
    assert [r[2] for r in _records(host)] == [first.name]  # the failure is not recorded


def test_second_deploy_then_rollback(host, first):
    # the wheelhouse cache is warm now: this deploy must need no package index at all
    result = host.fab("deploy", "--host", "lowlat-loopback", env=NO_PACKAGE_INDEX)
    assert result.returncode == 0, output(result)
    second = _current(host)
    assert second != first.name

    result = host.fab("rollback", "--host", "lowlat-loopback")
    out = output(result)
    assert result.returncode == 0, out
    assert f"{first.name} is live and ready (was {second})" in out
    assert _current(host) == first.name
    assert _ready(host).status_code == 200
    assert _records(host)[-1][1:3] == ["rollback", first.name]

    # nothing deployed before the first release: a second rollback has nowhere to go
    result = host.fab("rollback", "--host", "lowlat-loopback", timeout=120)
    out = output(result)
    assert result.returncode == 1, out
    assert "no earlier release to roll back to" in out
    assert _current(host) == first.name
