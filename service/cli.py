"""``trading-service``: run the pipeline, record market data, benchmark, inspect the config.

User mistakes (a bad config, a bad recording, a segment in use) print one line saying what is
wrong and exit 2 (usage) or 1 (cannot run now), never a traceback: every layer raises a
``contracts.errors.LowlatError`` and ``main`` is the one place that prints it. Outputs are
checked before the work that fills them. Heavy modules (numba kernels) are imported inside the
commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ami.check import check_host, count_cpus, default_profile
from contracts import log_lines
from contracts.constants import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from contracts.documents import finite_or_none
from contracts.errors import LowlatError
from contracts.outputs import check_output
from contracts.profile import cpulist, load_profile, parse_cpulist
from contracts.segments import KILL_SWITCH
from service import __version__
from service.config import OrderBookConfig, check_runtime, load, to_toml

logger = logging.getLogger(__name__)

EPILOG = """\
examples:
  trading-service run --duration 10             simulated feed, embedded default config
  trading-service config > my.toml              the effective config, every key explained
  trading-service run --config my.toml          run until SIGTERM/Ctrl-C, then drain and report
  trading-service run --replay day.lmd --speed 10   an imported day at 10x its own pace
  trading-service run --duration 60 --report run-report/   charts and statistics.txt of the run
  trading-service report run.json --out report/   the same report from run --json (or bench --json)
  trading-service record --out day.lmd --messages 1000000
  trading-service import lobster MSG.csv --orderbook BOOK.csv --out day.lmd --verify
  trading-service book --data day.lmd --levels 10 --csv book.csv
  trading-service train --data day.lmd --horizon 100ms --out model.toml
  trading-service backtest --data day.lmd --latency feed=20us,order=50us --report out/
  trading-service backtest --data 'days/*.lmd' --sweep engine.signal_threshold=0.1,0.2 \
      --sweep latency.order=0,50us,1ms --report sweep/
  trading-service bench --quick --json bench.json
  trading-service bench --transports --json T.json   ring vs UDP vs TCP (and C), loopback and veth
  trading-service exchange --messages 1000000   an exchange: UDP market data, TCP recovery
  trading-service run --config udp.toml         ...and a run whose [feed] source = "udp"
  trading-service kill-switch on                every new order is rejected until 'off'
  trading-service clean --dry-run               segments a crashed run left behind
  trading-service telemetry                     the API: /ready /latest /metrics /docs on :8000
  trading-service top                           live view of the running engine (q quits)
  trading-service check-host --json             does this host match its tuning profile?
  trading-service jitter --cpus 1-3 --duration 10   how often the isolated cores are interrupted
"""


class UserError(LowlatError):
    """A mistake found by the CLI itself; printed as one line."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = code


def _number(kind, what: str, *, low, high=None, low_allowed: bool = True):
    """An argparse type: a finite ``kind`` (int or float) in range, one-line errors."""
    rule = (
        f"from {low} to {high}"
        if high is not None
        else f"{what} {'>=' if low_allowed else '>'} {low}"
    )

    def parse(text: str):
        try:
            value = kind(text)  # int and float both accept 1_000
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        in_range = math.isfinite(value) and (value >= low if low_allowed else value > low)
        if not in_range or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} must be {rule}")
        return value

    return parse


_positive_float = _number(float, "a number of seconds", low=0, low_allowed=False)
_non_negative_float = _number(float, "a number of seconds", low=0)
_positive_int = _number(int, "a whole number", low=0, low_allowed=False)
_port = _number(int, "a port number", low=1, high=65535)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trading-service",
        description="lowlat's trading service: a numba pipeline (feed -> engine -> gateway) over "
        "shared-memory rings, one busy-polling process per configured core.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lowlat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help, description):
        p = sub.add_parser(
            name,
            help=help,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return p

    run = add(
        "run",
        "run the pipeline and print what it measured",
        "Start every stage pinned to its core, warm all kernels, run until --duration "
        "passes, SIGTERM/SIGINT arrives or a replay ends, then drain, print the measured "
        "figures and unlink the shared memory. Exit 0 on a clean stop, 1 if a stage died "
        "(so a service manager restarts it), 2 for a bad config.",
    )
    run.add_argument(
        "--config",
        type=Path,
        help="TOML config (default: the embedded one; see `trading-service config`)",
    )
    run.add_argument(
        "--duration",
        type=_positive_float,
        metavar="S",
        help="stop after S seconds (default: run until signalled)",
    )
    run.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    run.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write the run's report into DIR: latency_histogram.png, "
        "throughput_timeline.png, performance_summary.png, statistics.txt (checked before "
        "the run starts)",
    )
    run.add_argument(
        "--replay",
        type=Path,
        metavar="PATH",
        help='replay this recording (sets [feed] source = "replay", replay_file = PATH)',
    )
    run.add_argument(
        "--speed",
        type=_positive_float,
        metavar="X",
        help="replay at the recording's own pace, X times faster (sets [feed] replay_pace = "
        '"recorded", replay_speed = X); for as fast as possible set [feed] rate = 0',
    )
    run.add_argument(
        "--telemetry",
        action="store_true",
        help="also serve the telemetry API for the length of the run (address from "
        "[telemetry]; on a host it runs as its own service instead)",
    )

    rep = add(
        "report",
        "draw the report of a run --json or bench --json document",
        "Draw the report `run --report` draws, from a document written earlier: "
        "latency_histogram.png, throughput_timeline.png, performance_summary.png (a one-page "
        "dashboard) and statistics.txt, into --out. It takes what `trading-service run "
        "--json` wrote (the same report the run drew), what `trading-service bench --json` "
        "wrote (its end-to-end percentiles per offered rate; its rate sweep as throughput) "
        "and fab bench's bench.json. The files appear in --out only once all four are drawn. "
        "Exit 0, 2 for a document it cannot read or draw (one line).\n\nexamples:\n"
        "  trading-service run --duration 30 --json run.json\n"
        "  trading-service report run.json --out run-report/\n"
        "  trading-service report bench.json --out bench-report/",
    )
    rep.add_argument(
        "document", type=Path, metavar="RUN_OR_BENCH.json", help="a run or bench --json document"
    )
    rep.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory to write the report into"
    )

    cfg = add(
        "config",
        "print the effective configuration as commented TOML",
        "Print every key with its value and meaning: a starting point for your own file.",
    )
    cfg.add_argument("--config", type=Path, help="show this file merged over the defaults")

    rec = add(
        "record",
        "write a market-data recording from the simulator",
        "Generate messages with the simulator configured in [feed] and write them as a "
        'recording that `[feed] source = "replay"` plays back.',
    )
    rec.add_argument("--out", type=Path, required=True, help="recording file to write")
    rec.add_argument(
        "--messages",
        type=_positive_int,
        default=1_000_000,
        help="how many messages (default 1000000)",
    )
    rec.add_argument("--config", type=Path, help="TOML config whose [feed] section to use")

    bench = add(
        "bench",
        "measure rings, kernels and the pipeline side by side",
        "Measure this machine's floor (a cache-line ping-pong), the shared-memory ring "
        "against multiprocessing.Queue and a C++ ring of the same shape, the kernels, "
        "and tick-to-order latency through the whole pipeline at fixed offered rates. "
        "With --transports, the transports instead. Prints a table; --json writes the "
        "figures for scripts."
        "\n\nexamples:\n"
        "  trading-service bench --quick                 about a minute\n"
        "  trading-service bench --json B.json --cpus 2,3\n"
        "  trading-service bench --compare B.json        what changed since that run\n"
        "  sudo trading-service bench --transports --json T.json   (root: the veth route)",
    )
    bench.add_argument("--quick", action="store_true", help="smaller counts: about a minute")
    bench.add_argument(
        "--compare",
        type=Path,
        metavar="OLD.json",
        help="after the run, print each figure's change since OLD.json (an earlier --json) "
        "and flag a regression beyond the spread both runs measured",
    )
    bench.add_argument(
        "--transports",
        action="store_true",
        help="measure the transports instead: one 64-byte message over the ring, UDP and TCP "
        "(loopback, and a veth pair between two network namespaces when run as root), "
        "beside a C reference of each socket round trip",
    )
    bench.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    bench.add_argument(
        "--cpus",
        metavar="A,B",
        help="the two CPUs to measure on (default: the last two this process may use)",
    )

    exch = add(
        "exchange",
        "be the exchange: publish market data over UDP and serve its recovery over TCP",
        "Publish one session of market data as sequenced UDP packets (MoldUDP64-like) to "
        "[exchange] market_data, re-send lost packets on request over TCP at [exchange] "
        "recovery and take orders over TCP at [exchange] orders (OUCH-like, matched against "
        "the published book), until --messages have gone out or SIGTERM/SIGINT; then end the "
        'session and serve for --linger seconds. A run with [feed] source = "udp", '
        '[gateway] exchange = "tcp" and the same [exchange] section trades on it. The '
        "messages are the [feed] simulator's at [feed] rate, or a recording's (--replay).",
    )
    exch.add_argument("--config", type=Path, help="TOML config: its [exchange] and [feed]")
    exch.add_argument(
        "--messages",
        type=_positive_int,
        default=1_000_000,
        help="messages in the session (default 1000000)",
    )
    exch.add_argument("--replay", type=Path, metavar="PATH", help="publish this recording")
    exch.add_argument(
        "--drop-every",
        type=_positive_int,
        metavar="N",
        help="leave out every N-th packet (recovery re-sends it): loss without a network",
    )
    exch.add_argument(
        "--disconnect-every",
        type=_positive_int,
        metavar="N",
        help="close the order-entry connection after every N-th order (the gateway reconnects "
        "and reconciles)",
    )
    exch.add_argument(
        "--linger",
        type=_non_negative_float,
        default=2.0,
        metavar="S",
        help="serve recovery S seconds after the end of the session (default 2)",
    )
    exch.add_argument(
        "--spin", action="store_true", help="busy-poll the schedule (pin it to a free core)"
    )
    exch.add_argument("--json", type=Path, metavar="PATH", help="write what was sent as JSON")

    tel = add(
        "telemetry",
        "serve the telemetry API (health, readiness, JSON figures, Prometheus metrics)",
        "Serve GET / /health /ready /latest /metrics /host and the OpenAPI docs at /docs, "
        "read-only over the stats block of the engine that --config names. It answers whether "
        "or not the engine runs, and follows it across restarts. Runs on the CPUs no stage is "
        "pinned to.",
    )
    tel.add_argument("--config", type=Path, help="config naming the engine (shm_prefix)")
    tel.add_argument("--host", help="listen address (default: [telemetry] host, 127.0.0.1)")
    tel.add_argument("--port", type=_port, help="listen port (default: [telemetry] port, 8000)")

    top = add(
        "top",
        "live terminal view of the running engine",
        "Rates, latency percentiles (recent and since start), ring occupancy, rejects and "
        "stage states, refreshed in place. Quit with q or Ctrl-C.",
    )
    top.add_argument("--config", type=Path, help="config naming the engine (shm_prefix)")
    top.add_argument(
        "--interval", type=_positive_float, default=1.0, metavar="S", help="refresh every S s"
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit (scripts)")

    kill = add(
        "kill-switch",
        "turn the running service's kill switch on or off, or show it",
        "While the kill switch is on the engine rejects every new order (counted as "
        "reason kill_switch); market data keeps flowing and positions stay live.",
    )
    kill.add_argument("action", choices=("on", "off", "status"))
    kill.add_argument("--config", type=Path, help="config naming the instance (shm_prefix)")

    clean = add(
        "clean",
        "remove the shared-memory segments dead runs left behind",
        "List this instance's segments in [service] shm_dir (its prefix, warm-up shadows "
        "included) and remove those whose owner no longer runs. Segments of a running "
        "instance are never removed: they are listed as refused and the exit status is 1. "
        "`run` does the same cleanup when it starts.\n\nexamples:\n"
        "  trading-service clean --dry-run       what would be removed\n"
        "  trading-service clean --config my.toml --json",
    )
    clean.add_argument("--config", type=Path, help="config naming the instance (shm_prefix)")
    clean.add_argument("--dry-run", action="store_true", help="list only; remove nothing")
    clean.add_argument("--json", action="store_true", help="print what was found as JSON")

    chk = add(
        "check-host",
        "check this host's tuning against its profile (read-only)",
        "Read /proc, /sys, /etc and /run and compare them with the tuning profile "
        "(contracts/profile.py, the installed one, or --profile). Kernel: the command line and "
        "what took effect of it (isolated CPUs, nohz_full, rcu_nocbs, nosoftlockup; skew_tick "
        "shows only on the command line), sysctls. CPUs: kernel threads, workqueue masks "
        "(writeback included) and PID 1 kept on the housekeeping CPUs; governor/C-states/SMT "
        "where they apply. Memory: hugepages, THP, THP defrag, khugepaged, swap off, the "
        "engine's memlock limit, the hugetlbfs segment directory. Interrupts: none on isolated "
        "CPUs over --irq-window, no IRQ affinity there, irqbalance running with its ban. NIC: "
        "queue count and coalescing. Time: the clocksource, chrony running, synchronised and on "
        "the Amazon Time Sync Service. lowlat-tune succeeded at this boot, the packages, tuned "
        "off. Network sysctls and block I/O are reported not applicable, with the reason. Run "
        "as root to see every process (the telemetry API serves the root timer's report). "
        "Exit 0 when nothing fails, 1 when something does, 2 for bad input.",
    )
    chk.add_argument(
        "--root", type=Path, default=Path("/"), metavar="DIR", help="read /proc, /sys under DIR"
    )
    chk.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="TOML tuning profile (default: the defaults for this host's vCPUs and platform)",
    )
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.add_argument(
        "--irq-window",
        type=_non_negative_float,
        default=1.0,
        metavar="S",
        help="watch interrupts on isolated CPUs for S seconds (default 1; 0 skips)",
    )

    jit = add(
        "jitter",
        "measure how often, and for how long, cores are taken from a busy loop",
        "Spin a clock-reading loop pinned to each CPU of --cpus at the same time and report "
        "every gap between two reads: p99, p99.9, max, gaps over --threshold-ns per second "
        "and the share of time lost. It keeps those CPUs 100%% busy for --duration.",
    )
    jit.add_argument("--cpus", required=True, metavar="LIST", help='cpulist, e.g. "1-3" or "2"')
    jit.add_argument(
        "--duration", type=_positive_float, required=True, metavar="S", help="seconds per run"
    )
    jit.add_argument(
        "--threshold-ns",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="a gap longer than N ns counts as an interruption (default 1000)",
    )
    jit.add_argument("--json", action="store_true", help="print the figures as JSON")

    imp = add(
        "import",
        "import real market data (LOBSTER) into a recording",
        "Read a LOBSTER message file (and its orderbook file) into a version-2 recording that "
        "keeps the historical times and the order-level events. With --orderbook every row is "
        "checked: the previous row's book plus this message must give this row on every level "
        "both show; a level that enters the depth from beyond it is taken from the row. "
        "Files may be gzip-compressed (.gz). Exit 0, 1 when --verify found mismatches, 2 for "
        "bad input (one line with file:line).\n\nexamples:\n"
        "  trading-service import lobster GOOG_..._message_10.csv --out goog.lmd\n"
        "  trading-service import lobster MSG.csv --orderbook BOOK.csv --out day.lmd --verify",
    )
    imp.add_argument("format", choices=("lobster",), help="the data's format")
    imp.add_argument("messages", type=Path, metavar="MESSAGE.csv", help="LOBSTER message file")
    imp.add_argument(
        "--orderbook", type=Path, metavar="ORDERBOOK.csv", help="LOBSTER orderbook file"
    )
    imp.add_argument("--out", type=Path, required=True, metavar="PATH", help="recording to write")
    imp.add_argument(
        "--verify",
        action="store_true",
        help="exit 1 on any mismatch with the orderbook file (needs --orderbook)",
    )
    imp.add_argument(
        "--tick",
        type=_positive_float,
        default=0.01,
        metavar="USD",
        help="price tick in dollars (default 0.01); prices become whole ticks",
    )
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    _pool_arguments(imp)

    bk = add(
        "book",
        "write the order book after every message of an imported recording",
        "Rebuild the order-level book from a recording's events and write its top --levels "
        "after every message as csv, in LOBSTER's orderbook column order (ask price, ask "
        "size, bid price, bid size per level; a missing level as 9999999999 / -9999999999 "
        "with size 0), prices in LOBSTER units (dollars x 10000).\n\nexample:\n"
        "  trading-service book --data day.lmd --levels 10 --csv book.csv",
    )
    bk.add_argument("--data", type=Path, required=True, metavar="PATH", help="recording")
    bk.add_argument("--levels", type=_positive_int, default=10, metavar="N", help="levels per side")
    bk.add_argument("--csv", type=Path, required=True, metavar="PATH", help="csv to write")
    _pool_arguments(bk)

    bt = add(
        "backtest",
        "replay a recording through the engine's own kernels and account its P&L",
        "Run the live engine's kernels (book, features, model, strategy, risk) over an "
        "imported recording at its historical times: the engine sees the market --latency "
        "feed late, its orders reach the order book rebuilt from the recording order later "
        "and fill against it: each walks the book to its limit price (no market impact); "
        'the rest is cancelled, or with [engine] order_style = "join" waits at the back '
        "of its level's queue for order_ttl_us and fills only once the volume ahead of it "
        "has traded or cancelled. Writes equity.png, pnl_by_hour.png, latency_sensitivity.png (the "
        "same run at other order latencies), summary.md and stats.json into --report."
        "\n\nexamples:\n"
        "  trading-service backtest --data day.lmd --report out/\n"
        "  trading-service backtest --data day.lmd --latency feed=20us,order=50us "
        "--fees taker=0.003 --report out/ --json\n"
        "  trading-service backtest --data day.lmd --config join.toml "
        "--fees taker=0.003,maker=-0.002 --report out/",
    )
    bt.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="PATH",
        help="recording (v2); with --sweep a glob of them, quoted: 'days/*.lmd'",
    )
    bt.add_argument("--config", type=Path, help="engine config (default: the embedded one)")
    bt.add_argument(
        "--latency",
        default="feed=0,order=0",
        metavar="feed=T,order=T",
        help="one-way latencies, e.g. feed=20us,order=50us (ns, us, ms, s; default 0)",
    )
    bt.add_argument(
        "--fees",
        default="taker=0,maker=0",
        metavar="taker=USD,maker=USD",
        help="fees per share in dollars: taken on arrival, and filled while resting (joined "
        "orders; negative is a rebate); default taker=0,maker=0",
    )
    bt.add_argument("--report", type=Path, required=True, metavar="DIR", help="report directory")
    bt.add_argument("--json", action="store_true", help="print stats.json's figures")
    bt.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="run every combination of these values (config section.key, or latency.feed / "
        "latency.order) over every day, in parallel on Dask; repeat for more keys",
    )
    bt.add_argument(
        "--workers", type=_positive_int, default=2, metavar="N", help="local Dask workers (2)"
    )
    bt.add_argument(
        "--scheduler", metavar="tcp://HOST:8786", help="a Dask cluster's scheduler instead"
    )

    tr = add(
        "train",
        "fit the engine's model on a recording's features against the future mid move",
        "Run the engine's own book and feature kernels over a recording, take each feature "
        "row's future mid move over --horizon of recorded time, split the rows in time order "
        "(the last --test-fraction for testing), fit the model (least squares for linear, "
        "IRLS for logistic) and print the out-of-sample metrics. The output loads through "
        "[engine] model_file.\n\nexamples:\n"
        "  trading-service train --data day.lmd --horizon 100ms --out model.toml\n"
        "  trading-service train --data day.lmd --kind linear --out linear.toml --json",
    )
    tr.add_argument("--data", type=Path, required=True, metavar="PATH", help="recording")
    tr.add_argument("--config", type=Path, help="engine config: EWMA alpha, book window")
    tr.add_argument("--horizon", default="100ms", metavar="T", help="prediction horizon (100ms)")
    tr.add_argument("--kind", choices=("logistic", "linear"), default="logistic", help="model kind")
    tr.add_argument(
        "--test-fraction",
        type=_positive_float,
        default=0.3,
        metavar="F",
        help="share of the rows, the latest, kept out of the fit (default 0.3)",
    )
    tr.add_argument("--out", type=Path, required=True, metavar="PATH", help="model file to write")
    tr.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The one handler: a LowlatError (or the OS refusing a file) is one line and its exit
    status; anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LowlatError as exc:
        _one_line(args.command, exc)
        return exc.exit_code
    except OSError as exc:  # the machine refused something (permissions, space, a device)
        where = f"{exc.filename}: " if exc.filename else ""
        _one_line(args.command, f"{where}{exc.strerror or exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _one_line(command: str, message: object) -> None:
    text = " ".join(str(message).split())  # a message never spans lines
    print(f"trading-service {command}: {text}", file=sys.stderr)


REPORT_BYTES = 4 * 2**20  # room a report needs, at least (its four files are well under 1 MiB)


def cmd_run(args) -> int:
    import datetime as dt

    from service.runtime.pipeline import run_pipeline
    from service.telemetry.report import print_run_report, run_figures
    from service.telemetry.timeline import TimelineSampler

    config = _with_replay(load(args.config), args.replay, args.speed)
    if args.json:
        check_output(args.json, "--json")
    if args.report:
        _check_report_dir(args.report, "--report")
    if args.telemetry:
        _check_port(config.telemetry.host, config.telemetry.port)
    log_lines.setup()
    api = None
    sampler = None
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        check_runtime(config)
        if args.telemetry:
            api = start_telemetry_process(config)
        if args.json or args.report:
            sampler = TimelineSampler(config).start()
        result = run_pipeline(config, args.duration)
    finally:
        timeline = sampler.stop() if sampler is not None else []
        if api is not None:
            api.terminate()
            api.join(10)
    figures = run_figures(result, config, timeline, started_at)
    print_run_report(figures)
    if args.json:
        _write_json(args.json, figures)
    if args.report:
        _write_report(json.loads(json.dumps(figures)), args.report, "run")
    for problem in result.problems:
        logger.error("trading-service run: %s", problem)
    return result.exit_code


def _check_report_dir(path: Path, what: str) -> None:
    """Refuse, before any work, a report directory that cannot be written, or a machine
    without matplotlib."""
    from charts.draw import require_matplotlib
    from contracts.outputs import check_output_dir

    check_output_dir(path, what, REPORT_BYTES)
    require_matplotlib()


def _write_report(doc: dict, out: Path, source: str) -> None:
    from service.telemetry.local_report import write_local_report

    written = write_local_report(doc, out, source)
    print(f"report in {out}/: " + ", ".join(p.name for p in written))


def cmd_report(args) -> int:
    from service.telemetry.local_report import load_document, local_report

    doc = load_document(args.document)
    local_report(doc, str(args.document))  # a document it cannot draw: refused before --out
    _check_report_dir(args.out, "--out")
    _write_report(doc, args.out, str(args.document))
    return EXIT_OK


def _with_replay(config, replay: Path | None, speed: float | None):
    """``config`` with run's --replay and --speed applied to its [feed] section."""
    import dataclasses

    feed = config.feed
    if replay is not None:
        feed = dataclasses.replace(feed, source="replay", replay_file=str(replay))
    if speed is not None:
        if feed.source != "replay":
            raise UserError("--speed paces a replay: give --replay PATH or a replay config")
        feed = dataclasses.replace(feed, replay_pace="recorded", replay_speed=speed)
    return dataclasses.replace(config, feed=feed)


def _check_port(host: str, port: int) -> None:
    """Refuse before the run when the telemetry API could not listen on ``host:port``."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(
            f"[telemetry] {host}:{port}: cannot listen there ({exc.strerror}); stop what "
            "uses the port or set [telemetry] port",
            EXIT_FAILED,
        ) from None


def cmd_exchange(args) -> int:
    from service.exchange.venue import run_exchange
    from service.runtime.recording import open_recording

    config = load(args.config)
    if args.json:
        check_output(args.json, "--json")
    replay = open_recording(args.replay).records if args.replay else None
    log_lines.setup()
    try:
        result = run_exchange(
            config,
            args.messages,
            replay=replay,
            drop_every=args.drop_every or 0,
            disconnect_every=args.disconnect_every or 0,
            linger_s=args.linger,
            spin=args.spin,
            log=logger.info,
        )
    except OSError as exc:
        raise UserError(
            f"[exchange] cannot open its sockets ({exc.strerror}): check market_data and "
            "recovery, and that no other exchange uses them",
            EXIT_FAILED,
        ) from None
    figures = result.as_dict()
    print(" ".join(f"{key}={value}" for key, value in figures.items()))
    if args.json:
        _write_json(args.json, figures)
    return EXIT_OK


def cmd_telemetry(args) -> int:
    from service.telemetry.api import serve

    config = load(args.config)
    host = args.host or config.telemetry.host
    port = args.port or config.telemetry.port
    log_lines.setup()
    logger.info("telemetry API for %s on http://%s:%s", config.service.shm_prefix, host, port)
    try:
        serve(config, host, port)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror}", EXIT_FAILED) from None
    return EXIT_OK


def cmd_top(args) -> int:
    from service.telemetry.top import main_top

    return main_top(load(args.config), args.interval, args.once)


def start_telemetry_process(config):
    """The telemetry API in a child process, for `run --telemetry` (and `make run`)."""
    import multiprocessing

    from service.telemetry.api import serve

    t = config.telemetry
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(config, t.host, t.port), name="lowlat-telemetry", daemon=True
    )
    process.start()
    logger.info(
        "live dashboard: open http://%s:%s/ in a browser (API: /ready /latest /history "
        "/metrics, docs at /docs) while the run lasts",
        t.host,
        t.port,
    )
    return process


def cmd_config(args) -> int:
    sys.stdout.write(to_toml(load(args.config)))
    return EXIT_OK


def cmd_record(args) -> int:
    from service.runtime.recording import HEADER_SIZE, RECORD_SIZE, record_simulated

    config = load(args.config)
    check_output(args.out, "--out", HEADER_SIZE + args.messages * RECORD_SIZE)
    try:
        record_simulated(args.out, config.feed, args.messages, progress=sys.stderr.isatty())
    except OSError as exc:  # the disk filled meanwhile: the temporary file is gone already
        raise UserError(f"--out {args.out}: {exc.strerror}", EXIT_FAILED) from None
    print(f"wrote {args.messages} messages for {config.feed.instruments} instruments to {args.out}")
    return EXIT_OK


def cmd_bench(args) -> int:
    from rich.console import Console

    from service.bench.compare import compare, comparison_table, load_document
    from service.bench.report import print_bench_report
    from service.bench.run import parse_cpus, run_bench
    from service.bench.transport_bench import print_transport_report, run_transport_bench

    if args.json:
        check_output(args.json, "--json")
    earlier = load_document(args.compare) if args.compare else None
    cpus = parse_cpus(args.cpus)
    figures: dict
    if args.transports:
        transports = run_transport_bench(quick=args.quick, cpus=cpus)
        print_transport_report(transports)
        figures = dict(transports)
    else:
        bench = run_bench(quick=args.quick, cpus=cpus)
        print_bench_report(bench)
        figures = dict(bench)
    if earlier is not None:
        changes = compare(earlier, figures)
        console = Console(width=None if sys.stdout.isatty() else 120)
        # soft_wrap: a long path stays whole; markup off: a path may hold [brackets]
        console.print(f"compared with {args.compare}", soft_wrap=True, markup=False)
        console.print(comparison_table(changes))
        figures["comparison"] = {"with": str(args.compare), "changes": changes}
    if args.json:
        _write_json(args.json, figures)
    return EXIT_OK


def cmd_kill_switch(args) -> int:
    from service.kernels.control import get_word, set_word
    from service.runtime.segments import attach_control

    config = load(args.config)
    _, control = attach_control(Path(config.service.shm_dir), config.segment_name("control"))
    if args.action != "status":
        set_word(control, KILL_SWITCH, 1 if args.action == "on" else 0)
    state = "on" if get_word(control, KILL_SWITCH) else "off"
    print(f"kill switch of {config.service.shm_prefix}: {state}")
    return EXIT_OK


def cmd_clean(args) -> int:
    from service.runtime.shm import prefix_segments, segment_owner

    config = load(args.config)
    shm_dir = Path(config.service.shm_dir)
    if not shm_dir.is_dir():
        raise UserError(f"[service] shm_dir = {str(shm_dir)!r} is not a directory")
    found = []
    for path in prefix_segments(shm_dir, config.service.shm_prefix):
        owner = segment_owner(path)
        entry: dict[str, object] = {
            "path": str(path),
            "bytes": path.stat().st_size,
            "owner_pid": owner,
        }
        if owner is not None:
            entry["action"] = "refused: in use" if owner else "refused: being created"
        elif args.dry_run:
            entry["action"] = "would remove"
        else:
            path.unlink(missing_ok=True)
            entry["action"] = "removed"
        found.append(entry)
    refused = [e for e in found if e["owner_pid"] is not None]
    if args.json:
        print(json.dumps({"shm_dir": str(shm_dir), "segments": found}, indent=2))
    else:
        for e in found:
            shown = f" (pid {e['owner_pid']})" if e["owner_pid"] else ""
            print(f"{e['action']}{shown}: {e['path']} ({e['bytes']:,} bytes)")
        stale = len(found) - len(refused)
        verb = "stale, would remove" if args.dry_run else "stale, removed"
        print(
            f"{config.service.shm_prefix} in {shm_dir}: {stale} {verb}; {len(refused)} in use, kept"
        )
    return EXIT_FAILED if refused else EXIT_OK


def cmd_check_host(args) -> int:
    if not args.root.is_dir():
        raise UserError(f"--root {args.root}: not a directory")
    profile = default_profile(args.root)
    if args.profile is not None:
        profile = load_profile(args.profile, max(2, count_cpus(args.root)))
    report = check_host(args.root, profile, irq_window_s=args.irq_window)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_host_report(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_host_report(report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    styles = {"pass": "green", "fail": "bold red", "not_applicable": "dim"}
    host = report.host
    title = (
        f"host check: {host['platform']}, {host['vcpus']} vCPUs, "
        f"kernel {host['kernel_release']}, isolated {host['isolated']}"
    )
    table = Table(title=escape(title))
    for column in ("check", "status", "expected", "observed", "detail"):
        table.add_column(column, overflow="fold")
    for c in report.checks:
        style = styles.get(c.status, "")
        shown = "n/a" if c.status == "not_applicable" else c.status
        cells = (escape(c.expected), escape(c.observed), escape(c.detail))
        table.add_row(c.name, f"[{style}]{shown}[/]", *cells)
    console = Console(width=None if sys.stdout.isatty() else 140)  # piped: keep rows whole
    console.print(table)
    console.print(
        f"{report.passed} passed, {report.failed} failed, "
        f"{report.not_applicable} not applicable: " + ("OK" if report.ok else "NOT TUNED")
    )


def cmd_jitter(args) -> int:
    try:
        cpus = parse_cpulist(args.cpus)
    except ValueError:
        raise UserError(f'--cpus {args.cpus!r}: not a cpulist like "1-3,5"') from None
    allowed = os.sched_getaffinity(0)
    if not cpus:
        raise UserError(f"--cpus {args.cpus!r}: names no CPU")
    if set(cpus) - allowed:
        raise UserError(
            f"--cpus {args.cpus}: CPU(s) {cpulist(set(cpus) - allowed)} not available to this "
            f"process (allowed: {cpulist(allowed)})"
        )
    from service.bench.jitter import measure_jitter

    try:
        result = measure_jitter(cpus, args.duration, args.threshold_ns)
    except (RuntimeError, OSError) as exc:
        raise UserError(str(exc), EXIT_FAILED) from None
    clean = finite_or_none(result)
    if args.json:
        doc = {"duration_s": args.duration, "threshold_ns": args.threshold_ns, "cpus": clean}
        print(json.dumps(doc, indent=2, allow_nan=False))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"jitter over {args.duration:g} s, threshold {args.threshold_ns} ns")
    for column in ("cpu", "p99 ns", "p99.9 ns", "max ns", f">{args.threshold_ns} ns /s", "lost %"):
        table.add_column(column, justify="right")

    def ns(v):
        return "-" if v is None else f"{v:,.0f}"

    for cpu, f in clean.items():
        table.add_row(
            cpu,
            ns(f["p99"]),
            ns(f["p999"]),
            ns(f["max"]),
            f"{f['gaps_over_threshold_per_s']:,.1f}",
            f"{f['time_lost_pct']:.4f}",
        )
    Console().print(table)
    return EXIT_OK


def _write_json(path: Path, figures: Mapping[str, object]) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(finite_or_none(figures), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}", EXIT_FAILED) from None


def _pool_arguments(parser) -> None:
    """The order-level book's pool sizes, defaulting to the config's [order_book]."""
    for flag, default, what in (
        ("--max-orders", OrderBookConfig.max_orders, "resting orders"),
        ("--max-levels", OrderBookConfig.max_levels, "price levels a side"),
    ):
        parser.add_argument(
            flag,
            type=_positive_int,
            default=default,
            metavar="N",
            help=f"{what} the order book holds (default {default}); raise it if refused",
        )


def cmd_import(args) -> int:
    from service.research.lobster import import_lobster

    if args.verify and args.orderbook is None:
        raise UserError("--verify needs --orderbook ORDERBOOK.csv: it checks against that file")
    size = args.messages.stat().st_size if args.messages.is_file() else 0
    check_output(args.out, "--out", size)  # about as big as the csv: 48 bytes per ~40
    report = import_lobster(
        args.messages,
        args.out,
        orderbook=args.orderbook,
        tick=args.tick,
        max_orders=args.max_orders,
        max_levels=args.max_levels,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(
            f"imported {report.messages:,} messages ({report.adds:,} adds, {report.cancels:,} "
            f"cancels, {report.deletes:,} deletes, {report.executions:,} executions, "
            f"{report.hidden_executions:,} hidden executions ({report.hidden_off_tick} between "
            f"ticks, priced at the nearest), {report.halts:,} halts; "
            f"{report.unknown_orders:,} of orders never seen) to {args.out}"
        )
        if args.orderbook is not None:
            print(
                f"verified {report.rows_verified} rows, {report.mismatches} mismatches "
                f"({report.levels} levels; {report.resynced_levels:,} levels entered the depth "
                "from beyond it and were taken from the rows)"
            )
            print(
                "a pure replay (the rows used only where it already differs) agrees with "
                f"{report.replay_top_n_agreement:.2%} of rows on all {report.levels} levels, "
                f"{report.replay_top_1_agreement:.2%} on the best level"
            )
            if report.first_mismatch:
                print(f"first mismatch: {report.first_mismatch}")
    if args.verify and report.mismatches:
        return EXIT_FAILED
    return EXIT_OK


def cmd_book(args) -> int:
    import numpy as np

    from service.research.lobster import book_rows

    check_output(args.csv, "--csv", 0)
    rows, _ = book_rows(args.data, args.levels, args.max_orders, args.max_levels)
    tmp = args.csv.with_name(f".{args.csv.name}.tmp")
    try:
        np.savetxt(tmp, rows, fmt="%d", delimiter=",")
        tmp.replace(args.csv)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {args.csv}: {exc.strerror}", EXIT_FAILED) from None
    print(f"wrote {len(rows):,} rows of {args.levels} levels to {args.csv}")
    return EXIT_OK


def _fees(text: str):
    """--fees taker=USD,maker=USD: dollars per share, finite and below $1 either way (a
    negative maker fee is a rebate)."""
    from service.research.backtest import Fees

    parts = _pairs(text, "--fees", ("taker", "maker"))
    values = {}
    for key in ("taker", "maker"):
        fee_text = parts.get(key, "0")
        try:
            value = float(fee_text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not -1 < value < 1:
            raise UserError(
                f"--fees {key}={fee_text}: a dollar amount per share below $1, e.g. 0.003 "
                "(a negative maker fee is a rebate)"
            )
        values[key] = value
    return Fees(**values)


def _backtest_sweep(args, config) -> int:
    import glob

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from contracts.outputs import check_output_dir
    from service.research.sweep import apply, grid, parse_sweep, run_sweep, write_heatmap
    from service.runtime.recording import open_recording

    dims = parse_sweep(args.sweep)
    days = sorted(Path(p) for p in glob.glob(str(args.data)))
    if not days:
        raise UserError(f"--data {args.data}: matches no file")
    for day in days:
        if open_recording(day).events is None:
            raise UserError(f"--data {day}: a version-1 recording; the sweep needs imported days")
    fees = _fees(args.fees)
    tasks = grid(dims, days)
    for _, combo in tasks[: len(tasks) // len(days)]:
        apply(config, combo)  # every value checked here, before a worker sees it
    check_output_dir(args.report, "--report", 1 << 20)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("backtests", total=len(tasks))
        rows, wall = run_sweep(
            tasks,
            str(args.config) if args.config else None,
            fees,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=lambda n: bar.advance(task, n),
        )
    args.report.mkdir(parents=True, exist_ok=True)
    tmp = args.report / ".sweep.json.tmp"
    tmp.write_text(json.dumps({"wall_s": wall, "rows": rows}, indent=2) + "\n")
    tmp.replace(args.report / "sweep.json")
    write_heatmap(rows, dims, args.report / "sweep.png")
    if args.json:
        print(json.dumps({"wall_s": round(wall, 3), "rows": rows}, indent=2))
        return EXIT_OK
    where = args.scheduler or f"{args.workers} local workers"
    table = Table(title=f"{len(tasks)} backtests in {wall:.1f} s on {where}")
    for column in ("day", *dims, "pnl", "max_drawdown", "orders", "fill_ratio"):
        table.add_column(column, justify="left" if column == "day" else "right")
    for row in rows:
        table.add_row(
            Path(row["day"]).name,
            *(row[k] for k in dims),
            f"{row['pnl']:,.2f}",
            f"{row['max_drawdown']:,.2f}",
            f"{row['orders']:,}",
            f"{row['fill_ratio']:.1%}",
        )
    Console().print(table)
    print(f"wrote {args.report / 'sweep.json'} and {args.report / 'sweep.png'}")
    return EXIT_OK


SENSITIVITY_NS = (0, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000, 20_000_000)


def _pairs(text: str, option: str, keys: tuple[str, ...]) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}, only ``keys``; UserError otherwise."""
    out = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in keys or key in out:
            raise UserError(
                f"{option} {text!r}: write {','.join(f'{k}=VALUE' for k in keys)}, each once"
            )
        out[key] = value.strip()
    return out


def cmd_backtest(args) -> int:
    from contracts.outputs import check_output_dir
    from service.research.backtest import Latency, parse_duration_ns, run_backtest
    from service.research.report import write_report
    from service.runtime.recording import open_recording

    config = load(args.config)
    if args.sweep:
        return _backtest_sweep(args, config)
    latency_parts = _pairs(args.latency, "--latency", ("feed", "order"))
    try:
        latency = Latency(
            *(
                parse_duration_ns(latency_parts.get(k, "0"), f"--latency {k}")
                for k in ("feed", "order")
            )
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    fees = _fees(args.fees)
    check_output_dir(args.report, "--report", 1 << 20)
    recording = open_recording(args.data)
    if recording.events is None:
        raise UserError(
            f"--data {args.data}: a version-1 (L2) recording has no order events to fill "
            "against; import one (`trading-service import lobster ...`)"
        )
    result = run_backtest(recording, config, latency, fees=fees)
    sensitivity = []
    for order_ns in sorted({*SENSITIVITY_NS, latency.order_ns}):
        other = run_backtest(recording, config, Latency(latency.feed_ns, order_ns), fees=fees)
        sensitivity.append((order_ns, other.stats["pnl"]))
    write_report(result, sensitivity, args.report, f"Backtest of {args.data.name}")
    s = result.stats
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(
            f"P&L ${s['pnl']:,.2f} after ${s['fees']:,.2f} fees, max drawdown "
            f"${s['max_drawdown']:,.2f}, {s['orders']:,} orders, {s['trades']:,} fills "
            f"(fill ratio {s['fill_ratio']:.1%}), {s['events']:,} events at "
            f"{s['events_per_s'] or 0:,.0f}/s; report in {args.report}/"
        )
    return EXIT_OK


def cmd_train(args) -> int:
    from service.research.backtest import parse_duration_ns
    from service.research.train import (
        TrainError,
        feature_rows,
        fit,
        future_moves,
        model_toml,
        write_model,
    )
    from service.runtime.recording import open_recording

    config = load(args.config)
    try:
        horizon = parse_duration_ns(args.horizon, "--horizon")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if horizon <= 0 or not 0 < args.test_fraction < 1:
        raise UserError("--horizon must be > 0 and --test-fraction between 0 and 1")
    check_output(args.out, "--out", 4096)
    recording = open_recording(args.data)
    if recording.version < 2:
        raise UserError(
            f"--data {args.data}: a version-1 recording has no recorded times to measure a "
            "horizon in; import one (`trading-service import lobster ...`)"
        )
    features, meta = feature_rows(recording, config)
    try:
        result = fit(features, future_moves(meta, horizon), args.kind, args.test_fraction)
    except TrainError as exc:
        raise UserError(f"--data {args.data}: {exc}") from None
    write_model(args.out, model_toml(result, args.data.name, horizon))
    if args.json:
        print(json.dumps({"kind": result.kind, "bias": result.bias, **result.metrics}, indent=2))
    else:
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v:,}"
            for k, v in result.metrics.items()
        )
        print(f"{result.kind} model over {args.horizon}: {shown}; wrote {args.out}")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "report": cmd_report,
    "telemetry": cmd_telemetry,
    "top": cmd_top,
    "config": cmd_config,
    "record": cmd_record,
    "bench": cmd_bench,
    "exchange": cmd_exchange,
    "kill-switch": cmd_kill_switch,
    "clean": cmd_clean,
    "check-host": cmd_check_host,
    "jitter": cmd_jitter,
    "import": cmd_import,
    "book": cmd_book,
    "backtest": cmd_backtest,
    "train": cmd_train,
}

if __name__ == "__main__":
    sys.exit(main())
