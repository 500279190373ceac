"""``trading-service top``: frames drawn from known samples, the loop against a real stats block,
and the view in a real terminal (tmux) quitting on q with the terminal put back.

Frames are rendered to plain text with a recording console and read as a person would. The
"engine" is a stats block this test process creates (``create_segments``), so ``EngineView``
sees its owner alive and takes it for a running engine; its words are written directly.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from contracts import stats_layout as L
from contracts.buckets import HIST_MAX, HIST_SUM, HIST_WORDS, N_BUCKETS
from contracts.stages import ENGINE, FEED, GATEWAY, S_FAILED, S_RUNNING, STAGES
from service.config import Config, ServiceConfig
from service.kernels.histogram import hist_record
from service.kernels.seqlock import set_state
from service.runtime.segments import create_segments
from service.telemetry.engine_view import Interval, Sample
from service.telemetry.top import TITLE, WAITING, KeyReader, main_top, render_frame

SECOND = 1_000_000_000
PID, STARTED = 4242, 7 * SECOND
# runs main_top in a child process: argv = prefix, shm_dir, refresh_s
CHILD = """
import dataclasses, sys
from service.config import Config, ServiceConfig
from service.telemetry.top import main_top
service = dataclasses.replace(ServiceConfig(), shm_prefix=sys.argv[1], shm_dir=sys.argv[2])
sys.exit(main_top(dataclasses.replace(Config(), service=service), float(sys.argv[3])))
"""


def config_for(tmp_path: Path) -> Config:
    service = dataclasses.replace(
        ServiceConfig(), shm_prefix=f"lltop-{uuid.uuid4().hex[:8]}", shm_dir=str(tmp_path)
    )
    return dataclasses.replace(Config(), service=service)


def sample(block, taken_s: float, *, kill_switch=False, pid=PID, started_ns=STARTED) -> Sample:
    return Sample(int(taken_s * SECOND), True, block, kill_switch, pid, started_ns)


def absent(taken_s: float = 1.0) -> Sample:
    return Sample(int(taken_s * SECOND), False, None, False, 0, 0)


def text_of(renderable, width: int = 140, styles: bool = False) -> str:
    """What a terminal ``width`` columns wide shows; with ``styles``, with its ANSI codes."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system="standard")
    console.print(renderable)
    return console.export_text(styles=styles)


def row(text: str, label: str, cells: int, table: str | None = None) -> list[str]:
    """The first ``cells`` words after ``label`` at the start of a row of ``table``.

    Tables stand side by side, so a table is found by its title, and its rows are read from
    the column where the title starts, in the lines below it.
    """
    lines = text.splitlines()
    top, column = 0, 0
    if table is not None:
        top = next(i for i, line in enumerate(lines) if table in line)
        column = lines[top].index(table)
    for line in lines[top:]:
        rest = line[column:].lstrip()
        if rest.startswith(label):
            return rest[len(label) :].split()[:cells]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def latency_rows(text: str, path: str) -> tuple[list[str], list[str]]:
    """(last interval, since start) cells of one latency path, percentiles as 'value unit'."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(path))

    def cells(line: str, label: str) -> list[str]:
        rest = line.strip()[len(label) :]
        return re.findall(r"-|[\d.,]+ [a-zµ]+|[\d,]+", rest)

    return cells(lines[i], path), cells(lines[i + 1], "since start")


@pytest.fixture
def blocks():
    """Two stats blocks of one run, one second apart, with known differences."""
    before = np.zeros(L.STATS_WORDS, dtype=np.int64)
    before[L.MD_PROCESSED] = 1_000
    before[L.ORDERS_SENT] = 10
    before[L.FILLS] = 4
    before[L.REJECTS + 1] = 2
    for value in range(1000):  # since start: mostly ~2-3 us
        hist_record(before, L.H_TICK_TO_ORDER, 2_000 + value)
    after = before.copy()
    after[L.MD_PROCESSED] += 50_000
    after[L.ORDERS_SENT] += 1_500
    after[L.FILLS] += 700
    after[L.REJECTS + 1] += 3  # max_order_qty
    after[L.REJECTS + 4] += 9  # position_limit
    for value in range(100):  # the last second: ~90 us
        hist_record(after, L.H_TICK_TO_ORDER, 90_000 + value)
    return before, after


# ------------------------------------------------------------------------------ Interval


def test_rates_are_counter_deltas_per_second(blocks):
    before, after = blocks
    rates = Interval(sample(before, 10.0), sample(after, 10.5))
    assert rates.available and rates.interval_s == pytest.approx(0.5)
    assert rates.per_second(L.MD_PROCESSED) == pytest.approx(100_000)
    assert rates.per_second(L.ORDERS_SENT) == pytest.approx(3_000)
    assert rates.per_second(L.FILLS) == pytest.approx(1_400)
    assert rates.per_second(L.REJECTS, len(L.REJECT_REASONS)) == pytest.approx(24)


@pytest.mark.parametrize(
    "previous",
    [
        None,  # first sample
        absent(),  # the engine just started
        "restarted",  # same prefix, new run: its counters start again from zero
    ],
)
def test_no_rates_across_runs_or_without_a_previous_sample(blocks, previous):
    before, after = blocks
    if previous == "restarted":
        previous = sample(before, 1.0, started_ns=STARTED - SECOND)
    rates = Interval(previous, sample(after, 2.0))
    assert not rates.available
    assert rates.per_second(L.MD_PROCESSED) is None
    assert rates.histogram(L.H_TICK_TO_ORDER) is None
    text = text_of(render_frame(previous, sample(after, 2.0), Config()))
    assert row(text, "market data", 2) == ["-", "51,000"]
    assert latency_rows(text, "tick_to_order")[0] == ["-"] * 6


def test_a_counter_that_seems_to_go_back_gives_no_rate(blocks):
    before, after = blocks
    after = after.copy()
    after[L.FILLS] = 0  # as from a section that could not be read whole
    assert Interval(sample(before, 1.0), sample(after, 2.0)).per_second(L.FILLS) is None


def test_window_histogram_equals_one_holding_only_the_interval(blocks):
    """Cross-check against the obvious way: record only the interval's values afresh."""
    before, after = blocks
    fresh = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for value in range(100):
        hist_record(fresh, L.H_TICK_TO_ORDER, 90_000 + value)
    base = L.H_TICK_TO_ORDER
    window = Interval(sample(before, 1.0), sample(after, 2.0)).histogram(base)
    np.testing.assert_array_equal(window[:N_BUCKETS], fresh[base : base + N_BUCKETS])
    assert window[HIST_SUM] == fresh[base + HIST_SUM]
    # the interval's max is its top bucket's upper bound, never below the true max
    assert fresh[base + HIST_MAX] <= window[HIST_MAX] <= fresh[base + HIST_MAX] * 1.0625
    assert window.shape == (HIST_WORDS,)


# ------------------------------------------------------------------------------ frames


def test_frame_shows_rates_from_two_samples(blocks):
    before, after = blocks
    text = text_of(render_frame(sample(before, 10.0), sample(after, 11.0), Config()))
    assert TITLE in text
    assert row(text, "market data", 2) == ["50,000", "51,000"]
    assert row(text, "orders", 2) == ["1,500", "1,510"]
    assert row(text, "fills", 2) == ["700", "704"]
    assert row(text, "rejects", 2) == ["12.0", "14"]


def test_frame_shows_window_percentiles_apart_from_since_start(blocks):
    before, after = blocks
    text = text_of(render_frame(sample(before, 10.0), sample(after, 11.0), Config()))
    last, since_start = latency_rows(text, "tick_to_order")
    assert last == ["100", *["90.1 µs"] * 5]  # every value of the interval is ~90 us
    assert since_start[:3] == ["1,100", "2.56 µs", "3.07 µs"]  # count, p50, p90
    assert since_start[-1] == "90.1 µs"
    # nothing recorded in the interval: "-", while since start has figures
    again = text_of(render_frame(sample(after, 11.0), sample(after, 12.0), Config()))
    last, since_start = latency_rows(again, "tick_to_order")
    assert last == ["0", *["-"] * 5]
    assert since_start[:2] == ["1,100", "2.56 µs"]


def test_frame_shows_rejects_by_reason(blocks):
    before, after = blocks
    text = text_of(render_frame(sample(before, 10.0), sample(after, 11.0), Config()))
    assert row(text, "max_order_qty", 2) == ["3.0", "5"]
    assert row(text, "position_limit", 2) == ["9.0", "9"]
    assert row(text, "price_band", 2) == ["0.0", "0"]


def test_kill_switch_on_is_highlighted_and_off_is_not_shown(blocks):
    _, after = blocks
    styled = text_of(
        render_frame(None, sample(after, 1.0, kill_switch=True), Config()), styles=True
    )
    assert "\x1b[1;37;41m KILL SWITCH ON \x1b[0m" in styled  # bold white on red
    assert "has not applied it yet" in styled  # the engine's gauge is still 0
    acknowledged = after.copy()
    acknowledged[L.KILL_SWITCH_ON] = 1
    text = text_of(render_frame(None, sample(acknowledged, 1.0, kill_switch=True), Config()))
    assert "KILL SWITCH ON" in text and "not applied" not in text
    assert "KILL SWITCH" not in text_of(render_frame(None, sample(after, 1.0), Config()))


def test_frame_shows_gaps_rings_positions_and_stages():
    block = np.zeros(L.STATS_WORDS, dtype=np.int64)
    block[L.SEQUENCE_GAPS], block[L.MD_LOST], block[L.STALE_BOOKS] = 3, 17, 2
    block[L.MD_RING_OCCUPANCY], block[L.MD_RING_OCCUPANCY_MAX] = 120, 4_000
    block[L.ORDER_RING_OCCUPANCY], block[L.ORDER_RING_OCCUPANCY_MAX] = 5, 64
    block[L.FILL_RING_OCCUPANCY] = 7
    block[L.FILL_RING_OCCUPANCY_MAX] = 31
    block[L.POSITIONS + 3], block[L.POSITIONS + 12] = -40, 1_250
    taken = 100.0
    for stage, state, age_s, pid in (
        (FEED, S_RUNNING, 0.25, 111),
        (ENGINE, S_RUNNING, 3.0, 222),  # late: older than ready_heartbeat_s
        (GATEWAY, S_FAILED, 9.0, 333),
    ):
        start = L.SECTION_START[stage]
        block[start + L.STATE], block[start + L.PID] = state, pid
        block[start + L.HEARTBEAT_NS] = int((taken - age_s) * SECOND)
    config = Config()
    text = text_of(render_frame(None, sample(block, taken), config))
    assert row(text, "sequence gaps", 2, "market data and") == ["-", "3"]
    assert row(text, "messages lost", 2, "market data and") == ["-", "17"]
    assert row(text, "stale books", 1, "market data and") == ["2"]
    assert row(text, "md", 3, "ring occupancy") == ["120", "4,000", f"{config.rings.md_capacity:,}"]
    assert row(text, "orders", 3, "ring occupancy") == [
        "5",
        "64",
        f"{config.rings.order_capacity:,}",
    ]
    assert row(text, "fills", 3, "ring occupancy") == ["7", "31", f"{config.rings.fill_capacity:,}"]
    assert "#3 -40" in text and "#12 +1,250" in text
    assert "#0 " not in text  # flat instruments are left out
    assert row(text, "feed", 4, "stages") == ["running", "250.0", "ms", "111"]
    assert row(text, "engine", 4, "stages") == ["running", "3.0", "s", "222"]
    assert row(text, "gateway", 4, "stages") == ["failed", "9.0", "s", "333"]


def test_flat_book_says_so():
    block = np.zeros(L.STATS_WORDS, dtype=np.int64)
    assert "positions (lots): all flat" in text_of(render_frame(None, sample(block, 1.0), Config()))


@pytest.mark.parametrize("previous", [None, "absent", "running"])
def test_engine_absent_shows_the_waiting_message(blocks, previous, tmp_path):
    previous = {"absent": absent(0.5), "running": sample(blocks[0], 0.5)}.get(previous)
    config = config_for(tmp_path)
    text = text_of(render_frame(previous, absent(1.0), config))
    assert TITLE in text and WAITING in text
    assert f"{config.service.shm_prefix}.stats" in text


def test_a_frame_fits_eighty_columns_without_raising(blocks):
    before, after = blocks
    text = text_of(render_frame(sample(before, 1.0), sample(after, 2.0), Config()), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert latency_rows(text, "tick_to_order")[0][1] == "90.1 µs"  # nothing cut


# ------------------------------------------------------------------------------ main_top


@pytest.fixture
def engine(tmp_path):
    """(config, stats words) of a stats block that EngineView takes for a running engine."""
    config = config_for(tmp_path)
    segments = create_segments(config)
    yield config, segments.stats
    segments.unlink()


def test_once_prints_a_frame_of_the_live_engine(engine, capsys):
    config, stats = engine
    stats[L.MD_PROCESSED] = 123_456
    stats[L.REJECTS + 5] = 77
    stats[L.POSITIONS + 1] = -9
    hist_record(stats, L.H_MD_TO_ENGINE, 1_500)
    local = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for stage in range(len(STAGES)):
        set_state(stats, local, L.SECTION_START[stage], S_RUNNING)
    assert main_top(config, refresh_s=0.05, once=True) == 0
    text = capsys.readouterr().out
    assert TITLE in text and f"pid {os.getpid()}" in text
    assert row(text, "market data", 2) == ["0.0", "123,456"]  # rates over the two samples
    assert row(text, "rate_throttle", 2) == ["0.0", "77"]
    assert "#1 -9" in text
    assert row(text, "feed", 1, "stages") == row(text, "gateway", 1, "stages") == ["running"]
    assert latency_rows(text, "md_to_engine")[1][:2] == ["1", "1.50 µs"]
    assert WAITING not in text


def test_once_without_an_engine_prints_the_waiting_frame(tmp_path, capsys):
    assert main_top(config_for(tmp_path), refresh_s=0.01, once=True) == 0
    assert WAITING in capsys.readouterr().out


# ------------------------------------------------------------------------------ terminal


def test_key_reader_quits_on_q_only_and_restores_the_terminal_on_errors():
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, closefd=False) as stream:
            saved = termios.tcgetattr(slave)
            with pytest.raises(RuntimeError), KeyReader(stream) as keys:
                lflag = termios.tcgetattr(slave)[3]
                assert not lflag & (termios.ECHO | termios.ICANON)  # cbreak, no echo
                assert lflag & termios.ISIG  # Ctrl-C still interrupts
                os.write(master, b"x ")
                assert not keys.wait(0.05)
                os.write(master, b"q")
                started = time.monotonic()
                assert keys.wait(5.0)
                assert time.monotonic() - started < 1.0
                raise RuntimeError("the view failed")
            assert termios.tcgetattr(slave) == saved
    finally:
        os.close(slave)
        os.close(master)


def test_key_reader_without_a_terminal_just_waits():
    with open(os.devnull) as stream, KeyReader(stream) as keys:
        started = time.monotonic()
        assert not keys.wait(0.1)
        assert 0.09 <= time.monotonic() - started < 1.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def wait_until_catching(child: subprocess.Popen, signum: int, timeout_s: float = 120.0) -> None:
    """Until the child has a handler for ``signum`` (top sets SIGTERM's as its loop starts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        with open(f"/proc/{child.pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if caught & (1 << (signum - 1)):
            return
        time.sleep(0.05)
    raise AssertionError(f"the child did not catch signal {signum} within {timeout_s} s")


def run_child(config: Config, refresh_s: float, **kwargs) -> subprocess.Popen:
    argv = [config.service.shm_prefix, config.service.shm_dir, str(refresh_s)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *argv], **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_without_a_terminal_a_signal_quits_cleanly(tmp_path, signum):
    child = run_child(
        config_for(tmp_path),
        0.1,
        stdin=subprocess.DEVNULL,  # end of input at once: must neither quit nor spin
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python only turns SIGINT into KeyboardInterrupt if it was not ignored at its start
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_until_catching(child, signal.SIGTERM)
        time.sleep(0.3)  # past the first frame
        used = cpu_seconds(child.pid)
        time.sleep(1.0)
        assert cpu_seconds(child.pid) - used < 0.3  # sleeps between frames, never spins
        child.send_signal(signum)
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert WAITING in out  # the final frame is printed when stdout is not a terminal
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_a_terminal_q_quits_and_the_terminal_is_restored(engine, tmp_path):
    config, stats = engine
    stats[L.MD_PROCESSED] = 31_337
    rc, stty = tmp_path / "rc", tmp_path / "stty"
    argv = [config.service.shm_prefix, config.service.shm_dir, "0.2"]
    command = (
        f"{shlex.join([sys.executable, '-c', CHILD, *argv])}; echo $? > {rc}; stty -a > {stty}"
    )
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]  # a private server: others' untouched
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "140", "-y", "50", "-c", os.getcwd(), command],
        check=True,
        timeout=10,
    )
    try:
        pane = ""
        deadline = time.monotonic() + 60  # a cold numba cache compiles the snapshot kernels
        while "31,337" not in pane and time.monotonic() < deadline and not rc.exists():
            time.sleep(0.2)
            pane = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True, timeout=10
            ).stdout
        assert TITLE in pane and "31,337" in pane, pane
        subprocess.run([*tmux, "send-keys", "q"], check=True, timeout=10)
        sent = time.monotonic()
        while not rc.exists() and time.monotonic() - sent < 5:
            time.sleep(0.05)
        assert rc.exists(), "top did not quit within 5 s of q"
        while "icanon" not in (stty.read_text() if stty.exists() else ""):
            assert time.monotonic() - sent < 10, "stty -a did not run after top"
            time.sleep(0.05)
        assert rc.read_text().strip() == "0"
        settings = re.split(r"[\s;]+", stty.read_text())
        assert "icanon" in settings and "echo" in settings, settings  # not -icanon / -echo
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
