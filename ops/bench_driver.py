"""Runs ON the benchmarked host (uploaded by ``fab bench``, run with the release venv's Python).

    python bench_driver.py --dir DIR [--url URL] [--interval S] [--stdout NAME] -- COMMAND...

Starts COMMAND (``trading-service run`` or ``jitter``) with its output in DIR, writes its own
pid to ``DIR/driver.pid`` (so an interrupted ``fab bench`` can stop exactly this run), and while
COMMAND lives, GETs URL (the run's ``/latest``) every S seconds, one JSON line per sample in
``DIR/latest.jsonl``: the throughput timeline of the report comes from these. SIGTERM, SIGINT
and SIGHUP are passed on to COMMAND as SIGTERM, so the pipeline drains and unlinks its shared
memory instead of being killed. Exits with COMMAND's status.

Standard library only: it must run before, and independently of, anything else on the host.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--url")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--stdout", default="command.out")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "driver.pid").write_text(f"{os.getpid()}\n")
    with (
        open(args.dir / args.stdout, "wb") as out,
        open(args.dir / f"{args.stdout}.stderr", "wb") as err,
    ):
        child = subprocess.Popen(command, stdout=out, stderr=err)

        def forward(signum: int, frame: FrameType | None) -> None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        # no proxy: the API is on this host's loopback, whatever http_proxy says
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with open(args.dir / "latest.jsonl", "w") as samples:
            next_at = time.monotonic()
            while child.poll() is None:
                next_at += args.interval
                if args.url:
                    try:
                        with opener.open(args.url, timeout=0.8) as response:
                            doc = json.loads(response.read())
                        samples.write(json.dumps({"t": time.time(), "latest": doc}) + "\n")
                        samples.flush()
                    except (OSError, ValueError, urllib.error.URLError):
                        # the API is not up yet (the run is still warming up): ask again soon,
                        # so a short run does not lose its first second of samples
                        next_at = time.monotonic() + min(args.interval, 0.1)
                while child.poll() is None and time.monotonic() < next_at:
                    time.sleep(0.05)
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


if __name__ == "__main__":
    sys.exit(main())
