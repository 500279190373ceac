"""Shared test helpers: free ports, waiting on HTTP, and a real Prometheus server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0, status: int | None = 200) -> httpx.Response:
    """GET ``url`` until it answers (with ``status``, if given) or the timeout passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2.0)
            if status is None or response.status_code == status:
                return response
            last = response.status_code
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s (last: {last})")


class PrometheusServer:
    """The real `prometheus` binary scraping ``targets`` every second, on a free port."""

    def __init__(self, workdir: Path, targets: list[str], metrics_path: str = "/metrics"):
        if shutil.which("prometheus") is None:
            pytest.skip("the prometheus server is not installed (Debian package prometheus)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        quoted = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "scrape_configs:\n  - job_name: lowlat\n"
            f"    metrics_path: {metrics_path}\n    static_configs:\n      - targets: [{quoted}]\n"
        )
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(f"{self.url}/-/ready", timeout=60)

    def query(self, promql: str) -> list[dict]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict]:
        """Query until the result is non-empty (Prometheus needs a scrape or two)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"prometheus returned nothing for {promql} within {timeout} s")

    def wait_until(self, promql: str, accept, timeout: float = 40.0) -> float:
        """Query until the first result's value satisfies ``accept`` (rates need a few
        scrapes before they settle); returns it, or fails with the last value seen."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                last = float(result[0]["value"][1])
                if accept(last):
                    return last
            time.sleep(0.5)
        raise AssertionError(f"{promql}: last value {last} not accepted within {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
