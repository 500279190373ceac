"""HTTP load on the telemetry API, by ``hey``: how /metrics answers many clients at once."""

from __future__ import annotations

import shutil
import subprocess

from service.bench.figures import HttpLoad


def hey_latency(url: str, requests: int, concurrency: int) -> HttpLoad:
    """Latency of ``requests`` GETs from ``concurrency`` clients, measured by hey (ms)."""
    if shutil.which("hey") is None:
        return {"error": "hey is not installed (Debian package hey)"}
    out = subprocess.run(
        ["hey", "-n", str(requests), "-c", str(concurrency), "-t", "10", url],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    figures: HttpLoad = {"requests": requests, "concurrency": concurrency}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("50% in "):
            figures["p50_ms"] = float(line.split()[2]) * 1000
        if line.startswith("99% in "):
            figures["p99_ms"] = float(line.split()[2]) * 1000
        if line.startswith("[200]"):
            figures["ok"] = int(line.split()[1])
    figures["errors"] = requests - figures.get("ok", 0)
    return figures
