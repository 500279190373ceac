"""An engine (`trading-service run`) and its telemetry API (`trading-service telemetry`), each a
real process, sharing one config: what the API and dashboard tests run against.

The engine can be stopped and started again under the running API (the API follows it), and
the API stopped on its own (the dashboard must say it stopped answering).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.net import free_port, wait_http

CLI = [sys.executable, "-m", "service.cli"]


class Stack:
    """An engine and its telemetry API, sharing one config."""

    def __init__(self, workdir):
        self.prefix = f"lltest-tel-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "service.toml"
        self.config.write_text(
            f'[service]\nshm_prefix = "{self.prefix}"\n'
            "[feed]\nrate = 50000\n"
            f"[telemetry]\nport = {self.port}\nsample_interval_s = 0.2\nready_heartbeat_s = 1.0\n"
        )
        self.engine: subprocess.Popen | None = None
        self.api = subprocess.Popen(
            [*CLI, "telemetry", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_http(f"{self.url}/health")

    def start_engine(self) -> None:
        self.engine = subprocess.Popen(
            [*CLI, "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_http(f"{self.url}/ready", timeout=300)

    def stop_engine(self) -> int:
        assert self.engine is not None
        self.engine.send_signal(signal.SIGTERM)
        self.engine.communicate(timeout=60)
        code, self.engine = self.engine.returncode, None
        return code

    def stop_api(self) -> None:
        if self.api.poll() is not None:
            return
        self.api.send_signal(signal.SIGTERM)
        try:
            self.api.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.api.kill()
            self.api.communicate()

    def close(self) -> None:
        if self.engine is not None:
            self.stop_engine()
        self.stop_api()

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)


@contextmanager
def running_stack(workdir) -> Iterator[Stack]:
    """A stack whose engine is running and ready, closed (engine, then API) afterwards."""
    stack = Stack(workdir)
    try:
        stack.start_engine()
        yield stack
    finally:
        stack.close()
