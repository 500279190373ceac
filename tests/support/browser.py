"""Real-browser plumbing for the telemetry API's pages: the system's headless Chromium driven by
Playwright, a log of what a page asked the network for and what it logged as an error, full-page
screenshots kept as test artefacts, and axe-core's accessibility rules.

Chromium is Debian's (``scripts/system-deps`` installs it), never a Playwright download: the
machines that run the tests have no internet, so ``playwright install`` is not an option. Without
it the tests that use it skip and say so. No host resolves but localhost, 127.0.0.1 and the
names a test maps (``hosts=``): a page that reaches for a CDN, or any other address, fails at
once and shows in its ``NetworkLog`` instead of waiting on DNS or a connect timeout.

A test module::

    browser = browser_fixture()  # one Chromium for the module, as the fixture "browser"

    def test_docs(browser, api):
        with open_page(browser) as (page, log):
            page.goto(f"{api.url}/docs")
            page.wait_for_selector(".opblock")
            screenshot(page, "docs")  # test-artifacts/browser/docs.png
            log.assert_only_host(api.url)
            log.assert_no_console_errors()
            violations = axe_violations(page, ["wcag2a", "wcag2aa"])
            assert not violations, "\\n".join(violations)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    sync_playwright,
)

from tests.support.paths import REPO

ARTIFACTS = REPO / "test-artifacts" / "browser"
VIEWPORT = {"width": 1280, "height": 800}
INSTALL_HINT = "apt-get install chromium, or scripts/system-deps as root"


def host_rules(hosts: Mapping[str, str] | None = None) -> str:
    """Chromium's --host-resolver-rules: each name in ``hosts`` to its address, every other host
    to "not found", bar localhost and 127.0.0.1 (the rules apply to IP addresses too)."""
    rules = [f"MAP {name} {address}" for name, address in (hosts or {}).items()]
    return ", ".join([*rules, "MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE 127.0.0.1"])


@contextmanager
def chromium(hosts: Mapping[str, str] | None = None) -> Iterator[Browser]:
    """The system's Chromium, headless, for the life of the ``with``; skips the test when it is
    not installed. ``hosts`` maps names the pages may use to addresses (see ``host_rules``)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip(f"no chromium on PATH for the browser tests ({INSTALL_HINT})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # Chromium's sandbox does not run as root, as CI does: Playwright passes --no-sandbox
            chromium_sandbox=False,
            args=[f"--host-resolver-rules={host_rules(hosts)}"],
        )
        try:
            yield browser
        finally:
            browser.close()


def browser_fixture(
    *, name: str = "browser", scope: Any = "module", hosts: Mapping[str, str] | None = None
) -> Any:
    """A pytest fixture called ``name`` giving one ``chromium(hosts)`` per ``scope``; assign it
    to a module-level name (``browser = browser_fixture()``) and pytest collects it."""

    def fixture() -> Iterator[Browser]:
        with chromium(hosts) as browser:
            yield browser

    return pytest.fixture(scope=scope, name=name)(fixture)


def origin(url: str) -> str:
    """scheme://host:port of ``url``, the port spelled out; a blob: URL has its creator's."""
    if url.startswith("blob:"):
        url = url.removeprefix("blob:")
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or default}"


def _local(url: str) -> bool:
    """A URL that never reaches a network: inline data, about:blank and the like."""
    return url.startswith(("data:", "about:"))


@dataclass
class NetworkLog:
    """Everything a page (or a whole browser context) asked for and what went wrong with it.

    ``requests``: "METHOD url" per request, in order. ``failed``: "METHOD url: reason" per
    request that never got a response (refused, name not resolved, blocked). ``http_errors``:
    "METHOD url: HTTP status" per response of 400 or more (a fetch of /ready answering 503 is
    one; tests decide which they expect). ``console_errors``: console.error messages, Chromium's
    own ("Failed to load resource: ...") among them, and uncaught exceptions.
    """

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    _urls: list[str] = field(default_factory=list, repr=False)
    _error_sources: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def attach(cls, target: Page | BrowserContext) -> NetworkLog:
        """Start logging ``target``'s traffic: a page, or a context (all its pages and workers)."""
        log = cls()
        target.on("request", log._on_request)
        target.on("requestfailed", log._on_failed)
        target.on("response", log._on_response)
        target.on("console", log._on_console)
        if isinstance(target, Page):
            target.on("pageerror", log._on_page_error)
        else:
            target.on("weberror", lambda error: log._on_page_error(error.error))
        return log

    def _on_request(self, request: Request) -> None:
        self.requests.append(f"{request.method} {request.url}")
        self._urls.append(request.url)

    def _on_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.http_errors.append(
                f"{response.request.method} {response.url}: HTTP {response.status}"
            )

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            source = message.location.get("url", "")
            where = f" ({source}:{message.location.get('lineNumber', 0)})" if source else ""
            self.console_errors.append(f"console.error: {message.text}{where}")
            self._error_sources.append(source)

    def _on_page_error(self, error: Exception) -> None:
        self.console_errors.append(f"uncaught: {error}")
        self._error_sources.append("")

    def foreign(self, base_url: str, allow: Iterable[str] = ()) -> list[str]:
        """The requests to an origin other than ``base_url``'s, bar data:/about: URLs and the
        exact URLs in ``allow``."""
        home, allowed = origin(base_url), set(allow)
        return [
            line
            for line, url in zip(self.requests, self._urls, strict=True)
            if not _local(url) and url not in allowed and origin(url) != home
        ]

    def assert_only_host(self, base_url: str, allow: Iterable[str] = ()) -> None:
        """Fail, listing them, if any request went anywhere but ``base_url``'s origin."""
        foreign = self.foreign(base_url, allow)
        heading = f"requests to other hosts than {origin(base_url)}:"
        assert not foreign, "\n".join([heading, *foreign])

    def assert_no_failed_requests(self) -> None:
        assert not self.failed, "requests that failed:\n" + "\n".join(self.failed)

    def assert_no_console_errors(self, allow: Iterable[str] = ()) -> None:
        """Fail, listing them, on any console error or uncaught exception, bar errors whose
        source is one of the URLs in ``allow`` (Chromium reports a failed load from its URL)."""
        allowed = set(allow)
        errors = [
            error
            for error, source in zip(self.console_errors, self._error_sources, strict=True)
            if not (source and source in allowed)
        ]
        assert not errors, "errors in the browser console:\n" + "\n".join(errors)


@contextmanager
def open_page(
    browser: Browser, viewport: Mapping[str, int] = VIEWPORT
) -> Iterator[tuple[Page, NetworkLog]]:
    """A page in a fresh context (no cache, cookies or storage from other tests) and the log of
    that context, taken before the page opens; the context closes after the ``with``."""
    context = browser.new_context(
        viewport={"width": viewport["width"], "height": viewport["height"]}
    )
    log = NetworkLog.attach(context)
    try:
        yield context.new_page(), log
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """The whole page as ``test-artifacts/browser/<name>.png`` at the repository root (kept for
    a person or CI to look at; git ignores it); returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _rule_ids(page: Page, names: Iterable[str]) -> list[str]:
    """The axe rule ids ``names`` stands for: a rule id is itself, a tag (wcag2a, wcag2aa,
    best-practice, ...) every rule carrying it, bar experimental and deprecated rules unless
    those tags are named too. An unknown name is an error, not a silent no-op."""
    wanted = list(names)
    rules: list[dict[str, Any]] = page.evaluate("axe.getRules()")
    ids = {rule["ruleId"] for rule in rules}
    tags = {tag for rule in rules for tag in rule["tags"]}
    unknown = [name for name in wanted if name not in ids | tags]
    if unknown:
        raise ValueError(f"not axe rule ids or tags: {', '.join(unknown)}")
    skipped = {"experimental", "deprecated"} - set(wanted)
    chosen = {name for name in wanted if name in ids}
    for rule in rules:
        if set(rule["tags"]) & set(wanted) and not set(rule["tags"]) & skipped:
            chosen.add(rule["ruleId"])
    return sorted(chosen)


def _target(node: dict[str, Any]) -> str:
    """A node's CSS selector; a selector inside shadow DOM or a frame is a list of steps."""
    return " ".join(" >>> ".join(t) if isinstance(t, list) else t for t in node["target"])


def _describe(violation: dict[str, Any]) -> str:
    lines = [f"{violation['id']} ({violation['impact']}): {violation['help']}"]
    for node in violation["nodes"]:
        checks: list[dict[str, Any]] = node["any"] + node["all"] + node["none"]
        why = "; ".join(check["message"] for check in checks)
        lines.append(f"    {_target(node)}: {why}")
    return "\n".join(lines)


def axe_violations(page: Page, rules: Iterable[str]) -> list[str]:
    """axe-core's violations on ``page`` as it stands, for the given rule ids and tags only.

    axe-core is the copy axe-playwright-python ships (axe.min.js), evaluated into the page's
    main frame (frames are not checked). One string per violated rule: its id, impact and help,
    then a line per offending element with its selector and what is wrong, ready for
    ``assert not violations, "\\n".join(violations)``. Only violations count: what axe cannot
    decide alone ("incomplete", e.g. contrast over a background image) is not reported.
    """
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    options = {
        "runOnly": {"type": "rule", "values": _rule_ids(page, rules)},
        "resultTypes": ["violations"],
    }
    results: dict[str, Any] = page.evaluate("options => axe.run(document, options)", options)
    return [_describe(violation) for violation in results["violations"]]
