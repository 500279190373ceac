"""A real Prometheus server for the tests (Debian's ``prometheus`` package)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, stop_process


class PrometheusServer:
    """The real ``prometheus`` binary scraping ``targets`` every second, on a free port.

    Its log is kept in the work directory and shown when it fails to start or a query never
    gets the expected answer.
    """

    TIMEOUT_S = 40.0

    def __init__(self, workdir: Path, targets: list[str]):
        if shutil.which("prometheus") is None:
            pytest.skip("the prometheus server is not installed (Debian package prometheus)")
        self.port = free_port()
        config = workdir / "prometheus.yml"
        quoted = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: lowlat\n"
            f"    static_configs:\n      - targets: [{quoted}]\n"
        )
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        # trust_env=False: a proxy from the environment must not sit between us and loopback
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"prometheus not ready after {self.TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def query(self, promql: str) -> list[dict]:
        response = self.http.get("/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_until(self, promql: str, accept) -> float:
        """The single value of ``promql`` once ``accept(value)`` holds (rates need a few
        scrapes to settle); fails with the last value seen."""
        deadline = time.monotonic() + self.TIMEOUT_S
        seen = None
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                assert len(result) == 1, result
                seen = float(result[0]["value"][1])
                if accept(seen):
                    return seen
            time.sleep(0.25)
        pytest.fail(f"{promql} = {seen}, not accepted within {self.TIMEOUT_S} s")

    def wait_for(self, promql: str, expected: float | None = None) -> float:
        """The single value of ``promql`` once there is one (equal to ``expected`` if given)."""
        return self.wait_until(promql, lambda v: expected is None or v == expected)

    def stop(self) -> None:
        self.http.close()
        stop_process(self.process)
        self._log.close()
