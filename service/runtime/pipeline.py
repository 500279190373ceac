"""Process glue: create the segments, start one pinned process per core, supervise, drain.

``run_pipeline`` is what ``trading-service run`` does:

1. create the control block, the stats block and the three rings under the configured prefix
   (replacing segments a crashed run left behind; refusing ones a live run owns);
2. start one process per core in ``config.process_groups()``; each pins itself, attaches,
   warms every kernel on a private shadow copy of the segments with the production types
   (so the real run never compiles), says ``warm`` and waits for ``GO``;
3. once all are warm, set ``GO``; then wait for the duration, SIGTERM/SIGINT, the end of a
   replay or of the exchange's session (``source = "udp"``), or a stage dying;
4. set ``STOP``, let the stages drain front to back, print what was measured, unlink
   everything, and exit 0; if a stage died or had to be killed, exit 1 so a service manager
   restarts the service.

While the pipeline runs, the supervisor is on the CPUs no stage is pinned to
(``housekeeping_cpus``), and so is every process it starts until it pins itself (the stages,
multiprocessing's resource tracker). Its unit allows the housekeeping and the isolated CPUs, and
``isolcpus=domain`` takes the isolated ones out of load balancing: a supervisor left where it
happens to run could sit on a stage's core and wake there every 250 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts import segments as C
from contracts import stats_layout as L
from contracts.constants import EXIT_FAILED, EXIT_OK
from contracts.profile import cpulist
from contracts.stages import (
    ALL_STAGES,
    S_FAILED,
    S_RUNNING,
    S_STOPPED,
    S_WARM,
    S_WARMING,
    STAGE_BITS,
    STAGES,
)
from service.config import Config, housekeeping_cpus
from service.kernels import stages as S
from service.kernels.control import set_word, wait_for_go
from service.kernels.seqlock import set_state
from service.kernels.tcp_link import link_close
from service.runtime.model import load_model
from service.runtime.network import open_market_data_socket
from service.runtime.recording import RecordingError, open_recording
from service.runtime.sandbox import deny_network, needs_network
from service.runtime.segments import attach_segments, create_segments, prepare_shm_dir
from service.runtime.shm import remove_stale
from service.runtime.state import (
    new_engine_state,
    new_feed_state,
    new_gateway_state,
    new_order_entry_state,
    new_udp_feed_state,
    pre_touch,
)
from service.runtime.stats import snapshot

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ stage process


def _die_with_parent() -> None:
    """Ask the kernel to kill this process if the supervisor dies (no orphaned spinners)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stage_states(config: Config, replay, start_ns: float = 0.0):
    n_instruments = _instrument_count(config, replay)
    return (
        new_feed_state(config, None if replay is None else replay.records, start_ns),
        new_engine_state(config, n_instruments),
        new_gateway_state(config),
    )


def _instrument_count(config: Config, replay) -> int:
    return replay.n_instruments if replay is not None else config.feed.instruments


def open_replay(config: Config):
    """The recording to replay (validated), or None for the simulator."""
    if config.feed.source != "replay":
        return None
    recording = open_recording(config.feed.replay_file)
    if config.feed.replay_pace == "recorded" and recording.events is None:
        raise RecordingError(
            f'{recording.path}: [feed] replay_pace = "recorded" needs the times of a version-2 '
            "recording (`trading-service import`); this version-1 recording has none: use "
            '"rate"'
        )
    if recording.n_instruments > L.MAX_INSTRUMENTS:
        raise RecordingError(
            f"{recording.path}: {recording.n_instruments} instruments; the engine takes at "
            f"most {L.MAX_INSTRUMENTS}"
        )
    return recording


def stage_process(config: Config, core: int, stage_names: tuple[str, ...]) -> None:
    """Entry point of one pinned process running ``stage_names`` fused on ``core``."""
    # the supervisor coordinates shutdown: a terminal's Ctrl-C or systemd's SIGTERM to the
    # whole group must not kill a stage mid-drain
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    os.sched_setaffinity(0, {core})
    if not needs_network(config, stage_names):
        # before any stage runs: the engine's own process has no network even when its unit
        # has the exchange's (the feed's and the gateway's processes)
        deny_network()
    mask = sum(STAGE_BITS[STAGES.index(name)] for name in stage_names)
    starts = [L.SECTION_START[STAGES.index(name)] for name in stage_names]
    live = attach_segments(config)
    local = np.zeros(L.STATS_WORDS, dtype=np.int64)
    for start in starts:
        local[start + L.PID] = os.getpid()
        set_state(live.stats, local, start, S_WARMING)
    try:
        replay = open_replay(config)
        interval_ns = config.service.stats_interval_us * 1000
        rings = S.Rings(live.rings["md"], live.rings["orders"], live.rings["fills"])
        _warm_up(config, replay, interval_ns)
        feed, engine, gateway = _stage_states(config, replay)
        market_data = None
        if config.feed.source == "udp" and "feed" in stage_names:
            # opened now, after the warm-up: the datagrams that arrive from here on wait in its
            # buffer; the handler asks recovery for any the buffer could not keep
            market_data = open_market_data_socket(config)
            feed = feed._replace(net=new_udp_feed_state(config, market_data.fileno()))
        if config.gateway.exchange == "tcp" and "gateway" in stage_names:
            gateway = gateway._replace(net=new_order_entry_state(config, live=True))
        pre_touch((feed, engine, gateway, local))  # no page fault once the clock runs
        for start in starts:
            set_state(live.stats, local, start, S_WARM)
        # spin on our own core: every stage sees GO within a cache-line transfer of the others
        if not wait_for_go(live.control):
            return  # stopped before it started
        # the feed's schedule starts now
        feed.fvars[S.F_NEXT_NS] = feed.fvars[S.F_START_NS] = float(time.monotonic_ns())
        for start in starts:
            set_state(live.stats, local, start, S_RUNNING)
        S.run_loop(
            mask, rings, feed, engine, gateway, live.control, live.stats, local, interval_ns, -1
        )
        for start in starts:
            set_state(live.stats, local, start, S_STOPPED)
        if market_data is not None:
            link_close(feed.net.link)
            market_data.close()
        link_close(gateway.net.link)
    except BaseException:
        for start in starts:
            set_state(live.stats, local, start, S_FAILED)
        raise


def _warm_up(config: Config, replay, interval_ns: int) -> None:
    """Compile (or load from the cache) every kernel with the production types, then drain.

    The shadow segments are made by the same code as the live ones, so the argument types
    are identical and the live ``run_loop`` call finds its compiled code.
    """
    shadow = create_segments(config, f"{config.service.shm_prefix}.warmup-{os.getpid()}")
    try:
        rings = S.Rings(shadow.rings["md"], shadow.rings["orders"], shadow.rings["fills"])
        feed, engine, gateway = _stage_states(config, replay)
        local = np.zeros(L.STATS_WORDS, dtype=np.int64)
        # every stage of the pipeline runs here, whatever this process will run: the fused
        # loop needs the others' output to exercise its own path
        state = (rings, feed, engine, gateway, shadow.control, shadow.stats, local, interval_ns)
        S.run_loop(ALL_STAGES, *state, 20_000)
        set_word(shadow.control, C.STOP, 1)
        S.run_loop(ALL_STAGES, *state, 5_000_000)  # and the drain path, to its own end
    finally:
        shadow.unlink()


# ------------------------------------------------------------------------------ supervisor


@dataclass
class RunResult:
    exit_code: int
    stats: np.ndarray
    elapsed_s: float
    problems: list[str]
    n_instruments: int


class _Signals:
    """Remembers SIGTERM/SIGINT instead of dying, so the pipeline can drain."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def _stage_states_of(stats: np.ndarray) -> list[int]:
    return [int(stats[start + L.STATE]) for start in L.SECTION_START]


@dataclass(frozen=True)
class StageProcess:
    """One pinned process and the stages fused into it."""

    process: multiprocessing.process.BaseProcess
    stages: tuple[str, ...]
    core: int

    @property
    def label(self) -> str:
        return "+".join(self.stages)


def run_pipeline(
    config: Config,
    duration_s: float | None,
    log: Callable[[str], None] = logger.info,
    stop: threading.Event | None = None,
) -> RunResult:
    """Run the service until ``duration_s`` passes, a signal arrives, the replay ends, or
    ``stop`` is set (for callers that run something beside it, such as the benchmark)."""
    with _off_stage_cores(config, log):
        return _supervise(config, duration_s, log, stop)


def _threads() -> list[int]:
    """This process's thread ids: an affinity is per thread, and a caller may have started
    some (the benchmark's scraper) before the pipeline."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [threading.get_native_id()]


@contextlib.contextmanager
def _off_stage_cores(config: Config, log: Callable[[str], None]):
    """Every thread of this process on the CPUs no stage uses while the pipeline runs, and back
    on its own CPUs afterwards, for callers that go on (the benchmark runs it several times)."""
    cpus = housekeeping_cpus(config)
    if cpus & set(config.cores.values()):
        log(f"no CPU free of stages for the supervisor: it shares theirs (cpu{cpulist(cpus)})")
    before = {}
    for tid in _threads():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    try:
        yield
    finally:
        for tid in set(_threads()) & set(before):  # never a thread id reused elsewhere since
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, before[tid])


def _supervise(
    config: Config,
    duration_s: float | None,
    log: Callable[[str], None],
    stop: threading.Event | None,
) -> RunResult:
    replay = open_replay(config)  # fail on a bad recording or model before anything starts
    if config.feed.source == "udp":
        open_market_data_socket(config).close()  # and on an address this host cannot bind
    if config.engine.model_file:
        load_model(config.engine.model_file)
    n_instruments = _instrument_count(config, replay)
    # signals are ours from before the first segment exists: a SIGTERM at any moment from here
    # ends in the cleanup below, never in segments left behind
    with _Signals() as signals:
        for path, _ in prepare_shm_dir(config, shadows=len(config.process_groups())):
            log(f"removed stale segment {path} left by a run that no longer exists")
        segments = create_segments(config)
        processes: list[StageProcess] = []
        problems: list[str] = []
        started = time.monotonic()
        warm = False
        try:
            snapshot(segments.stats)  # compiled (or loaded) now, not on the way out after a death
            if not signals.received:
                processes = _start_stages(config)
                groups = ", ".join(f"{p.label} on cpu{p.core}" for p in processes)
                here = cpulist(os.sched_getaffinity(0))
                log(f"starting {groups}; supervisor on cpu{here}; warming up kernels")
                warm = _wait_warm(processes, segments.stats, config, signals, problems)
            if warm:
                set_word(segments.control, C.GO, 1)
                started = time.monotonic()
                log("ready: all stages running")
                _wait_running(processes, duration_s, signals, problems, stop)
            elapsed = time.monotonic() - started
            if signals.received:
                what = "draining" if warm else "stopping the warm-up"
                log(f"received {signal.Signals(signals.received).name}: {what}")
            set_word(segments.control, C.STOP, 1)
            if not warm:  # still compiling: no message has moved, nothing to drain
                _stop_now(processes)
            elif not problems:  # a dead stage drains nothing: the others would wait for it
                _drain(processes, config.service.drain_timeout_s, problems)
            stats = snapshot(segments.stats)
        finally:
            _stop_now(processes)
            segments.unlink()
            # what a stage killed mid-warm-up could not remove: its shadow segments
            remove_stale(Path(config.service.shm_dir), config.service.shm_prefix)
    return RunResult(EXIT_FAILED if problems else EXIT_OK, stats, elapsed, problems, n_instruments)


def _start_stages(config: Config) -> list[StageProcess]:
    ctx = multiprocessing.get_context("spawn")
    processes = []
    for core, stage_names in config.process_groups():
        process = ctx.Process(
            target=stage_process,
            args=(config, core, stage_names),
            name=f"lowlat-{'+'.join(stage_names)}",
            daemon=False,
        )
        process.start()
        processes.append(StageProcess(process, stage_names, core))
    return processes


def _wait_warm(
    processes: list[StageProcess],
    stats: np.ndarray,
    config: Config,
    signals: _Signals,
    problems: list[str],
) -> bool:
    """Until every stage is warm: True; False when a stage died, a signal came or time ran out."""
    deadline = time.monotonic() + config.service.ready_timeout_s
    while not all(s == S_WARM for s in _stage_states_of(stats)):
        _check_alive(processes, problems)
        if problems or signals.received:
            return False
        if time.monotonic() > deadline:
            problems.append(f"stages not warm after {config.service.ready_timeout_s} s")
            return False
        time.sleep(0.01)
    return True


def _wait_running(
    processes: list[StageProcess],
    duration_s: float | None,
    signals: _Signals,
    problems: list[str],
    stop: threading.Event | None,
) -> None:
    """Until the duration ends, a signal arrives, ``stop`` is set or a stage ends."""
    end = time.monotonic() + duration_s if duration_s is not None else None
    sentinels = [p.process.sentinel for p in processes]
    while not signals.received:
        # sleep until a stage exits, a signal arrives or the duration ends: a supervisor that
        # wakes often steals time from the stages' cores
        timeout = 0.25 if end is None else max(0.0, min(0.25, end - time.monotonic()))
        multiprocessing.connection.wait(sentinels, timeout)
        _check_alive(processes, problems, allow_clean_exit=True)
        if problems or all(not p.process.is_alive() for p in processes):
            return
        if end is not None and time.monotonic() >= end:
            return
        if stop is not None and stop.is_set():
            return


def _check_alive(
    processes: list[StageProcess], problems: list[str], allow_clean_exit: bool = False
) -> None:
    for p in processes:
        code = p.process.exitcode
        if code is None or (code == 0 and allow_clean_exit):
            continue
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        message = f"stage process {p.label} (cpu{p.core}, pid {p.process.pid}) ended with {what}"
        if message not in problems:
            problems.append(message)


def _stop_now(processes: list[StageProcess]) -> None:
    for p in processes:
        if p.process.is_alive():
            p.process.kill()
    for p in processes:
        p.process.join()


def _drain(processes: list[StageProcess], timeout_s: float, problems: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    for p in processes:
        p.process.join(max(0.0, deadline - time.monotonic()))
        if p.process.is_alive():
            problems.append(f"stage {p.label} did not drain within {timeout_s} s: killed")
            p.process.kill()
            p.process.join()
    _check_alive(processes, problems, allow_clean_exit=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `trading-service run`")
