"""The dashboard's files and the rules around them, without a browser: which clients get the
page, that what the page loads ships in the wheel and comes from the API, that the vendored
uPlot is the release it says it is, and that the bench polls as the page does."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.telemetry.web import PAGE_POLLS, STATIC_DIR, WEB_DIR, dashboard_html, wants_html

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = (STATIC_DIR / "dashboard.js").read_text()


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        # Chromium's and Firefox's navigations
        ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("", False),  # no Accept at all
        ("*/*", False),  # curl
        ("application/json", False),  # scripts, the page's own fetches
        ("application/json, text/html", False),  # a tie keeps the JSON
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json;q=0.5", True),
        ("text/html;q=0", False),
        ("TEXT/HTML", True),
        ("text/html;q=banana", False),  # a q that is not a number counts as 0
        ("text/*", False),  # only an explicit text/html asks for the page
        ("text/html, application/*;q=0.9, application/json;q=1", False),  # most specific wins
    ],
)
def test_a_browser_gets_the_page_and_everything_else_json(accept, html):
    assert wants_html(accept) is html


class Refs(HTMLParser):
    """Every src and href of a page, and whether any style or script is inline."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.inline_script = self.inline_style = False
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.refs += [a[k] for k in ("src", "href") if a.get(k)]
        self.inline_style |= "style" in a or tag == "style"
        self._in_script = tag == "script" and not a.get("src")

    def handle_data(self, data):
        self.inline_script |= self._in_script and bool(data.strip())


def test_the_page_loads_only_files_of_its_own_static_directory():
    refs = Refs()
    refs.feed(dashboard_html())
    assets = [r for r in refs.refs if r.startswith("static/")]
    assert {"static/dashboard.js", "static/vendor/uplot/uPlot.iife.min.js"} <= set(assets)
    for asset in assets:
        assert (WEB_DIR / asset).is_file(), asset
    # links are relative (an SSH tunnel or a path prefix keeps working) and never leave the API
    others = [r for r in refs.refs if r not in assets and r != "data:,"]
    assert all(re.fullmatch(r"[a-z.]+", r) for r in others), others
    # the Content-Security-Policy allows no inline script or style: there must be none
    assert not refs.inline_script and not refs.inline_style


def test_every_file_of_the_page_is_package_data_of_the_wheel():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["service"]
    service = ROOT / "service"
    files = [
        p.relative_to(service).as_posix()
        for p in WEB_DIR.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ]
    assert "telemetry/web/dashboard.html" in files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not missing, f"not in [tool.setuptools.package-data] service: {missing}"


def test_the_vendored_uplot_is_the_npm_release_its_source_file_names():
    vendor = STATIC_DIR / "vendor" / "uplot"
    first, *lines = (vendor / "SOURCE").read_text().splitlines()
    assert re.match(r"uplot \d+\.\d+\.\d+ from npm \(sha512-", first)
    listed = dict(reversed(line.split("  ")) for line in lines)
    assert set(listed) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (vendor / "LICENSE").read_text()
    script = re.search(r"VERSION=(\S+)", (ROOT / "scripts" / "vendor-uplot").read_text())
    assert script and first.startswith(f"uplot {script.group(1)} ")


def test_the_page_polls_what_page_polls_says():
    """PAGE_POLLS is what the bench's simulated pages ask: it must be what the page asks."""
    fetched = set(re.findall(r'getJson\([`"]([a-z./]+)', SCRIPT))
    polled = {path for path, _ in PAGE_POLLS}
    assert fetched - {"./"} == polled, fetched
    periods = {
        "POLL_MS": {p for p, s in PAGE_POLLS if s == 1.0},
        "HOST_POLL_MS": {p for p, s in PAGE_POLLS if s == 10.0},
    }
    for constant, paths in periods.items():
        ms = re.search(rf"const {constant} = (\d+);", SCRIPT)
        assert ms, constant
        assert {s for p, s in PAGE_POLLS if p in paths} == {int(ms.group(1)) / 1000}
