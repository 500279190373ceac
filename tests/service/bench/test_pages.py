"""The simulated dashboard pages: real hey workers against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from service.bench.pages import Pages, hey_schedule
from service.telemetry.web import PAGE_POLLS
from tests.support.net import free_port

pytestmark = pytest.mark.skipif(shutil.which("hey") is None, reason="hey is not installed")


class Recorder(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self):
        Recorder.paths.append(self.path)
        status = 200 if self.path.startswith(("/history?after=", "/host")) else 404
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.paths = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_each_page_asks_each_path_at_its_period(server):
    pages = Pages(server, 3, 2.0)
    pages.start()
    answered, failed = pages.stop()
    assert failed == 0
    by_path = {
        path: [p for p in Recorder.paths if p.startswith(f"/{path}")] for path, _ in PAGE_POLLS
    }
    # 3 pages for 2 s: /history each second, /host (every 10 s) once each as the page opens
    assert len(by_path["history"]) == 3 * 2
    assert len(by_path["host"]) == 3
    assert answered == len(Recorder.paths)
    assert all(float(p.split("after=")[1]) > 0 for p in by_path["history"])


def test_requests_to_nothing_count_as_failed():
    pages = Pages(f"http://127.0.0.1:{free_port()}", 2, 1.0)
    pages.start()
    answered, failed = pages.stop()
    assert answered == 0 and failed >= 2


@pytest.mark.parametrize(
    ("period_s", "duration_s", "expected"),
    [
        (1.0, 5.0, ["-n", "50", "-c", "10", "-q", "1"]),  # five each, a second apart
        (10.0, 5.0, ["-n", "10", "-c", "10"]),  # once each, as the pages open
        (10.0, 25.0, ["-n", "20", "-c", "10", "-q", "0.1"]),
    ],
)
def test_the_schedule_is_counted_requests_at_the_period(period_s, duration_s, expected):
    assert hey_schedule(10, period_s, duration_s) == ["hey", *expected]
