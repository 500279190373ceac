"""The telemetry API's /docs (Swagger UI) in a real headless Chromium.

Trading hosts have no egress, so the API serves the pages' scripts and styles itself
(fastapi-offline, under /static-offline-docs/): the pages must render every operation with
nothing fetched from another host and nothing logged as an error. One API process
(`trading-service telemetry`, no engine: the docs need none) and one Chromium per module. The
browser reaches the API by a name, not 127.0.0.1, as an operator's browser would: Swagger UI
behaves differently for a spec on localhost or 127.0.0.1 (no validator badge). Screenshots land
in test-artifacts/browser/ (docs.png).

There is no /redoc: ReDoc 2's bundle (as fastapi-offline ships it) always draws its side menu's
logo from https://cdn.redoc.ly, which no option turns off; on a host without egress that is a
failed request and a console error on every load. Swagger UI documents the same operations.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.browser import browser_fixture, open_page, origin, screenshot
from tests.support.net import free_port, stop_process, wait_http

pytestmark = pytest.mark.slow
HOST = "telemetry.test"  # the API's name in the browser (mapped to 127.0.0.1)
CORE = {"/health", "/ready", "/latest", "/metrics", "/host"}

browser = browser_fixture(hosts={HOST: "127.0.0.1"})


class Api:
    """`trading-service telemetry` on a free port with its own shm prefix, and no engine."""

    def __init__(self, workdir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # for httpx
        self.named = f"http://{HOST}:{self.port}"  # for the browser
        self.config = workdir / "service.toml"
        self.config.write_text(
            f'[service]\nshm_prefix = "lltest-docs-{uuid.uuid4().hex[:8]}"\n'
            f"[telemetry]\nport = {self.port}\n"
        )
        self.log = workdir / "telemetry.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "telemetry", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_http(f"{self.url}/health", timeout=60)
        self.schema = httpx.get(f"{self.url}/openapi.json", timeout=10).json()

    def operations(self) -> set[tuple[str, str]]:
        """(METHOD, path) for every operation in the API's OpenAPI document."""
        return {(m.upper(), p) for p, ops in self.schema["paths"].items() for m in ops}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    api = Api(tmp_path_factory.mktemp("docs"))
    try:
        yield api
    finally:
        stop_process(api.process)


@pytest.fixture(scope="module")
def docs(browser, api):
    """/docs once Swagger UI has drawn its operations, with the log of its loading."""
    with open_page(browser) as (page, log):
        page.goto(f"{api.named}/docs")
        page.wait_for_selector(".opblock")
        page.wait_for_load_state("networkidle")
        screenshot(page, "docs")
        yield page, log


class Assets(HTMLParser):
    """What a page's HTML loads: (tag, rel, URL) for each script, stylesheet, icon and spec."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href", "spec-url"):
            if a.get(name):
                self.found.append((tag, a.get("rel") or "", a[name]))


CONTENT_TYPES = {  # what each kind of reference must answer with
    "script": ("text/javascript", "application/javascript"),
    "stylesheet": ("text/css",),
    "icon": ("image/",),
}


def test_the_html_loads_only_same_origin_assets_and_each_answers(api):
    path = "/docs"
    response = httpx.get(f"{api.url}{path}", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    absolute = [
        u for u in re.findall(r"https?://[^\s'\"<>)]+", html) if origin(u) != origin(api.url)
    ]
    assert not absolute, f"{path} names other hosts: {absolute}"
    parser = Assets()
    parser.feed(html)
    kinds = set()
    for tag, rel, ref in parser.found:
        url = urljoin(f"{api.url}{path}", ref)
        assert origin(url) == origin(api.url), f"{path}: <{tag}> loads {ref} from another host"
        kind = "icon" if "icon" in rel else rel or tag
        asset = httpx.get(url, timeout=10)
        assert asset.status_code == 200, f"{path}: {ref} answers {asset.status_code}"
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[kind]), (
            f"{path}: {ref} is {asset.headers['content-type']}"
        )
        kinds.add(kind)
    assert {"script", "icon", "stylesheet"} <= kinds
    assert "url: '/openapi.json'" in html  # the spec Swagger UI fetches: this API's own


def test_swagger_ui_shows_every_operation(docs, api):
    page, _ = docs
    shown = page.eval_on_selector_all(
        ".opblock",
        "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent,"
        " b.querySelector('.opblock-summary-path').dataset.path])",
    )
    assert {(method, path) for method, path in shown} == api.operations()
    assert {path for _, path in shown} >= CORE
    assert page.title() == "lowlat telemetry - Swagger UI"


def test_swagger_ui_loads_everything_from_the_api(docs, api):
    _, log = docs
    assert f"GET {api.named}/openapi.json" in log.requests
    log.assert_only_host(api.named)
    log.assert_no_failed_requests()
    assert not log.http_errors, log.http_errors
    log.assert_no_console_errors()


def test_there_is_no_redoc_page_to_reach_a_cdn(api):
    # (see the module docstring): /redoc is not served, and neither / nor the docs link to it
    assert httpx.get(f"{api.url}/redoc", timeout=10).status_code == 404
    info = httpx.get(f"{api.url}/", timeout=10).json()
    assert "/redoc" not in info["links"] and "/docs" in info["links"]
