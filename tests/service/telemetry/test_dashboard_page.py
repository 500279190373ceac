"""The live dashboard in a real headless Chromium, against a real engine and telemetry API.

One page stays open through the module, as on an operator's screen: it shows the running
engine (stage map, readiness, charts with points), then the engine stopping, then the API
going away. Screenshots of each state land in test-artifacts/browser/. Throughout, the page may
ask nothing of any host but the API, and log no error while the API answers.
"""

from __future__ import annotations

import pytest

from tests.support.browser import axe_violations, browser_fixture, open_page, screenshot
from tests.support.telemetry_stack import running_stack

pytestmark = pytest.mark.slow
browser = browser_fixture()
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("dashboard")) as s:
        yield s


@pytest.fixture(scope="module")
def opened(browser, stack):
    """The page as a browser opens http://HOST:PORT/ (its Accept asks for HTML), and its log."""
    with open_page(browser, viewport={"width": 1400, "height": 900}) as (page, log):
        page.goto(f"{stack.url}/")
        yield page, log


def cells(page, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


def points(page, chart: str) -> int:
    return int(page.get_attribute(f"#chart-{chart}", "data-points") or 0)


def test_the_page_draws_the_running_engine(opened, stack):
    page, log = opened
    assert page.title() == "lowlat telemetry"
    page.wait_for_function(
        "document.querySelector('#chart-tick_to_order')?.dataset.points >= 3", timeout=WAIT_MS
    )
    assert page.get_attribute("body", "data-state") == "running"
    assert page.inner_text("#status") == "Engine running · ready"
    latest = stack.get("/latest").json()
    stages = cells(page, "stages")
    assert [row[0] for row in stages] == list(latest["stages"])
    for name, cpu, state, age in stages:
        assert state == "running" and cpu == str(latest["stages"][name]["cpu"])
        assert age.endswith(" s") and float(age[:-2]) < 1.0
    assert page.inner_text("#ready") == "ready" and page.inner_text("#kill") == "off"
    # every chart was given points with values, and the SLO lines are named with the objective
    for chart in ("tick_to_order", "md_to_engine", "feed_lag", "order_wait", "rates", "rings"):
        assert points(page, chart) >= 3, chart
    legend = page.inner_text("#chart-tick_to_order + .u-legend, #chart-tick_to_order .u-legend")
    assert "SLO p99 50 µs" in legend and "p99.9" in legend
    assert [row[0] for row in cells(page, "positions")] == [f"instrument {i}" for i in range(8)]
    assert {row[0] for row in cells(page, "rejects")} == set(latest["rejects"])
    assert [row[0] for row in cells(page, "rings")] == ["md", "orders", "fills"]
    assert page.inner_text("#md-rate").endswith(" /s") and page.inner_text("#md-rate") != "0 /s"
    # the host's verdict from /host, once its first check is done (this machine is not tuned)
    page.wait_for_function(
        "/^(Tuned|Not tuned): /.test(document.querySelector('#host-verdict').textContent)",
        timeout=WAIT_MS,
    )
    if page.inner_text("#host-verdict").startswith("Not tuned"):
        assert page.is_visible("#host-failures")
    screenshot(page, "dashboard-running")
    # while the API answers, nothing fails and nothing is logged as an error
    log.assert_no_failed_requests()
    assert not log.http_errors, log.http_errors
    log.assert_no_console_errors()
    asked = {r.split()[1].removeprefix(stack.url).split("?")[0] for r in log.requests}
    assert asked == {
        "/",
        "/static/dashboard.css",
        "/static/dashboard.js",
        "/static/vendor/uplot/uPlot.min.css",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/history",  # the charts and the state at the newest reading: never /latest
        "/host",
    }
    # then each second only the points since the last one it drew
    with page.expect_request(lambda r: "/history?after=" in r.url, timeout=WAIT_MS):
        pass


def test_the_page_passes_the_accessibility_basics(opened):
    page, _ = opened
    violations = axe_violations(page, ["wcag2a", "wcag2aa"])
    assert not violations, "\n".join(violations)


def test_the_page_says_the_engine_is_not_running_once_it_stops(opened, stack):
    page, _ = opened
    assert stack.stop_engine() == 0
    page.wait_for_selector("body[data-state='engine-down']", timeout=WAIT_MS)
    status = page.inner_text("#status")
    assert status.startswith("Engine not running") and "last seen running at" in status
    assert page.inner_text("#ready") == "not ready"
    assert page.inner_text("#ready-reasons") == "engine not running"
    assert {row[2] for row in cells(page, "stages")} == {"absent"}
    screenshot(page, "dashboard-engine-stopped")


def test_the_page_says_the_api_stopped_answering(opened, stack):
    page, log = opened
    stack.stop_api()
    page.wait_for_selector("body[data-state='api-down']", timeout=WAIT_MS)
    assert page.inner_text("#status").startswith("API not answering · last answer ")
    screenshot(page, "dashboard-api-down")
    # through the whole life of the page, no request went to any other host
    log.assert_only_host(stack.url)
