"""`fab bench` against this machine, the way the tests do it: a real sshd on 127.0.0.1 with
throwaway keys, and a host root whose `current` release is this checkout's .venv
(``tests.support.bench_host``; systemctl is its recording stand-in). For figures in
docs/performance.md on a machine without a lowlat host.

    .venv/bin/python -m tests.support.bench_loopback [DURATION_S [RATES [OUT_DIR]]]
    e.g. .venv/bin/python -m tests.support.bench_loopback 10 100k,1m bench-results/loopback

Only one busy-polling run at a time on a shared machine: wrap it in
`flock /tmp/lowlat-spin.lock ...`.
"""

import sys
import tempfile
from pathlib import Path

from tests.support.bench_host import LOOSE_SLO, BenchHost, fab
from tests.support.loopback import SshServer

args = sys.argv[1:]
duration = args[0] if len(args) > 0 else "10"
rates = args[1] if len(args) > 1 else "100k,1m"
out = Path(args[2] if len(args) > 2 else "bench-results/loopback").resolve()
with tempfile.TemporaryDirectory(prefix="lowlat-bench-") as work:
    ssh = SshServer(Path(work) / "sshd")
    (Path(work) / "host").mkdir()
    host = BenchHost(Path(work) / "host", LOOSE_SLO)
    try:
        args = ("--duration", duration, "--rates", rates, "--out", str(out))
        result = fab(host, ssh, "bench", "--host", SshServer.HOST_ALIAS, *args, timeout=3600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    finally:
        host.cleanup()
        ssh.stop()
sys.exit(result.returncode)
