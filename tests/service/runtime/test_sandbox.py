"""service/runtime/sandbox.py for real: a spawned process installs the seccomp filter and then
cannot open an AF_INET, AF_INET6 or AF_PACKET socket, while AF_UNIX works; a process without it
can (so the test can fail); without libseccomp, one warning line and the process goes on; and a
pipeline split over two processes runs with the filter in each stage process, not in the
supervisor."""

from __future__ import annotations

import errno
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from contracts import stats_layout as L
from contracts.stages import STAGES
from service.config import from_dict
from service.runtime.sandbox import deny_network, needs_network
from service.runtime.segments import attach_stats
from service.runtime.stats import snapshot
from tests.support.paths import REPO

FAMILIES = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "AF_UNIX": socket.AF_UNIX}
if hasattr(socket, "AF_PACKET"):
    FAMILIES["AF_PACKET"] = socket.AF_PACKET


def _open_sockets(filtered: bool, results) -> None:
    """In a spawned process: the filter (or not), then one socket of each family."""
    installed = deny_network() if filtered else False
    got: dict[str, object] = {"installed": installed}
    for name, family in FAMILIES.items():
        try:
            socket.socket(family, socket.SOCK_DGRAM).close()
            got[name] = "opened"
        except OSError as exc:
            got[name] = exc.errno
    results.put(got)


def _in_a_spawned_process(filtered: bool) -> dict:
    ctx = multiprocessing.get_context("spawn")  # as the supervisor starts its stages
    results = ctx.Queue()
    process = ctx.Process(target=_open_sockets, args=(filtered, results))
    process.start()
    got = results.get(timeout=60)
    process.join(60)
    assert process.exitcode == 0
    return got


def test_the_filter_refuses_network_sockets_and_keeps_unix_ones():
    got = _in_a_spawned_process(filtered=True)
    assert got["installed"] is True
    assert got["AF_INET"] == got["AF_INET6"] == errno.EAFNOSUPPORT
    if "AF_PACKET" in got:
        assert got["AF_PACKET"] == errno.EAFNOSUPPORT
    assert got["AF_UNIX"] == "opened"


def test_without_the_filter_the_same_process_opens_them():
    got = _in_a_spawned_process(filtered=False)
    assert got["AF_INET"] == "opened" and got["AF_UNIX"] == "opened"


def test_without_libseccomp_one_warning_line_and_on():
    # pyseccomp itself raises RuntimeError when it finds no libseccomp; an import that fails
    # is what this process sees either way
    code = (
        "import sys, socket; sys.modules['pyseccomp'] = None\n"
        "from service.runtime.sandbox import deny_network\n"
        "assert deny_network() is False\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()\n"
        "print('went on')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert (result.returncode, result.stdout) == (0, "went on\n"), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no seccomp filter for this stage process")


@pytest.mark.parametrize(
    ("config", "stages", "needs"),
    [
        ({}, ("feed", "engine", "gateway"), False),  # simulator and simulated exchange
        ({"feed": {"source": "udp"}}, ("feed",), True),
        ({"feed": {"source": "udp"}}, ("engine", "gateway"), False),
        ({"gateway": {"exchange": "tcp"}}, ("engine", "gateway"), True),
        ({"gateway": {"exchange": "tcp"}, "feed": {"source": "udp"}}, ("engine",), False),
        ({"feed": {"source": "replay", "replay_file": "x"}}, ("feed",), False),
    ],
)
def test_only_the_feed_and_gateway_of_a_real_exchange_need_the_network(config, stages, needs):
    assert needs_network(from_dict(config), stages) is needs


def _seccomp_filters(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Seccomp_filters:"):
            return int(line.split()[1])
    pytest.skip("this kernel does not report seccomp filters in /proc/<pid>/status")


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs for two stages")
def test_a_split_pipeline_runs_with_each_stage_process_filtered(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    prefix = f"lltest-sandbox-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "split.toml"
    config.write_text(
        f'[service]\nshm_dir = "{tmp_path}"\nshm_prefix = "{prefix}"\n'
        f"[cores]\nfeed = {cpus[0]}\nengine = {cpus[1]}\ngateway = {cpus[1]}\n"
        "[feed]\nrate = 20000\n"
    )
    log = tmp_path / "run.log"
    with log.open("w") as err:
        run = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "run", "--config", config, "--duration=8"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 300
        while "ready: all stages running" not in log.read_text():
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run did not get ready"
            time.sleep(0.1)
        segment, stats = attach_stats(tmp_path, f"{prefix}.stats", writable=False)
        # a stage's pid reaches the shared stats with its first publication of them, which
        # may come a little after "ready" on a loaded machine
        while True:
            words = snapshot(stats)
            pids = {s: int(words[L.SECTION_START[STAGES.index(s)] + L.PID]) for s in STAGES}
            if all(pids.values()):
                break
            assert time.monotonic() < deadline, f"a stage never published its pid: {pids}"
            time.sleep(0.05)
        supervisor = _seccomp_filters(run.pid)
        # one filter more than the supervisor in each stage process (feed; engine+gateway)
        assert {s: _seccomp_filters(pid) for s, pid in pids.items()} == dict.fromkeys(
            STAGES, supervisor + 1
        )
        del stats, words
        segment.close()
        assert run.wait(120) == 0, log.read_text()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert "no seccomp filter" not in log.read_text()
