"""Open dashboard pages, simulated: what ten operators watching the dashboard ask of the API.

A browser runs on the operator's machine, not on the trading host: what the host bears is the
API answering. So the pages here are ``hey`` workers (tens of microseconds of CPU a request,
where a Python client took 5 ms a request on the housekeeping core, which the host would never
pay), one per page for each path the page polls, at the page's period
(``service.telemetry.web.PAGE_POLLS``, which a test holds to ``dashboard.js``). ``/history`` is
asked with ``after`` set to when the pages opened, so each answer holds the points since then:
a little more than the page, which asks only for the points since its last answer. The workers
ask in step, a burst each period: no kinder than pages opened at different moments.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time

from service.bench.http_load import error_count, status_counts
from service.telemetry.web import PAGE_POLLS


class Pages:
    """``pages`` dashboards polling ``base_url`` for ``duration_s`` from ``start()``; ``stop()``
    waits for the last requests and counts them."""

    def __init__(self, base_url: str, pages: int, duration_s: float) -> None:
        self.base_url, self.pages, self.duration_s = base_url, pages, duration_s
        self._hey: list[subprocess.Popen] = []
        self.error = "" if shutil.which("hey") else "hey is not installed (Debian package hey)"

    def start(self) -> None:
        if self.error:
            return
        opened = time.time()
        for path, period_s in PAGE_POLLS:
            query = f"?after={opened:.3f}" if path == "history" else ""
            command = [*hey_schedule(self.pages, period_s, self.duration_s), "-t", "10"]
            self._hey.append(
                subprocess.Popen(
                    [*command, f"{self.base_url}/{path}{query}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )

    def stop(self) -> tuple[int, int]:
        """Close the pages: (requests answered, requests that failed or answered other than
        200/202)."""
        answered = failed = 0
        for hey in self._hey:
            try:
                out, _ = hey.communicate(timeout=self.duration_s + 30)
            except subprocess.TimeoutExpired:
                hey.kill()
                out, _ = hey.communicate()
            counts = status_counts(out)
            ok = counts.get(200, 0) + counts.get(202, 0)
            answered += ok
            failed += sum(counts.values()) - ok + error_count(out)
        return answered, failed


def hey_schedule(pages: int, period_s: float, duration_s: float) -> list[str]:
    """hey's arguments for ``pages`` clients each asking every ``period_s`` for ``duration_s``:
    a request each period (hey's first comes one period in), or one each at once when the run
    is shorter than the period (the page asks every path as it opens). Counted, not timed
    (``-n``, never ``-z``): a worker ends after its last request instead of sleeping out one
    more period, which hey cannot cut short."""
    if duration_s < period_s:
        return ["hey", "-n", str(pages), "-c", str(pages)]
    each = math.floor(duration_s / period_s)
    return ["hey", "-n", str(pages * each), "-c", str(pages), "-q", f"{1 / period_s:g}"]
