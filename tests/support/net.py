"""Loopback plumbing for tests: free ports, waiting on HTTP, stopping the servers tests start."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM a server the tests started, SIGKILL it if it lingers, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


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
