"""The telemetry API over real HTTP against a real running engine.

One engine (`trading-service run`) and one API (`trading-service telemetry`) per module, each
a real process; Prometheus, promtool, hey and schemathesis are the real tools. The engine is
stopped and started again under the running API to prove the API follows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import wait_http
from tests.support.prometheus import PrometheusServer
from tests.support.telemetry_stack import CLI, running_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("telemetry")) as s:
        yield s


def metrics(stack) -> dict[str, list]:
    """Samples by sample name (the parser drops _total from counter family names)."""
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(stack.get("/metrics").text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples, name, **labels) -> float:
    for sample in samples[name]:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise KeyError(f"{name} {labels}")


def test_health_and_ready_with_a_running_engine(stack):
    health = stack.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = stack.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "reasons": []}


def test_info_names_the_service_and_its_stages(stack):
    info = stack.get("/").json()
    assert info["engine_running"] is True and info["engine_pid"] > 0
    assert set(info["stages"]) == {"feed", "engine", "gateway"}
    assert all(s["state"] == "running" for s in info["stages"].values())
    assert info["shm_prefix"] == stack.prefix
    assert info["engine_uptime_s"] > 0
    for link in info["links"].values():
        assert stack.get(link).status_code in (200, 202)  # /host: 202 until the first check


def test_latest_counters_and_rates_move(stack):
    first = stack.get("/latest").json()
    time.sleep(1.0)
    second = stack.get("/latest").json()
    assert second["engine_running"] is True
    rate = second["rates_per_s"]["md_messages"]
    assert rate is not None and 25_000 < rate < 75_000  # offered 50k msgs/s
    assert (
        second["latency_ns_since_start"]["tick_to_order"]["count"]
        > (first["latency_ns_since_start"]["tick_to_order"]["count"])
    )
    window = second["latency_ns"]["tick_to_order"]
    assert window["count"] > 0 and window["p50"] <= window["p99"] <= window["max"]
    assert set(second["rejects"]) >= {"kill_switch", "rate_throttle"}
    assert set(second["rings"]) == {"md", "orders", "fills"}


def test_latest_says_what_ready_says(stack):
    latest = stack.get("/latest").json()
    assert latest["ready"] is True and latest["ready_reasons"] == []


def test_history_has_the_recent_seconds_of_the_running_engine(stack):
    doc = stack.get("/history").json()
    assert doc["interval_s"] == 0.2 and doc["span_s"] == 300.0  # the config's sample interval
    running = [p for p in doc["points"] if p["engine_running"] and p["window_s"]]
    assert len(running) >= 3
    ts = [p["t"] for p in doc["points"]]
    assert ts == sorted(ts) and time.time() - 2 < ts[-1] <= time.time()
    last = running[-1]
    assert 25_000 < last["rates_per_s"]["md_messages"] < 75_000  # offered 50k msgs/s
    t2o = last["latency_ns"]["tick_to_order"]
    assert t2o["count"] > 0 and t2o["p50"] <= t2o["p90"] <= t2o["p99"] <= t2o["p999"]
    newer = stack.get("/history", params={"after": ts[-2]}).json()["points"]
    assert newer and all(p["t"] > ts[-2] for p in newer) and newer[0]["t"] == ts[-1]
    # with the points, the /latest document of the newest point's reading: what the page shows
    state = doc["latest"]
    assert state["engine_running"] is True and state["ready"] is True
    assert set(state) == set(stack.get("/latest").json())
    assert 25_000 < state["rates_per_s"]["md_messages"] < 75_000


def test_a_browser_gets_the_dashboard_and_curl_and_scripts_get_json(stack):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = stack.get("/", headers={"Accept": browser})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>lowlat telemetry</title>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["vary"] == "Accept"
    for accept in ("*/*", "application/json"):
        doc = stack.get("/", headers={"Accept": accept})
        assert doc.headers["content-type"] == "application/json", accept
        assert doc.json()["slo_us"] == {
            "tick_to_order_p50_us": 5.0,
            "tick_to_order_p99_us": 50.0,
            "tick_to_order_p999_us": 500.0,
        }
    curl = subprocess.run(["curl", "-sf", f"{stack.url}/"], capture_output=True, text=True)
    assert curl.returncode == 0 and json.loads(curl.stdout)["engine_running"] is True
    assert stack.get("/dashboard").text == page.text
    for asset, kind in (
        ("/static/dashboard.js", "text/javascript"),
        ("/static/dashboard.css", "text/css"),
        ("/static/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("/static/vendor/uplot/uPlot.min.css", "text/css"),
    ):
        response = stack.get(asset)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)


def test_metrics_are_prometheus_text_with_live_values(stack):
    response = stack.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    first = metrics(stack)
    assert value(first, "trading_up") == 1
    time.sleep(0.6)
    second = metrics(stack)
    assert value(second, "trading_md_messages_processed_total") > value(
        first, "trading_md_messages_processed_total"
    )
    buckets = second["trading_tick_to_order_seconds_bucket"]
    les = [float(s.labels["le"]) for s in buckets]
    assert les == sorted(les) and les[-1] == float("inf")
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and counts[-1] > 0


def test_metrics_has_no_redirect_and_promtool_accepts_it(stack):
    response = httpx.get(f"{stack.url}/metrics", follow_redirects=False, timeout=10)
    assert response.status_code == 200  # not a 307 to /metrics/
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=response.text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


def test_unknown_paths_404_and_wrong_methods_405(stack):
    assert stack.get("/nope").status_code == 404
    assert httpx.post(f"{stack.url}/health", timeout=10).status_code == 405
    assert httpx.delete(f"{stack.url}/metrics", timeout=10).status_code == 405
    assert stack.get("/openapi.json").json()["info"]["title"] == "lowlat telemetry"
    assert stack.get("/docs").status_code == 200


def test_host_report_says_not_available(stack):
    """202 while the first check runs (about 1 s), then the check-host report: this machine
    is not a tuned host, so it reports failures (isolation first)."""
    deadline = time.monotonic() + 30
    response = stack.get("/host")
    while response.status_code == 202 and time.monotonic() < deadline:
        assert response.json() == {"available": False, "detail": "first check running"}
        time.sleep(0.2)
        response = stack.get("/host")
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is False and report["summary"]["failed"] > 0
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["isolated"] == "fail"
    assert set(statuses.values()) <= {"pass", "fail", "not_applicable"}


def test_kill_switch_makes_ready_say_why(stack):
    switch = [*CLI, "kill-switch"]
    subprocess.run([*switch, "on", "--config", str(stack.config)], check=True, timeout=60)
    try:
        ready = wait_http(f"{stack.url}/ready", status=503, timeout=10)
        assert "kill switch is on" in ready.json()["reasons"]
        assert value(metrics(stack), "trading_kill_switch") == 1
    finally:
        subprocess.run([*switch, "off", "--config", str(stack.config)], check=True, timeout=60)
    wait_http(f"{stack.url}/ready", status=200, timeout=10)


def test_a_real_prometheus_scrapes_the_api(stack, tmp_path):
    prometheus = PrometheusServer(tmp_path, [f"127.0.0.1:{stack.port}"])
    try:
        assert prometheus.wait_for('trading_up{job="lowlat"}') == 1
        assert prometheus.wait_until("trading_md_messages_processed_total", lambda v: v > 0)
        prometheus.wait_until(
            "rate(trading_md_messages_processed_total[5s])", lambda v: 25_000 < v < 75_000
        )  # offered 50k msgs/s
        prometheus.wait_until(
            "histogram_quantile(0.99, rate(trading_tick_to_order_seconds_bucket[5s]))",
            lambda v: 0 < v < 1.0,  # seconds: a sane latency
        )
    finally:
        prometheus.stop()


@pytest.mark.skipif(shutil.which("hey") is None, reason="hey is not installed (Debian hey)")
@pytest.mark.parametrize("path", ["/metrics", "/latest"])
def test_load_of_10k_requests_at_concurrency_20_has_no_errors(stack, path):
    result = subprocess.run(
        ["hey", "-n", "10000", "-c", "20", "-t", "10", f"{stack.url}{path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[200]\t10000 responses" in out, out
    assert "Error distribution" not in out, out


def test_openapi_fuzzing_finds_no_server_error(stack, tmp_path):
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "schemathesis"),
            "run",
            f"{stack.url}/openapi.json",
            "-c",
            "not_a_server_error",
            "-n",
            "30",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_api_follows_the_engine_across_a_restart(stack):
    assert stack.stop_engine() == 0
    ready = wait_http(f"{stack.url}/ready", status=503, timeout=10)
    assert ready.json()["reasons"] == ["engine not running"]
    assert stack.get("/health").status_code == 200
    families = metrics(stack)
    assert value(families, "trading_up") == 0
    assert stack.get("/latest").json()["engine_running"] is False
    stack.start_engine()  # the same API process, a new engine run
    assert stack.get("/ready").status_code == 200
    assert value(metrics(stack), "trading_up") == 1


# ----------------------------------------------------------------------------- /host and the timer


def _hidden_from_the_sandbox(root):
    """The tree as the telemetry unit sees it under ProtectProc=invisible: root's processes
    (kernel threads, PID 1, irqbalance, chronyd) gone, its own user's left."""
    for proc in (root / "proc").iterdir():
        if proc.name.isdigit() and proc.name not in ("30", "100", "101"):
            shutil.rmtree(proc)
    return root


@pytest.fixture
def timer_and_sandbox(tmp_path):
    """(the root timer's report file, the in-process check): the file says what only root sees,
    a kernel thread confined to isolated cpu2; the sandboxed check cannot see it."""
    from ami.check import check_host
    from tests.support.host_tree import process, tuned_tree

    as_root = tuned_tree(tmp_path / "root")
    process(as_root, 40, "kcompactd0", "2", kthread=True)
    timer_file = tmp_path / "check-host.json"
    timer_file.write_text(json.dumps(check_host(as_root, irq_window_s=0).to_json()))
    sandbox = _hidden_from_the_sandbox(tuned_tree(tmp_path / "sandbox"))
    process(sandbox, 40, "kcompactd0", "2", kthread=True)
    shutil.rmtree(sandbox / "proc/40")  # there, but hidden
    return timer_file, lambda: check_host(sandbox, irq_window_s=0)


def _app_client(tmp_path, reporter):
    import warnings

    with warnings.catch_warnings():  # starlette's note about httpx2; httpx is what we have
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from service.config import load
    from service.telemetry.api import create_app

    config_file = tmp_path / "service.toml"
    config_file.write_text(f'[service]\nshm_prefix = "lltest-host-{uuid.uuid4().hex[:8]}"\n')
    return TestClient(create_app(load(config_file), host_reporter=reporter))


def _host(client) -> dict:
    deadline = time.monotonic() + 30
    response = client.get("/host")
    while response.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
        response = client.get("/host")
    assert response.status_code == 200, response.text
    return response.json()


def test_host_serves_the_root_timers_report_which_sees_what_the_sandbox_cannot(
    tmp_path, timer_and_sandbox
):
    from service.telemetry.api import HostReporter, TimerReport

    timer_file, in_process = timer_and_sandbox
    own = in_process().check("kthreads_on_isolated")
    assert own.status == "not_applicable"  # the sandboxed check cannot see kernel threads
    reporter = HostReporter(check=in_process, timer=TimerReport(path=timer_file))
    with _app_client(tmp_path, reporter) as client:
        report = _host(client)
        assert report["source"] == "timer"
        assert report["ok"] is False and report["summary"]["failed"] == 1
        kthreads = next(c for c in report["checks"] if c["name"] == "kthreads_on_isolated")
        assert (kthreads["status"], kthreads["observed"]) == ("fail", "kcompactd0[40] on 2")
        assert report["checked_at_unix_s"] == pytest.approx(timer_file.stat().st_mtime)
        exposition = client.get("/metrics").text
        assert "trading_host_tuned 0.0" in exposition  # the alarm sees it too
        assert "trading_host_checks_failed 1.0" in exposition


def test_a_stale_timer_report_falls_back_and_says_the_timer_stopped(tmp_path, timer_and_sandbox):
    from service.telemetry.api import HostReporter, TimerReport

    timer_file, in_process = timer_and_sandbox
    old = time.time() - 3600
    os.utime(timer_file, (old, old))
    reporter = HostReporter(check=in_process, timer=TimerReport(path=timer_file))
    with _app_client(tmp_path, reporter) as client:
        report = _host(client)
    assert report["source"] == "in-process"
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["kthreads_on_isolated"] == "not_applicable"  # what the sandbox sees
    timer = next(c for c in report["checks"] if c["name"] == "check_host_timer")
    assert timer["status"] == "fail" and report["ok"] is False
    assert (
        timer["observed"].startswith(f"{timer_file} is 36") and "limit 180 s" in timer["observed"]
    )
    assert "systemctl status lowlat-check-host.timer" in timer["detail"]


def test_the_reporter_follows_the_timer_file_as_it_comes_and_goes(tmp_path, timer_and_sandbox):
    """No file (a laptop): the own check, no complaint. Fresh: the timer's. Stale: the own
    check at once, flagged. Broken: the same. Fresh again: the timer's."""
    from service.telemetry.api import HostReporter, TimerReport

    timer_file, in_process = timer_and_sandbox
    text = timer_file.read_text()
    timer_file.unlink()
    reporter = HostReporter(check=in_process, timer=TimerReport(path=timer_file))

    def names() -> set[str]:
        return {c["name"] for c in reporter.report["checks"]}

    reporter.refresh()
    assert reporter.report["source"] == "in-process" and "check_host_timer" not in names()
    timer_file.write_text(text)
    reporter.refresh()
    assert reporter.report["source"] == "timer"
    old = time.time() - 181
    os.utime(timer_file, (old, old))
    reporter.refresh()  # stale: checked in process at once, not a minute later
    assert reporter.report["source"] == "in-process" and "check_host_timer" in names()
    timer_file.write_text('{"half": ')
    reporter.refresh()  # the own check is not due again yet: the flagged report stays
    timer_file.write_text(text)
    reporter.refresh()
    assert reporter.report["source"] == "timer"
    broken = HostReporter(check=in_process, timer=TimerReport(path=tmp_path / "broken.json"))
    (tmp_path / "broken.json").write_text('{"half": ')
    broken.refresh()
    flagged = next(c for c in broken.report["checks"] if c["name"] == "check_host_timer")
    assert flagged["observed"].endswith("is not a check-host report")
