"""HTTP load on the telemetry API, by ``hey``: how /metrics answers many clients at once, and
hey's report read back (what answered, by status, and what failed without one)."""

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
    figures["ok"] = status_counts(out).get(200, 0)
    figures["errors"] = requests - figures["ok"]
    return figures


def status_counts(out: str) -> dict[int, int]:
    """hey's "Status code distribution": ``[200]\t110 responses`` lines, by status."""
    counts = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("[") and "]" in line and line.endswith("responses"):
            code, rest = line[1:].split("]", 1)
            counts[int(code)] = int(rest.split()[0])
    return counts


def error_count(out: str) -> int:
    """Requests hey saw fail without a status (refused, timed out): its "Error distribution"."""
    errors, in_errors = 0, False
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Error distribution"):
            in_errors = True
        elif in_errors and line.startswith("["):
            errors += int(line[1:].split("]", 1)[0])
    return errors
