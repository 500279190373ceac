"""``trading-service top``: a live terminal view of the running engine.

Each refresh takes one sample of the engine (``service.telemetry.engine_view``, a lock-free copy of
the stats block) and draws a frame from it and the sample before: rates are counter deltas over the
time between the two samples, and the latency percentiles "last" are those of the histogram bucket
deltas, i.e. of what was recorded in that interval alone. The block's histograms are cumulative
since the run started; their own percentiles are shown as "since start".

Drawing is a pure function of two samples (``render_frame``), so it is tested without a
terminal; ``main_top`` is the loop around it. The loop sleeps in ``select`` on stdin between
samples (no polling), reads single keys in cbreak mode so ``q`` quits without Enter or echo,
and puts the terminal back however it ends. When the engine is absent the view says so and
keeps sampling: ``EngineView`` attaches to the next run by itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from typing import TextIO

import numpy as np
from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contracts import stats_layout as L
from contracts.buckets import HIST_WORDS, summary
from contracts.constants import EXIT_OK
from contracts.stages import STAGES
from service.config import Config
from service.telemetry.engine_view import EngineView, Interval, Sample

TITLE = "lowlat top"
WAITING = "engine not running — waiting for it"
QUIT_KEYS = b"qQ"

# (label, first word, words): the rates shown at the top; rejects sum over every reason
RATES = (
    ("market data", L.MD_PROCESSED, 1),
    ("orders", L.ORDERS_SENT, 1),
    ("fills", L.FILLS, 1),
    ("rejects", L.REJECTS, len(L.REJECT_REASONS)),
)
# the path a message takes first, so the table reads top to bottom like the pipeline
LATENCIES = (
    ("tick_to_order", L.H_TICK_TO_ORDER),
    ("md_to_engine", L.H_MD_TO_ENGINE),
    ("order_wait", L.H_ORDER_WAIT),
    ("feed_lag", L.H_FEED_LAG),
)
PERCENTILE_KEYS = ("p50", "p90", "p99", "p999", "max")
STATE_STYLES = {"running": "green", "failed": "bold red", "draining": "yellow", "stopped": "yellow"}


# ------------------------------------------------------------------------------ formatting


def _ns(value: float | None) -> str:
    """Three significant digits: bucket widths make a fourth meaningless."""
    if value is None or math.isnan(value):
        return "-"
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if value >= scale:
            scaled = value / scale
            return f"{scaled:.{2 if scaled < 10 else 1 if scaled < 100 else 0}f} {unit}"
    return f"{value:.0f} ns"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _count(value: int, warn: bool = False) -> Text:
    """A total, yellow when it counts trouble and is not zero."""
    return Text(f"{value:,}", style="yellow" if warn and value else "")


# ------------------------------------------------------------------------------ frame


def render_frame(previous: Sample | None, current: Sample, config: Config) -> RenderableType:
    """One screen of ``top`` from the current sample and the one taken before (or None)."""
    if not current.running or current.block is None:
        return Group(
            _header(current, config, None),
            Text(WAITING, style="bold yellow"),
            Text(
                f"looking for {config.service.shm_dir}/{config.service.shm_prefix}.stats",
                style="dim",
            ),
            # segments that are there but refused: say why, never show their numbers
            Text(f"refused: {current.problem}", style="bold red") if current.problem else Text(""),
        )
    rates = Interval(previous, current)
    return Group(
        _header(current, config, rates),
        # Columns flows the small tables side by side as far as the terminal is wide
        Columns(
            [
                _counters_table(rates),
                _health_table(rates),
                Group(_stages_table(current, config), _rings_table(current, config)),
            ],
            padding=(1, 3),
        ),
        _latency_table(rates),
        _positions(current),
    )


def _header(current: Sample, config: Config, rates: Interval | None) -> Text:
    text = Text()
    text.append(TITLE, style="bold")
    text.append(f"  {config.service.shm_prefix}")
    if current.running:
        text.append(f"  pid {current.owner_pid}")
        if current.started_ns:
            text.append(f"  up {_uptime((current.taken_ns - current.started_ns) / 1e9)}")
        if rates is not None and rates.available:
            text.append(f"  last {rates.interval_s:.2f} s")
        # the control word is the operator's command; the engine's gauge says it has seen it
        engine_on = current.block is not None and current.stats[L.KILL_SWITCH_ON] != 0
        if current.kill_switch or engine_on:
            text.append("  ")
            text.append(" KILL SWITCH ON ", style="bold white on red")
            if current.kill_switch and not engine_on:
                text.append(" (engine has not applied it yet)", style="red")
    text.append("   q quits", style="dim")
    return text


def _table(title: str, *columns: str) -> Table:
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    return table


def _counters_table(rates: Interval) -> Table:
    table = _table("rates", "", "/s", "total")
    block = rates.current.stats
    for label, offset, words in RATES:
        total = int(block[offset : offset + words].sum())
        table.add_row(label, _rate(rates.per_second(offset, words)), f"{total:,}")
    # the reasons under their sum, in the order the risk checks run
    for i, reason in enumerate(L.REJECT_REASONS):
        total = int(block[L.REJECTS + i])
        table.add_row(
            Text(f"  {reason}", style="" if total else "dim"),
            _rate(rates.per_second(L.REJECTS + i)),
            _count(total, warn=True),
        )
    return table


def _health_table(rates: Interval) -> Table:
    table = _table("market data and rings", "", "/s", "total")
    block = rates.current.stats
    counters = (
        ("sequence gaps", L.SEQUENCE_GAPS),
        ("messages lost", L.MD_LOST),
        ("dropped (md full)", L.MD_DROPPED),
        ("md ring full", L.MD_RING_FULL),
        ("order ring full", L.ORDER_RING_FULL),
        ("fill ring full", L.FILL_RING_FULL),
    )
    for label, offset in counters:
        table.add_row(label, _rate(rates.per_second(offset)), _count(int(block[offset]), True))
    table.add_row("stale books", "", _count(int(block[L.STALE_BOOKS]), warn=True))
    return table


def _stages_table(current: Sample, config: Config) -> Table:
    table = _table("stages", "", "state", "heartbeat", "pid")
    stale_after = config.telemetry.ready_heartbeat_s  # the age at which /ready says 503
    for stage, name in enumerate(STAGES):
        state = current.stage_state(stage)
        age = current.heartbeat_age_s(stage)
        late = age is not None and age > stale_after and state == "running"
        pid = int(current.stats[L.SECTION_START[stage] + L.PID])
        table.add_row(
            name,
            Text(state, style=STATE_STYLES.get(state, "dim")),
            Text(_age(age), style="bold red" if late else ""),
            str(pid) if pid else "-",
        )
    return table


def _rings_table(current: Sample, config: Config) -> Table:
    table = _table("ring occupancy", "", "now", "max", "capacity")
    block = current.stats
    rings = (
        ("md", L.MD_RING_OCCUPANCY, L.MD_RING_OCCUPANCY_MAX, config.rings.md_capacity),
        ("orders", L.ORDER_RING_OCCUPANCY, L.ORDER_RING_OCCUPANCY_MAX, config.rings.order_capacity),
        ("fills", L.FILL_RING_OCCUPANCY, L.FILL_RING_OCCUPANCY_MAX, config.rings.fill_capacity),
    )
    for name, now_word, max_word, capacity in rings:
        now = int(block[now_word])
        peak = f"{int(block[max_word]):,}"
        table.add_row(
            name, Text(f"{now:,}", style="red" if now >= capacity else ""), peak, f"{capacity:,}"
        )
    return table


def _latency_table(rates: Interval) -> Table:
    last = f"the last {rates.interval_s:.1f} s" if rates.available else "the last interval"
    table = _table(
        f"latency over {last} (since start below)",
        "path",
        "count",
        *("p50", "p90", "p99", "p99.9", "max"),
    )
    for name, offset in LATENCIES:
        recent = rates.histogram(offset)
        if recent is None:
            table.add_row(name, "-", *("-" for _ in PERCENTILE_KEYS))
        else:
            s = summary(recent)
            table.add_row(name, f"{s['count']:,}", *(_ns(s[k]) for k in PERCENTILE_KEYS))
        s = summary(rates.current.stats[offset : offset + HIST_WORDS])
        table.add_row(
            "  since start",
            f"{s['count']:,}",
            *(_ns(s[k]) for k in PERCENTILE_KEYS),
            style="dim",
        )
    return table


def _positions(current: Sample) -> Text:
    # every slot, not just the configured instruments: top may run with another config file
    positions = current.stats[L.POSITIONS : L.POSITIONS + L.MAX_INSTRUMENTS]
    held = np.flatnonzero(positions)
    text = Text("positions (lots): ", style="bold")
    if not held.size:
        text.append("all flat", style="dim")
    for instrument in held:
        text.append(f"#{instrument} {int(positions[instrument]):+,d}  ")
    return text


# ------------------------------------------------------------------------------ terminal


class _Quit(Exception):
    """SIGTERM arrived: leave the loop through the same cleanup as q and Ctrl-C."""


class KeyReader:
    """Single keys from a terminal without Enter or echo; a plain wait when not a terminal.

    Cbreak mode keeps ISIG, so Ctrl-C still raises KeyboardInterrupt. The saved terminal
    attributes are put back on exit, whatever ends the ``with`` block.
    """

    def __init__(self, stream: TextIO):
        self.fd: int | None = None
        try:
            if stream.isatty():
                self.fd = stream.fileno()
        except (AttributeError, ValueError, OSError):  # a closed or fake stream (pytest)
            self.fd = None
        self._saved: list | None = None

    def __enter__(self) -> KeyReader:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None and self.fd is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True as soon as a quit key is pressed."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.fd is None:
                time.sleep(left)
                return False
            readable, _, _ = select.select([self.fd], [], [], left)
            if readable:
                keys = os.read(self.fd, 64)
                if not keys:  # end of input (terminal hung up): nothing more will come
                    self.fd = None
                elif any(key in QUIT_KEYS for key in keys):
                    return True
        return False


@contextlib.contextmanager
def _sigterm_quits() -> Iterator[None]:
    """Turn SIGTERM into _Quit while the view runs (signals can only be set in main)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Quit

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main_top(config: Config, refresh_s: float = 1.0, once: bool = False) -> int:
    """Show the engine named by ``config`` until q, Ctrl-C or SIGTERM; return the exit code.

    With ``once`` print a single frame (rates over two samples ``refresh_s`` apart) and
    return, for scripts and tests. Either way the exit code is 0: an absent engine is shown,
    not an error, since ``top`` is meant to be left open across restarts.
    """
    view = EngineView(config)
    if once:
        first = view.sample()
        time.sleep(refresh_s)
        # piped output is read by people too (logs, CI): do not squeeze it to 80 columns
        console = Console(width=None if sys.stdout.isatty() else 110)
        console.print(render_frame(first, view.sample(), config))
        return EXIT_OK
    console = Console()
    previous: Sample | None = None
    try:
        with (
            _sigterm_quits(),
            KeyReader(sys.stdin) as keys,
            # auto_refresh off: no drawing thread; a frame is drawn once per sample
            Live(console=console, auto_refresh=False, screen=console.is_terminal) as live,
        ):
            next_at = time.monotonic()
            while True:
                current = view.sample()
                live.update(render_frame(previous, current, config), refresh=True)
                previous = current
                # keep to the refresh grid even if drawing took a while; skip missed ticks
                next_at += refresh_s
                now = time.monotonic()
                if next_at < now:
                    next_at = now + refresh_s - (now - next_at) % refresh_s
                if keys.wait(next_at - now):
                    break
    except (KeyboardInterrupt, _Quit):
        pass  # Ctrl-C and SIGTERM are the ordinary ways to close a view, like q
    return EXIT_OK
