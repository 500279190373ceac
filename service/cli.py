"""``trading-service``: run the pipeline, record market data, benchmark, inspect the config.

User mistakes (a bad config, a bad recording, a segment in use) print one line saying what is
wrong and exit 2 (usage) or 1 (cannot run now), never a traceback. Heavy modules (numba
kernels) are imported inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from service import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
examples:
  trading-service run --duration 10             simulated feed, embedded default config
  trading-service config > my.toml              the effective config, every key explained
  trading-service run --config my.toml          run until SIGTERM/Ctrl-C, then drain and report
  trading-service record --out day.lmd --messages 1000000
  trading-service bench --quick --json bench.json
  trading-service kill-switch on                every new order is rejected until 'off'
"""


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds > 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 1 to 65535")
    return value


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
        "--telemetry",
        action="store_true",
        help="also serve the telemetry API for the length of the run (address from "
        "[telemetry]; on a host it runs as its own service instead)",
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
        "Prints a table; --json writes the figures for scripts.",
    )
    bench.add_argument("--quick", action="store_true", help="smaller counts: about a minute")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    bench.add_argument(
        "--cpus",
        metavar="A,B",
        help="the two CPUs to measure on (default: the last two this process may use)",
    )

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"trading-service {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _load_config(path: Path | None):
    from service.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def cmd_run(args) -> int:
    from service.config import ConfigError, check_runtime
    from service.pipeline import run_pipeline
    from service.recording import RecordingError
    from service.report import print_run_report, run_figures
    from service.shm import SegmentError
    from service.signals import ModelError

    config = _load_config(args.config)
    api = None
    try:
        check_runtime(config)
        if args.telemetry:
            api = start_telemetry_process(config)
        result = run_pipeline(config, args.duration, log=lambda m: print(m, file=sys.stderr))
    except (ConfigError, RecordingError, ModelError) as exc:
        raise UserError(str(exc)) from None
    except SegmentError as exc:
        raise UserError(str(exc), EXIT_FAILED) from None
    finally:
        if api is not None:
            api.terminate()
            api.join(10)
    figures = run_figures(result, config)
    print_run_report(figures)
    if args.json:
        _write_json(args.json, figures)
    for problem in result.problems:
        print(f"trading-service run: {problem}", file=sys.stderr)
    return result.exit_code


def cmd_telemetry(args) -> int:
    from service.telemetry import serve

    config = _load_config(args.config)
    host = args.host or config.telemetry.host
    port = args.port or config.telemetry.port
    print(f"telemetry API for {config.service.shm_prefix} on http://{host}:{port}", file=sys.stderr)
    try:
        serve(config, host, port)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror}", EXIT_FAILED) from None
    return EXIT_OK


def cmd_top(args) -> int:
    from service.top import main_top

    return main_top(_load_config(args.config), args.interval, args.once)


def start_telemetry_process(config):
    """The telemetry API in a child process, for `run --telemetry` (and `make run`)."""
    import multiprocessing

    from service.telemetry import serve

    t = config.telemetry
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(config, t.host, t.port), name="lowlat-telemetry", daemon=True
    )
    process.start()
    print(
        f"telemetry API on http://{t.host}:{t.port} (/, /ready, /latest, /metrics, /docs)",
        file=sys.stderr,
    )
    return process


def cmd_config(args) -> int:
    from service.config import to_toml

    sys.stdout.write(to_toml(_load_config(args.config)))
    return EXIT_OK


def cmd_record(args) -> int:
    from service.recording import RecordingError, record_simulated
    from service.stages import sim_params

    config = _load_config(args.config)
    try:
        record_simulated(args.out, sim_params(config), args.messages, progress=sys.stderr.isatty())
    except (RecordingError, OSError) as exc:
        raise UserError(f"{args.out}: {exc}", EXIT_FAILED) from None
    print(f"wrote {args.messages} messages for {config.feed.instruments} instruments to {args.out}")
    return EXIT_OK


def cmd_bench(args) -> int:
    from service.bench import BenchError, parse_cpus, print_bench_report, run_bench

    try:
        cpus = parse_cpus(args.cpus)
        figures = run_bench(quick=args.quick, cpus=cpus)
    except BenchError as exc:
        raise UserError(str(exc), EXIT_FAILED) from None
    print_bench_report(figures)
    if args.json:
        _write_json(args.json, figures)
    return EXIT_OK


def cmd_kill_switch(args) -> int:
    from service import control as C
    from service.shm import SegmentError

    config = _load_config(args.config)
    try:
        _, control = C.attach_control(Path(config.service.shm_dir), config.segment_name("control"))
    except SegmentError as exc:
        raise UserError(str(exc), EXIT_FAILED) from None
    if args.action != "status":
        C.set_word(control, C.KILL_SWITCH, 1 if args.action == "on" else 0)
    state = "on" if C.get_word(control, C.KILL_SWITCH) else "off"
    print(f"kill switch of {config.service.shm_prefix}: {state}")
    return EXIT_OK


def _write_json(path: Path, figures: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(figures, indent=2, allow_nan=False, default=_jsonable) + "\n")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}", EXIT_FAILED) from None


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value)}")


COMMANDS = {
    "run": cmd_run,
    "telemetry": cmd_telemetry,
    "top": cmd_top,
    "config": cmd_config,
    "record": cmd_record,
    "bench": cmd_bench,
    "kill-switch": cmd_kill_switch,
}

if __name__ == "__main__":
    sys.exit(main())
