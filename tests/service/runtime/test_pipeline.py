"""The pipeline as a user runs it: `trading-service run` in a real process tree.

Real shared memory, real pinned processes, real signals. Each test uses its own shm prefix and
checks that nothing is left in /dev/shm afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from contracts import stats_layout as L
from contracts.log_lines import parse_stamp
from contracts.profile import parse_cpulist
from contracts.stages import STAGES
from service.config import load
from service.runtime.segments import attach_stats
from service.runtime.stats import describe, snapshot

pytestmark = pytest.mark.slow
SHM = Path("/dev/shm")
CLI = [sys.executable, "-m", "service.cli"]


@pytest.fixture
def prefix():
    name = f"lltest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    leftovers = list(SHM.glob(f"{name}.*"))
    for path in leftovers:
        path.unlink()
    assert not leftovers, f"segments left behind: {leftovers}"


def write_config(tmp_path: Path, prefix: str, extra: str = "") -> Path:
    path = tmp_path / "service.toml"
    path.write_text(f'[service]\nshm_prefix = "{prefix}"\ndrain_timeout_s = 20.0\n{extra}')
    return path


def run_cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until_running(prefix: str, proc: subprocess.Popen, timeout=300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            _, stats = attach_stats(SHM, f"{prefix}.stats", writable=False)
            states = describe(snapshot(stats))["stages"]
            if all(s["state"] == "running" for s in states.values()):
                return
        except Exception:  # not created yet
            pass
        time.sleep(0.05)
    raise AssertionError("pipeline did not reach running")


def assert_drained(figures: dict) -> None:
    """After a clean stop every message, order and report has been accounted for."""
    c = figures["counters"]
    assert c["md_messages_sent"] == c["md_messages_processed"]
    assert c["orders_sent"] == c["orders_received"]
    assert c["orders_received"] == c["exchange_fills"] + c["exchange_cancels"]
    assert c["exchange_fills"] == c["fills"] and c["exchange_cancels"] == c["cancels"]


def test_run_for_a_duration_reports_and_cleans_up(tmp_path, prefix):
    config = write_config(tmp_path, prefix, "[feed]\nrate = 200000\n")
    out = tmp_path / "run.json"
    result = run_cli("run", "--config", config, "--duration", "3", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "tick_to_order" in result.stdout
    figures = json.loads(out.read_text())
    c = figures["counters"]
    assert 200_000 < c["md_messages_processed"] <= 200_000 * 3.5
    assert c["orders_sent"] > 0
    assert figures["latency_ns"]["tick_to_order"]["count"] == c["orders_received"]
    # the full histogram (fab bench draws it and recomputes p99.99 from it) matches the summary
    hist = figures["latency_histograms_ns"]["tick_to_order"]
    assert sum(row[3] for row in hist["buckets"]) == c["orders_received"]
    assert hist["max"] == figures["latency_ns"]["tick_to_order"]["max"]
    assert_drained(figures)
    positions = figures["positions"]
    assert sum(abs(v) for v in positions.values()) > 0  # fills came back and moved positions
    assert all(s["state"] == "stopped" for s in figures["stages"].values())


def allowed_cpus(pid: int | str, task: int | str | None = None) -> set[int]:
    """Cpus_allowed_list of a process (its main thread) or of one of its threads."""
    where = Path(f"/proc/{pid}") / (f"task/{task}" if task is not None else "")
    status = (where / "status").read_text()
    line = next(row for row in status.splitlines() if row.startswith("Cpus_allowed_list:"))
    return set(parse_cpulist(line.split(":", 1)[1]))


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue  # ended while we looked
        if f"\nPPid:\t{pid}\n" in status:
            found.append(int(entry.name))
    return found


def test_supervisor_runs_off_every_stage_core(tmp_path, prefix):
    path = write_config(tmp_path, prefix)
    cores = load(path).cores  # the default: the CPUs the CLI may use but the first
    proc = start_cli("run", "--config", path)
    try:
        wait_until_running(prefix, proc)
        _, stats = attach_stats(SHM, f"{prefix}.stats", writable=False)
        values = snapshot(stats)
        stage_pids = {
            stage: int(values[L.SECTION_START[i] + L.PID]) for i, stage in enumerate(STAGES)
        }
        for stage, pid in stage_pids.items():
            assert allowed_cpus(pid) == {cores[stage]}, stage  # each stage pinned to its core
        # every thread of the supervisor, and every process it started that is not a stage
        # (multiprocessing's resource tracker), stays off every stage's core
        supervisor = [allowed_cpus(proc.pid, tid) for tid in os.listdir(f"/proc/{proc.pid}/task")]
        others = [allowed_cpus(pid) for pid in children(proc.pid) if pid not in stage_pids.values()]
        for cpus in supervisor + others:
            assert cpus and not cpus & set(cores.values()), (cpus, cores)
        if os.sched_getaffinity(0) == {0, 1}:  # this 2-CPU machine: the stages on cpu1
            assert set(cores.values()) == {1} and supervisor[0] == {0}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "supervisor on cpu" in stderr


def test_sigterm_drains_and_unlinks(tmp_path, prefix):
    out = tmp_path / "run.json"
    proc = start_cli("run", "--config", write_config(tmp_path, prefix), "--json", out)
    wait_until_running(prefix, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM" in stderr
    # the service's own lines are stamped (fab logs --since cuts the log files by them)
    lines = [line for line in stderr.splitlines() if "service.runtime.pipeline" in line]
    assert lines and all(parse_stamp(line) is not None for line in lines), stderr
    assert_drained(json.loads(out.read_text()))


def test_killed_stage_makes_run_fail(tmp_path, prefix):
    proc = start_cli("run", "--config", write_config(tmp_path, prefix))
    wait_until_running(prefix, proc)
    _, stats = attach_stats(SHM, f"{prefix}.stats", writable=False)
    engine_pid = int(snapshot(stats)[L.ENGINE_SECTION + L.PID])
    os.kill(engine_pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "SIGKILL" in stderr and "engine" in stderr


def test_stale_segments_of_a_crashed_run_are_replaced(tmp_path, prefix):
    config = write_config(tmp_path, prefix)
    proc = start_cli("run", "--config", config)
    wait_until_running(prefix, proc)
    proc.kill()  # the supervisor dies without cleaning up; its stages die with it
    proc.communicate(timeout=30)
    time.sleep(0.5)
    assert list(SHM.glob(f"{prefix}.*")), "a crashed run leaves its segments"
    result = run_cli("run", "--config", config, "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert "stale" in result.stderr


def test_second_instance_with_the_same_prefix_is_refused(tmp_path, prefix):
    config = write_config(tmp_path, prefix)
    proc = start_cli("run", "--config", config)
    try:
        wait_until_running(prefix, proc)
        result = run_cli("run", "--config", config, "--duration", "1")
        assert result.returncode == 1
        assert "running process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_replay_of_a_recording_runs_to_its_end(tmp_path, prefix):
    recording = tmp_path / "md.lmd"
    rec = run_cli("record", "--out", recording, "--messages", "20000")
    assert rec.returncode == 0, rec.stderr
    config = write_config(
        tmp_path, prefix, f'[feed]\nsource = "replay"\nreplay_file = "{recording}"\nrate = 0\n'
    )
    out = tmp_path / "run.json"
    result = run_cli("run", "--config", config, "--json", out)  # no duration: ends with the file
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["counters"]["md_messages_processed"] == 20_000
    assert figures["counters"]["sequence_gaps"] == 0
    assert_drained(figures)


def test_a_replay_at_recorded_pace_follows_the_recordings_clock(tmp_path, prefix):
    """3,000 LOBSTER messages span 422.5 s of the trading day: at --speed 200 the replay
    cannot end before 2.1 s, where a flat-out replay of the same file takes milliseconds."""
    from tests.support.lobster import imported_day

    day = imported_day(tmp_path, 3000)
    span_s = 34622.54754294 - 34200.015105074
    config = write_config(tmp_path, prefix, "[feed]\nrate = 0\n")
    out = tmp_path / "run.json"
    result = run_cli("run", "--config", config, "--replay", day, "--speed", "200", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "at the recording's pace x200" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["replay_speed"] == 200
    assert figures["counters"]["md_messages_processed"] > 3000  # trades and resyncs too
    assert span_s / 200 <= figures["elapsed_s"] < span_s / 200 + 30
    assert_drained(figures)
    v1 = tmp_path / "v1.lmd"
    assert run_cli("record", "--out", v1, "--messages", "100").returncode == 0
    refused = run_cli("run", "--config", config, "--replay", v1, "--speed", "2", timeout=60)
    assert refused.returncode == 2
    assert 'replay_pace = "recorded" needs the times of a version-2' in refused.stderr


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[feed]\nrate = -3\n", ["[feed] rate", "-3", "whole number"]),
        ("[feeed]\nrate = 3\n", ["unknown section [feeed]"]),
        ("[cores]\nengine = 99\n", ["[cores] engine = 99", "allowed"]),
        ("[feed\n", ["not valid TOML"]),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, prefix, content, words):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = run_cli("run", "--config", path, "--duration", "1", timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "not-a-recording"])
def test_bad_replay_file_is_refused_before_starting(tmp_path, prefix, damage):
    recording = tmp_path / "md.lmd"
    assert run_cli("record", "--out", recording, "--messages", "1000").returncode == 0
    data = recording.read_bytes()
    recording.write_bytes(data[:-7] if damage == "truncate" else b"hello world" * 20)
    config = write_config(
        tmp_path, prefix, f'[feed]\nsource = "replay"\nreplay_file = "{recording}"\n'
    )
    result = run_cli("run", "--config", config, "--duration", "1", timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(recording) in result.stderr


def test_kill_switch_rejects_every_order(tmp_path, prefix):
    config = write_config(tmp_path, prefix)
    out = tmp_path / "run.json"
    proc = start_cli("run", "--config", config, "--json", out)
    wait_until_running(prefix, proc)
    switched = run_cli("kill-switch", "on", "--config", config, timeout=60)
    assert switched.returncode == 0 and "on" in switched.stdout
    _, stats = attach_stats(SHM, f"{prefix}.stats", writable=False)
    sent_before = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # orders already in flight settle first
        d = describe(snapshot(stats))
        if d["kill_switch"] == 1:
            time.sleep(0.2)  # a batch that read the switch just before it flipped may finish
            sent_before = describe(snapshot(stats))["orders_sent"]
            break
        time.sleep(0.01)
    assert sent_before is not None
    time.sleep(1.5)
    d = describe(snapshot(stats))
    assert d["orders_sent"] == sent_before
    assert d["orders_rejected"]["kill_switch"] > 0
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
