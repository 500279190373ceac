"""A real Prometheus server scrapes the exposition of a synthetic engine.

This proves what a unit test cannot: that Debian's ``prometheus`` binary accepts the
exposition and its content type, stores the series under the names ``exported_metric_names``
promises, reads the histogram's ``le`` boundaries as seconds, and follows counters between
scrapes. The engine is a stats block this process owns (``SyntheticEngine``, no stage runs);
a small HTTP server renders a fresh sample of it on each GET /metrics, as the telemetry API
will. Prometheus scrapes it every second; the test polls its HTTP API.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from contracts import metric_names as N
from contracts import stats_layout as L
from contracts.stages import GATEWAY, S_FAILED, S_RUNNING
from service.config import Config
from service.kernels.seqlock import set_state
from service.telemetry import exposition as M
from service.telemetry.engine_view import EngineView
from tests.support.names import EXPORTED_NAMES
from tests.support.prometheus import PrometheusServer
from tests.support.synthetic_engine import (
    HISTOGRAMS,
    SyntheticEngine,
    latencies,
    record,
    write_slo_counts,
)

pytestmark = pytest.mark.slow


def serve_metrics(engine: SyntheticEngine, request) -> int:
    """Serve GET /metrics of the engine on 127.0.0.1; the port."""
    view = EngineView(engine.config)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = M.render(view.sample(), engine.config)
            self.send_response(200)
            self.send_header("Content-Type", M.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # one line a second of scrapes is noise in test output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(5)

    request.addfinalizer(stop)
    return server.server_address[1]


@pytest.fixture
def engine(tmp_path, request) -> SyntheticEngine:
    # published by hand, not every stats interval: heartbeats count as fresh for an hour, so
    # trading_up stays 1 across Prometheus's scrapes
    config = Config()
    telemetry = dataclasses.replace(config.telemetry, ready_heartbeat_s=3600.0)
    engine = SyntheticEngine(tmp_path, dataclasses.replace(config, telemetry=telemetry))
    request.addfinalizer(engine.close)
    engine.set_states(S_RUNNING)
    engine.publish()
    return engine


@pytest.fixture
def prometheus(tmp_path, request, engine) -> PrometheusServer:
    server = PrometheusServer(tmp_path, [f"127.0.0.1:{serve_metrics(engine, request)}"])
    request.addfinalizer(server.stop)
    return server


def test_prometheus_scrapes_the_exposition_and_follows_counters(engine, prometheus):
    values = latencies(np.random.default_rng(11), 1000, median_ns=4000)
    tick_to_order = next(m for m in HISTOGRAMS if m.name == "tick_to_order")
    record(engine, tick_to_order, values)
    write_slo_counts(engine, values)
    engine.local[L.MD_SENT] = 123_456
    engine.local[L.REJECTS + L.REJECT_REASONS.index("price_band")] = 7
    engine.publish()

    assert prometheus.wait_for("trading_up") == 1.0
    assert prometheus.wait_for("trading_md_messages_sent_total") == 123_456
    assert prometheus.wait_for('trading_orders_rejected_total{reason="price_band"}') == 7
    assert prometheus.wait_for("trading_tick_to_order_seconds_count") == len(values)
    total_s = prometheus.wait_for("trading_tick_to_order_seconds_sum")
    assert total_s == pytest.approx(values.sum() / 1e9, rel=1e-12)
    # an exact boundary at the 5 us SLO, read by Prometheus as seconds
    within_5us = np.count_nonzero(values <= 5000)
    assert prometheus.wait_for('trading_tick_to_order_seconds_bucket{le="5e-06"}') == within_5us

    # Prometheus' median lies inside the exported bucket that holds the true median
    median = prometheus.wait_for("histogram_quantile(0.5, trading_tick_to_order_seconds_bucket)")
    edges = sorted({*M.LADDER_NS, *engine.config.slo.thresholds_ns()})
    rank = 0.5 * len(values)
    upper = next(e for e in edges if np.count_nonzero(values <= e) >= rank)
    lower = max([0, *(e for e in edges if e < upper)])
    assert lower / 1e9 <= median <= upper / 1e9, (median, lower, upper)

    # the stored series are named exactly as exported_metric_names promised
    stored = prometheus.query('{job="lowlat", __name__=~"trading_.*"}')
    histograms = {N.prometheus_name(m) for m in HISTOGRAMS}
    families = set()
    for series in stored:
        name = series["metric"]["__name__"]
        family = name.rsplit("_", 1)[0]
        families.add(family if family in histograms else name)
    # this server renders single samples, with no window: no recent summaries to store; and
    # no check-host report (the hugepage gauges only where the kernel has 2 MiB pages)
    recent = {N.recent_name(m) for m in HISTOGRAMS}
    host = {"trading_host_tuned", "trading_host_checks_failed"}
    if not Path(M.HUGEPAGES_SYSFS).is_dir():
        host |= {"trading_hugepages_free", "trading_hugepages_reserved"}
    assert families == set(EXPORTED_NAMES) - recent - host

    # counters move between scrapes
    engine.local[L.MD_SENT] += 1000
    engine.publish()
    assert prometheus.wait_for("trading_md_messages_sent_total", 124_456) == 124_456

    # and the engine's health follows its stages
    set_state(engine.stats, engine.local, L.SECTION_START[GATEWAY], S_FAILED)
    assert prometheus.wait_for("trading_up", 0.0) == 0.0
    assert prometheus.wait_for('trading_stage_up{stage="gateway"}') == 0.0

    targets = prometheus.http.get("/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
