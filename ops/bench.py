"""``fab bench``: measure a live host, pull the figures back, draw the report, judge the SLOs.

On each host, in this order:

1. ``trading-service check-host --json`` against the installed profile. A host whose tuning
   fails is announced in a red banner and the bench carries on: the figures are still worth
   having, and the summary says they come from an untuned host.
2. The production engine (``lowlat-engine.service``) busy-polls the same isolated cores the
   bench needs, and two spinners on one core take turns instead of polling: the figures would
   be meaningless and production would suffer. So when the unit is active, the bench STOPS it
   (``systemctl stop``, privileged), says so in red, and STARTS it again when the bench ends,
   however it ends (failure, Ctrl-C): a ``finally`` clause. The telemetry unit keeps running
   and reports the engine as not ready meanwhile: expect the readiness alarm on that host.
   Run benches on a host out of rotation.
3. The jitter probe (``trading-service jitter --json``) on the profile's isolated CPUs, for
   ``min(duration, 10)`` seconds.
4. For each offered rate: ``trading-service run --duration D --json --telemetry`` with the
   host's own config (``/etc/lowlat/service.toml``: its [cores], shm_dir, rings, [slo]) but the
   rate replaced, its own segment prefix (``<prefix>-bench``) and its own telemetry port, so
   nothing of production's is touched. A small driver (``ops/bench_driver.py``, uploaded) runs
   it and samples the run's ``/latest`` every second: the throughput timeline.
   Commands that touch the service's segments run as the profile's ``service_user`` (``sudo
   -u``) when ``lowlat.sudo`` is on, with the unit's numba cache when it exists.
5. Pull the JSON back, render the report (``ops.report``) under ``--out``, store a compact
   result at ``<install_prefix>/bench/last.json`` on the host (``fab status`` shows it), and
   with ``--publish`` send the figures to CloudWatch (``ops.publish``).

The host result fails (exit 1) when any offered rate misses an SLO of the host's [slo], or a
run fails.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
import shlex
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ami.units import ENGINE_UNIT, SERVICE_CONFIG
from contracts.documents import toml_value
from contracts.profile import INSTALLED_PROFILE, TuningProfile, cpulist
from contracts.release_layout import Layout
from contracts.slo import default_objectives_us
from ops import ui
from ops.bench_doc import (
    EMULATED_WARNING,
    EMULATORS,
    BenchDoc,
    Check,
    CheckHostDoc,
    EngineDoc,
    JitterDoc,
    LastResult,
    LatencyFigures,
    LatestSample,
    ObjectiveKey,
    RunFigures,
    RunResult,
    SparseHistogram,
    TimelinePoint,
    Verdict,
)
from ops.hosts import Connection, HostResult, OpsError, Settings, check_writable_dir
from ops.remote import installed_profile

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from invoke.runners import Promise, Result

DEFAULT_OUT = "bench-results"  # the reports' directory without --out, under the working one
REPORT_BYTES = 16 * 2**20  # room a report needs, at least (its files are well under 1 MiB)
MAX_RATE = 100_000_000  # [feed] rate's own upper bound (service/config.py)
MAX_DURATION_S = 24 * 3600
JITTER_MAX_S = 10.0
# Budget for one run's start-up (imports, kernel warm-up from the numba cache) and drain, for
# the progress bar only: the bar is an estimate, never a timeout.
RUN_OVERHEAD_S = 25.0
JITTER_OVERHEAD_S = 10.0
DRIVER = Path(__file__).with_name("bench_driver.py")
RATE_FORMS = "messages per second like 100k, 1m, 2.5m or 250000, comma-separated"
_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)([km]?)", re.IGNORECASE)
QuantileKey = Literal["p50", "p90", "p99", "p999", "p9999"]
QUANTILES: tuple[tuple[QuantileKey, float], ...] = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
)
OBJECTIVES: tuple[tuple[ObjectiveKey, str], ...] = (
    ("p50", "tick_to_order_p50_us"),
    ("p99", "tick_to_order_p99_us"),
    ("p999", "tick_to_order_p999_us"),
)

# The host's effective service config, as `trading-service config` prints it: TOML sections of
# booleans, numbers and strings (tomllib's own type for a value is Any).
Config = dict[str, dict[str, Any]]
Advance = Callable[[float], None]  # moves a progress bar on by so many units


def parse_rate(text: str) -> int:
    """ "100k" -> 100000, "2.5m" -> 2500000, "250000" -> 250000; ValueError otherwise."""
    match = _RATE_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(text)
    number, suffix = match.groups()
    value = float(number) * {"": 1, "k": 1e3, "m": 1e6}[suffix.lower()]
    if value != int(value) or not 0 < value <= MAX_RATE:
        raise ValueError(text)
    return int(value)


def rate_label(rate: int) -> str:
    """The short name of a rate, as the report and the OfferedRate dimension show it."""
    if rate >= 1_000_000 and rate % 10_000 == 0:
        return f"{rate / 1e6:g}m"
    if rate >= 1000 and rate % 1000 == 0:
        return f"{rate // 1000}k"
    return str(rate)


def _parse_rates(rates: str) -> tuple[int, ...]:
    parsed: list[int] = []
    items = [item.strip() for item in str(rates).split(",")]
    if not any(items):
        raise OpsError(f"--rates {rates!r}: no rate given; use {RATE_FORMS}")
    for item in items:
        try:
            rate = parse_rate(item)
        except ValueError:
            raise OpsError(
                f"--rates: {item!r} is not an offered rate; use {RATE_FORMS} "
                f"(each > 0 and <= {rate_label(MAX_RATE)})"
            ) from None
        if rate not in parsed:
            parsed.append(rate)
    return tuple(parsed)


@dataclass(frozen=True)
class BenchOptions:
    duration_s: float
    rates: tuple[int, ...]
    out: str | None
    publish: bool

    @classmethod
    def parse(
        cls, duration: str | float, rates: str, out: str | None, publish: bool
    ) -> BenchOptions:
        """Check the task's arguments before any host is contacted, the report's directory
        included (the engine is stopped for the bench: finding it unwritable afterwards would
        waste the bench); an OpsError, one line, if not."""
        try:
            duration_s = float(duration)
        except (TypeError, ValueError):
            raise OpsError(f"--duration {duration!r}: not a number of seconds") from None
        if not math.isfinite(duration_s) or not 0 < duration_s <= MAX_DURATION_S:
            raise OpsError(f"--duration {duration!r}: use seconds > 0 and <= {MAX_DURATION_S}")
        parsed = _parse_rates(rates)
        if out is not None and not str(out).strip():
            raise OpsError("--out '': give a directory")
        where = "--out" if out else "the report directory"
        check_writable_dir(where, out or DEFAULT_OUT, REPORT_BYTES)
        if publish:
            from ops.publish import preflight

            preflight()
        return cls(duration_s, parsed, out, bool(publish))

    @property
    def jitter_s(self) -> float:
        return min(self.duration_s, JITTER_MAX_S)


# ------------------------------------------------------------------------------ figures


def hist_array(sparse: SparseHistogram) -> npt.NDArray[np.int64]:
    """The dense bucket array of a sparse histogram
    (``service.telemetry.report.sparse_histogram``)."""
    import numpy as np

    from contracts.buckets import HIST_MAX, HIST_SUM, HIST_WORDS

    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    for index, _low, _high, count in sparse["buckets"]:
        hist[index] = count
    hist[HIST_SUM] = sparse["sum"]
    hist[HIST_MAX] = sparse["max"]
    return hist


def no_latency() -> LatencyFigures:
    """The figures of a histogram with no samples."""
    return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "p999": None,
            "p9999": None, "max": None}  # fmt: skip


def latency_figures(sparse: SparseHistogram) -> LatencyFigures:
    """count, mean and p50..p99.99 and max (ns) of a histogram, exactly as the service computes
    percentiles (bucket's highest value, capped by the recorded maximum); None with no samples."""
    from contracts.buckets import N_BUCKETS, percentiles

    hist = hist_array(sparse)
    count = int(hist[:N_BUCKETS].sum())
    if not count:
        return no_latency()
    p = percentiles(hist, [q for _, q in QUANTILES])
    return {"count": count, "mean": sparse["sum"] / count, "p50": p[0.5], "p90": p[0.9],
            "p99": p[0.99], "p999": p[0.999], "p9999": p[0.9999],
            "max": float(sparse["max"])}  # fmt: skip


def timeline(samples: list[LatestSample]) -> list[TimelinePoint]:
    """Per /latest sample once every stage runs: seconds since the first, and the rates."""
    points: list[TimelinePoint] = []
    t0 = None
    for sample in samples:
        latest = sample.get("latest") or {}
        stages = latest.get("stages") or {}
        running = latest.get("engine_running") and all(
            s.get("state") == "running" for s in stages.values()
        )
        rates = latest.get("rates_per_s") or {}
        rate = rates.get("md_messages")
        if not running or rate is None:
            continue
        if t0 is None:
            t0 = sample["t"]
        points.append(
            {
                "t_s": round(sample["t"] - t0, 3),
                "md_messages_per_s": rate,
                "window_s": latest.get("window_s"),
                "orders_per_s": rates.get("orders"),
            }
        )
    return points


def verdict(latency: LatencyFigures, slo: Mapping[str, float]) -> Verdict:
    """PASS/MISS of each objective of [slo] (microseconds) against measured ns."""
    checks: dict[str, Check] = {}
    for key, slo_key in OBJECTIVES:
        measured = latency.get(key)
        objective_ns = slo[slo_key] * 1000.0
        checks[key] = {
            "objective_ns": objective_ns,
            "measured_ns": measured,
            "pass": measured is not None and measured <= objective_ns,
        }
    return {"checks": checks, "pass": all(c["pass"] for c in checks.values())}


def _us(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1000:,.2f} µs"


def last_result(doc: BenchDoc) -> LastResult:
    """The compact result kept on the host at <install_prefix>/bench/last.json."""
    parts = [
        f"{label} p99 {_us(run['latency_ns'].get('p99'))} "
        + ("PASS" if run["verdict"]["pass"] else "MISS")
        for label, run in doc["runs"].items()
    ]
    verdict_text = "SLO MISSED" if doc["slo_missed"] else "SLOs met"
    return {
        # "ok", "summary" and "report" are what `fab status` shows in its one line
        "summary": f"{doc['finished_at']} {verdict_text}: {'; '.join(parts)}",
        "report": doc.get("report_dir"),
        "finished_at": doc["finished_at"],
        "host": doc["host"],
        "instance_id": doc["instance_id"],
        "duration_s": doc["duration_s"],
        "ok": doc["ok"],
        "slo_missed": doc["slo_missed"],
        "check_host_ok": doc["check_host"].get("ok"),
        "rates": {
            label: {
                "offered": run["offered_rate"],
                "achieved": run["achieved_rate"],
                "p50_ns": run["latency_ns"].get("p50"),
                "p99_ns": run["latency_ns"].get("p99"),
                "p999_ns": run["latency_ns"].get("p999"),
                "max_ns": run["latency_ns"].get("max"),
                "slo": "PASS" if run["verdict"]["pass"] else "MISS",
            }
            for label, run in doc["runs"].items()
        },
    }


def bench_config_toml(effective: Config, rate: int, port: int) -> str:
    """The host's effective config with the offered rate, segment prefix and API port of a
    bench run: a separate instance on the same cores, touching nothing of production's."""
    data = {section: dict(values) for section, values in effective.items()}
    data.setdefault("service", {})
    data.setdefault("feed", {})
    data.setdefault("telemetry", {})
    prefix = data["service"].get("shm_prefix", "lowlat")
    data["service"]["shm_prefix"] = f"{prefix}-bench"
    data["feed"]["rate"] = rate
    data["telemetry"]["host"] = "127.0.0.1"
    data["telemetry"]["port"] = port
    lines = ["# written by fab bench: the host's effective config, one offered rate"]
    for section, values in data.items():
        lines += ["", f"[{section}]"]
        try:
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        except TypeError as exc:
            raise OpsError(f"unexpected value in the host's effective config: {exc}") from None
    return "\n".join(lines) + "\n"


def _utc_stamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def report_dir(options: BenchOptions, label: str, started: dt.datetime) -> Path:
    """--out DIR -> DIR/<host>/; default bench-results/<host>/<UTC timestamp>/."""
    if options.out:
        return Path(options.out).expanduser() / _safe(label)
    return Path(DEFAULT_OUT) / _safe(label) / _utc_stamp(started)


# ------------------------------------------------------------------------ on the host


class _Host:
    """Commands on one host: by default a failing command raises (invoke's UnexpectedExit)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def run(self, command: str, *, warn: bool = False) -> Result:
        result: Result = self.conn.run(command, hide=True, in_stream=False, warn=warn)
        return result

    def start(self, command: str) -> Promise:
        """``command`` running in the background; ``.join()`` waits for its result."""
        promise: Promise = self.conn.run(
            command, hide=True, in_stream=False, warn=True, asynchronous=True
        )
        return promise

    def ok(self, command: str) -> bool:
        return bool(self.run(command, warn=True).ok)

    def read(self, command: str) -> str:
        return str(self.run(command).stdout)


@dataclass(frozen=True)
class _Bench:
    """One bench on one host: what its steps share."""

    conn: Connection
    host: _Host
    settings: Settings
    options: BenchOptions
    label: str  # the host as the operator named it
    started: dt.datetime
    profile: TuningProfile  # what the host was tuned and deployed with
    prefix: str  # its install prefix, under the settings' root
    venv_bin: str  # the current release's venv bin, quoted once: every use is a command
    effective: Config  # the host's effective service config
    slo: dict[str, float]  # the objectives of its [slo], in microseconds
    instance_id: str
    virtualization: str  # systemd-detect-virt --vm: "amazon"/"kvm" on Nitro, "qemu" emulated
    as_service: str  # the prefix that runs a command as the service's user ("" as the login)
    runner: str  # the command prefix of the service's runs: user, environment, taskset

    @property
    def service(self) -> str:
        return f"{self.venv_bin}/trading-service"


def _prepare(conn: Connection, settings: Settings, options: BenchOptions) -> _Bench:
    """Everything the bench needs to know about the host before it touches anything."""
    host = _Host(conn)
    started = dt.datetime.now(dt.UTC)
    profile = installed_profile(conn, settings)
    prefix = settings.path(profile.install_prefix)
    venv_bin = shlex.quote(f"{prefix}/current/venv/bin")
    service = f"{venv_bin}/trading-service"
    if not host.ok(f"test -x {service}"):
        raise OpsError(f"no release deployed at {prefix}/current: run `fab deploy` first")
    config_path = settings.path(SERVICE_CONFIG)
    effective_text = host.read(f"{service} config --config {shlex.quote(config_path)}")
    try:
        effective = tomllib.loads(effective_text)
    except tomllib.TOMLDecodeError as exc:
        raise OpsError(f"`trading-service config` on the host gave no valid TOML: {exc}") from None
    slo = {**default_objectives_us(), **effective.get("slo", {})}
    instance_id = _instance_id(host)
    virtualization = _virtualization(host)
    if virtualization in EMULATORS:
        ui.warn(conn, EMULATED_WARNING)

    # Who runs the service's commands: its own user (the segments in shm_dir are its), through
    # sudo when the task may use it; with the unit's warm numba cache when there is one.
    login_user = host.read("id -un").strip()
    as_service = ""
    if settings.sudo and profile.service_user != login_user:
        as_service = f"sudo -n -u {shlex.quote(profile.service_user)} -- "
    cache = settings.path("/var/cache/lowlat/numba")
    env = "env PYTHONUNBUFFERED=1 "
    if host.ok(f"{as_service}test -d {shlex.quote(cache)}"):
        env += f"NUMBA_CACHE_DIR={shlex.quote(cache)} "
    all_cpus = cpulist(profile.housekeeping + profile.isolated)
    runner = f"{as_service}{env}taskset -c {all_cpus} "
    return _Bench(
        conn=conn,
        host=host,
        settings=settings,
        options=options,
        label=ui.host_label(conn),
        started=started,
        profile=profile,
        prefix=prefix,
        venv_bin=venv_bin,
        effective=effective,
        slo=slo,
        instance_id=instance_id,
        virtualization=virtualization,
        as_service=as_service,
        runner=runner,
    )


def bench(conn: Connection, settings: Settings, options: BenchOptions) -> HostResult:
    """Benchmark one host (see the module docstring); the report lands on this machine."""
    b = _prepare(conn, settings, options)
    check = _check_tuning(b)
    measured = _measure(b)
    doc = _document(b, check, measured)
    out = report_dir(options, b.label, b.started)
    doc["report_dir"] = str(out)
    from ops import report  # matplotlib: only when a report is drawn

    try:
        files = report.render(doc, out)
    except OSError as exc:
        raise OpsError(f"cannot write the report to {out}: {exc.strerror}") from None
    ui.step(conn, f"report: {out}/ ({', '.join(f.name for f in files)})")

    _store_last(b, last_result(doc))

    published = ""
    if options.publish:
        from ops import publish

        count = publish.publish(doc)
        published = f"; published {count} metrics to CloudWatch"
    return _host_result(doc, out, published)


def _check_tuning(b: _Bench) -> CheckHostDoc:
    """check-host against the installed profile; a host that fails it is benchmarked anyway."""
    profile_path = b.settings.path(INSTALLED_PROFILE)
    ui.step(b.conn, f"check-host against {profile_path}")
    check = _check_host(b.host, b.service, profile_path)
    if check.get("ok") is False:
        failed = [c["name"] for c in check.get("checks", []) if c["status"] == "fail"]
        ui.warn(
            b.conn,
            f"HOST TUNING FAILS: {len(failed)} check(s) failed ({', '.join(failed)}); "
            "benchmarking anyway, the figures are from an untuned host",
        )
    elif "error" in check:
        ui.warn(b.conn, f"CHECK-HOST DID NOT RUN: {check['error']}; carrying on")
    return check


@dataclass(frozen=True)
class _Measured:
    """What the bench measured on the host, and what it did to the engine meanwhile."""

    engine: EngineDoc
    jitter: JitterDoc
    runs: dict[str, RunResult]
    problems: list[str]


def _measure(b: _Bench) -> _Measured:
    """The jitter probe and the runs, with the production engine stopped meanwhile and started
    again afterwards, however the bench ends (a failure, Ctrl-C)."""
    host = b.host
    in_dir = host.read("mktemp -d /tmp/lowlat-bench-in.XXXXXX").strip()
    out_dir = ""
    engine: EngineDoc = {"unit": ENGINE_UNIT, "was_active": False, "restarted": None}
    try:
        host.run(f"chmod 755 {in_dir}")
        b.conn.put(io.BytesIO(DRIVER.read_bytes()), f"{in_dir}/bench_driver.py")
        out_dir = host.read(f"{b.as_service}mktemp -d /tmp/lowlat-bench-out.XXXXXX").strip()
        host.run(f"{b.as_service}chmod 755 {out_dir}")
        engine["was_active"] = host.ok(f"{b.settings.systemctl} is-active --quiet {ENGINE_UNIT}")
        if engine["was_active"]:
            ui.warn(
                b.conn,
                f"STOPPING {ENGINE_UNIT} for the bench: it spins on the same isolated cores; "
                "it is started again when the bench ends",
            )
            host.run(b.settings.privileged(f"{b.settings.systemctl} stop {ENGINE_UNIT}"))
        jitter, runs, problems = _run_all(_Session(b, in_dir, out_dir))
    except KeyboardInterrupt:
        ui.warn(b.conn, "INTERRUPTED: stopping this bench's processes on the host")
        if out_dir:
            _stop_driver(host, b.as_service, out_dir)
        raise
    finally:
        if engine["was_active"]:
            engine["restarted"] = _start_engine(b)
        host.run(f"rm -rf {in_dir}", warn=True)
        if out_dir:
            host.run(f"{b.as_service}rm -rf {out_dir}", warn=True)
    return _Measured(engine, jitter, runs, problems)


def _start_engine(b: _Bench) -> bool:
    ui.step(b.conn, f"starting {ENGINE_UNIT} again")
    restarted = b.host.run(
        b.settings.privileged(f"{b.settings.systemctl} start {ENGINE_UNIT}"), warn=True
    )
    if not restarted.ok:
        ui.warn(b.conn, f"{ENGINE_UNIT} DID NOT START AGAIN: start it by hand")
    return bool(restarted.ok)


@dataclass(frozen=True)
class _Session:
    """The bench's work directories on the host: the driver and run configs go up to
    ``in_dir``; the runs write their figures under ``out_dir`` (as the service's user)."""

    bench: _Bench
    in_dir: str
    out_dir: str

    @property
    def python(self) -> str:
        return f"{self.bench.venv_bin}/python"  # the release's; the driver needs only stdlib

    @property
    def driver(self) -> str:
        return f"{self.python} {self.in_dir}/bench_driver.py"


def _run_all(s: _Session) -> tuple[JitterDoc, dict[str, RunResult], list[str]]:
    """The jitter probe, then one run per offered rate, under one progress bar."""
    b, options = s.bench, s.bench.options
    total = options.jitter_s + JITTER_OVERHEAD_S
    total += len(options.rates) * (options.duration_s + RUN_OVERHEAD_S)
    runs: dict[str, RunResult] = {}
    problems: list[str] = []
    with ui.progress_task(f"{b.label} bench", total) as advance:
        jitter = _jitter(s, advance)
        for rate in options.rates:
            name = rate_label(rate)
            ui.step(
                b.conn,
                f"service at {rate:,} msgs/s for {options.duration_s:g} s "
                f"on cores {_cores_text(b.effective.get('cores', {}))}",
            )
            runs[name] = _run_rate(s, rate, advance)
            error = runs[name].get("error")
            if error:
                problems.append(f"{name}: {error}")
    return jitter, runs, problems


def _jitter(s: _Session, advance: Advance) -> JitterDoc:
    """The jitter probe on the profile's isolated CPUs."""
    b = s.bench
    isolated = cpulist(b.profile.isolated)
    ui.step(b.conn, f"jitter probe on isolated CPUs {isolated}")
    jitter_dir = f"{s.out_dir}/jitter"
    command = (
        f"{b.runner}{s.driver} --dir {jitter_dir} --stdout jitter.json -- "
        f"{b.service} jitter --cpus {isolated} --duration {b.options.jitter_s:g} --json"
    )
    result = _timed(b.host, command, advance, b.options.jitter_s + JITTER_OVERHEAD_S)
    if result.ok:
        doc: JitterDoc = json.loads(b.host.read(f"cat {jitter_dir}/jitter.json"))
        return doc
    error = _tail(b.host, f"{jitter_dir}/jitter.json.stderr") or f"exit {result.exited}"
    ui.warn(b.conn, f"JITTER PROBE FAILED: {error}")
    return {"error": error}


def _document(b: _Bench, check: CheckHostDoc, measured: _Measured) -> BenchDoc:
    """Every figure of the bench: the report's bench.json."""
    runs, engine = measured.runs, measured.engine
    slo_missed = any(not run["verdict"]["pass"] for run in runs.values())
    return {
        "schema": 1,
        "host": b.label,
        "instance_id": b.instance_id,
        "virtualization": b.virtualization,
        "emulated": b.virtualization in EMULATORS,
        "started_at": b.started.isoformat(timespec="seconds"),
        "duration_s": b.options.duration_s,
        "rates": [{"label": rate_label(r), "offered": r} for r in b.options.rates],
        "profile": {
            "isolated": cpulist(b.profile.isolated),
            "housekeeping": cpulist(b.profile.housekeeping),
            "vcpus": b.profile.vcpus,
        },
        "cores": b.effective.get("cores", {}),
        "slo_us": b.slo,
        "check_host": check,
        "jitter": measured.jitter,
        "engine": engine,
        "runs": runs,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "slo_missed": slo_missed,
        "problems": measured.problems,
        "ok": not slo_missed and not measured.problems and engine["restarted"] is not False,
    }


def _host_result(doc: BenchDoc, out: Path, published: str) -> HostResult:
    """The bench's verdict on the host: runs that failed, an engine left stopped, SLOs missed."""
    runs, problems = doc["runs"], doc["problems"]
    missed = [name for name, run in runs.items() if not run["verdict"]["pass"]]
    if problems:
        return HostResult(False, f"bench runs failed: {'; '.join(problems)}", doc)
    if doc["engine"]["restarted"] is False:
        return HostResult(False, f"{ENGINE_UNIT} did not start again after the bench", doc)
    if missed:
        return HostResult(
            False, f"SLO missed at {', '.join(missed)} (see {out}/summary.md){published}", doc
        )
    return HostResult(True, f"every SLO met at {', '.join(runs)}; report {out}/{published}", doc)


def _cores_text(cores: Mapping[str, object]) -> str:
    return ", ".join(f"{stage} {cpu}" for stage, cpu in cores.items()) or "(default)"


def _virtualization(host: _Host) -> str:
    """systemd-detect-virt's name for the hypervisor ("none" on bare metal, "unknown" without
    the tool)."""
    result = host.run("systemd-detect-virt --vm", warn=True)
    name = result.stdout.strip()
    return name if re.fullmatch(r"[a-z0-9_-]{1,32}", name) else "unknown"


def _instance_id(host: _Host) -> str:
    """The EC2 instance id Nitro publishes, else the host name (the InstanceId dimension)."""
    from ami.cloudwatch import NITRO_INSTANCE_ID_FILE

    tag = host.run(f"cat {NITRO_INSTANCE_ID_FILE}", warn=True).stdout.strip()
    if re.fullmatch(r"i-[0-9a-f]{8,17}", tag):
        return tag
    return host.read("hostname").strip()


def _check_host(host: _Host, service: str, profile_path: str) -> CheckHostDoc:
    command = f"{service} check-host --json --profile {shlex.quote(profile_path)}"
    result = host.run(command, warn=True)
    if result.exited in (0, 1):
        try:
            report: CheckHostDoc = json.loads(result.stdout)
            return report
        except ValueError:
            pass
    line = (result.stderr.strip().splitlines() or [f"exit {result.exited}"])[-1]
    return {"error": line}


def _timed(host: _Host, command: str, advance: Advance, budget_s: float) -> Result:
    """Run ``command``, moving the progress bar with the clock up to ``budget_s``."""
    promise = host.start(command)
    start = time.monotonic()
    given = 0.0
    while not promise.runner.process_is_finished:
        time.sleep(0.25)
        target = min(time.monotonic() - start, budget_s * 0.98)
        if target > given:
            advance(target - given)
            given = target
    result = promise.join()
    advance(budget_s - given)
    return result


def _tail(host: _Host, path: str) -> str:
    text = host.run(f"tail -n 5 {path}", warn=True).stdout.strip().splitlines()
    return str(text[-1]) if text else ""


def _run_rate(s: _Session, rate: int, advance: Advance) -> RunResult:
    """One ``trading-service run`` at ``rate``, sampled; its figures, pulled back."""
    b, host = s.bench, s.bench.host
    name = rate_label(rate)
    port = int(
        host.read(
            f'{s.python} -c "import socket; s = socket.socket(); '
            "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])\""
        ).strip()
    )
    config_path = f"{s.in_dir}/bench-{name}.toml"
    b.conn.put(io.BytesIO(bench_config_toml(b.effective, rate, port).encode()), config_path)
    run_dir = f"{s.out_dir}/run-{name}"
    command = (
        f"{b.runner}{s.driver} --dir {run_dir} --stdout run.txt "
        f"--url http://127.0.0.1:{port}/latest -- "
        f"{b.service} run --config {config_path} --duration {b.options.duration_s:g} "
        f"--json {run_dir}/run.json --telemetry"
    )
    result = _timed(host, command, advance, b.options.duration_s + RUN_OVERHEAD_S)
    figures: RunFigures | None = None
    if host.ok(f"test -s {run_dir}/run.json"):
        figures = json.loads(host.read(f"cat {run_dir}/run.json"))
    samples = _samples(host, f"{run_dir}/latest.jsonl")
    if figures is None:
        error = _tail(host, f"{run_dir}/run.txt.stderr") or f"exit {result.exited}"
        return _failed_run(rate, samples, result.exited, error, b.slo)
    histogram = figures["latency_histograms_ns"]["tick_to_order"]
    latency = latency_figures(histogram)
    run: RunResult = {
        "offered_rate": rate,
        "achieved_rate": figures["rates_per_s"]["md_messages"],
        "elapsed_s": figures["elapsed_s"],
        "latency_ns": latency,
        "histogram_ns": histogram,
        "timeline": timeline(samples),
        "verdict": verdict(latency, b.slo),
        "exit_code": figures["exit_code"],
        "counters": figures["counters"],
        "processes": figures["processes"],
    }
    if figures["exit_code"] != 0 or result.exited != 0:
        run["error"] = "; ".join(figures.get("problems") or []) or f"exit {result.exited}"
    return run


def _samples(host: _Host, path: str) -> list[LatestSample]:
    """The driver's /latest samples (a line cut short by the run's end is skipped)."""
    samples: list[LatestSample] = []
    for line in host.run(f"cat {path}", warn=True).stdout.splitlines():
        try:
            samples.append(json.loads(line))
        except ValueError:
            continue
    return samples


def _failed_run(
    rate: int, samples: list[LatestSample], exit_code: int, error: str, slo: Mapping[str, float]
) -> RunResult:
    """A run that left no figures: empty latencies, the SLO missed, and why."""
    empty: LatencyFigures = {"count": 0, "p50": None, "p90": None, "p99": None, "p999": None,
                             "p9999": None, "max": None, "mean": None}  # fmt: skip
    return {
        "offered_rate": rate,
        "achieved_rate": None,
        "latency_ns": empty,
        "histogram_ns": {"buckets": [], "sum": 0, "max": 0},
        "timeline": timeline(samples),
        "verdict": verdict(empty, slo),
        "exit_code": exit_code,
        "error": error,
    }


def _stop_driver(host: _Host, as_service: str, out_dir: str) -> None:
    """After Ctrl-C: SIGTERM to the drivers of this bench only (their pid files), so the
    pipeline drains, then wait for them, so the engine never restarts beside a bench run."""
    pids = host.run(f"cat {out_dir}/*/driver.pid", warn=True).stdout.split()
    for pid in pids:
        if pid.isdigit():
            host.run(f"{as_service}kill -TERM {pid}", warn=True)
            host.run(
                f"for i in $(seq 60); do kill -0 {pid} 2>/dev/null || exit 0; sleep 0.5; done",
                warn=True,
            )


def _store_last(b: _Bench, last: LastResult) -> None:
    """<install_prefix>/bench/last.json on the host, replaced in one rename."""
    host, privileged = b.host, b.settings.privileged
    last_path = Layout(b.prefix).bench_last
    bench_dir = last_path.rsplit("/", 1)[0]
    staged = host.read("mktemp /tmp/lowlat-bench-last.XXXXXX").strip()
    try:
        b.conn.put(io.BytesIO((json.dumps(last, indent=2) + "\n").encode()), staged)
        host.run(privileged(f"mkdir -p {bench_dir}"))
        host.run(privileged(f"cp {staged} {bench_dir}/.last.json.tmp"))
        host.run(privileged(f"chmod 644 {bench_dir}/.last.json.tmp"))
        host.run(privileged(f"mv -f {bench_dir}/.last.json.tmp {last_path}"))
    finally:
        host.run(f"rm -f {staged}", warn=True)
