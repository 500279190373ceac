"""The documents of ``fab bench``, typed: what ``ops.bench`` writes and the others read by key.

``BenchDoc`` is ``bench.json`` of a report (``ops.report`` draws it, ``ops.publish`` sends its
figures to CloudWatch); ``LastResult`` is ``<install_prefix>/bench/last.json`` on the host
(``fab status`` shows its summary). They are written to JSON, so at run time they are plain
dicts: these classes give the keys and value types once, for mypy and for the reader. The
documents the host's own commands print (``check-host --json``, ``jitter --json``, ``run
--json``, ``/latest``) are typed here too, as far as the bench reads them.

Standard library only: ``fab --list`` imports this.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

ObjectiveKey = Literal["p50", "p99", "p999"]  # the percentiles [slo] has objectives for

# ----------------------------------------------------------------- what the host's commands print


class CheckResult(TypedDict):
    """One check of ``trading-service check-host --json``."""

    name: str
    status: str  # pass, fail or n/a
    expected: str
    observed: str
    detail: NotRequired[str]


class CheckSummary(TypedDict):
    passed: int
    failed: int
    not_applicable: int
    total: NotRequired[int]


class CheckHostDoc(TypedDict, total=False):
    """``check-host --json`` as the host printed it, or only ``error`` when it printed none."""

    checks: list[CheckResult]
    ok: bool
    summary: CheckSummary
    host: dict[str, str | int]
    error: str


class JitterCpu(TypedDict):
    """One isolated CPU of ``trading-service jitter --json``; gaps in ns (None: no samples)."""

    p50: float | None
    p99: float | None
    p999: float | None
    max: float | None
    gaps_over_threshold_per_s: float
    time_lost_pct: float


class JitterDoc(TypedDict, total=False):
    """``jitter --json`` as the host printed it, or only ``error`` when the probe failed."""

    duration_s: float
    threshold_ns: int
    cpus: dict[str, JitterCpu]
    error: str


class SparseHistogram(TypedDict):
    """A latency histogram's non-empty buckets (``service.telemetry.report.sparse_histogram``)."""

    buckets: list[list[int]]  # [index, lowest ns, highest ns, count]
    sum: int
    max: int


class ProcessDoc(TypedDict):
    cpu: int
    stages: list[str]


class RunFigures(TypedDict):
    """The fields of ``trading-service run --json`` that the bench reads."""

    exit_code: int
    problems: list[str]
    elapsed_s: float
    processes: list[ProcessDoc]
    rates_per_s: dict[str, float | None]
    counters: dict[str, int]
    latency_histograms_ns: dict[str, SparseHistogram]


class LatestStage(TypedDict, total=False):
    state: str


class Latest(TypedDict, total=False):
    """The fields of the telemetry API's ``/latest`` that the throughput timeline reads."""

    engine_running: bool
    stages: dict[str, LatestStage]
    rates_per_s: dict[str, float | None]
    window_s: float


class LatestSample(TypedDict):
    """One line of the bench driver's ``latest.jsonl``: when, and what ``/latest`` said."""

    t: float
    latest: Latest


# ------------------------------------------------------------------------- bench.json

# "pass" is a Python keyword: these two take TypedDict's functional form.
Check = TypedDict(
    "Check", {"objective_ns": float, "measured_ns": float | None, "pass": bool}
)  # one objective of [slo] against the measured ns
Verdict = TypedDict("Verdict", {"checks": dict[str, Check], "pass": bool})


class LatencyFigures(TypedDict):
    """count, mean and percentiles (ns) of one run's tick-to-order latency; None: no samples."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    p9999: float | None
    max: float | None


class TimelinePoint(TypedDict):
    t_s: float  # seconds since every stage ran
    md_messages_per_s: float
    window_s: float | None
    orders_per_s: float | None


class RunResult(TypedDict):
    """One offered rate's run: its figures, or ``error`` and empty figures when it had none."""

    offered_rate: int
    achieved_rate: float | None
    elapsed_s: NotRequired[float]
    latency_ns: LatencyFigures
    histogram_ns: SparseHistogram
    timeline: list[TimelinePoint]
    verdict: Verdict
    exit_code: int
    counters: NotRequired[dict[str, int]]
    processes: NotRequired[list[ProcessDoc]]
    error: NotRequired[str]


class RateLabel(TypedDict):
    label: str  # "100k", "1m": the report's and the OfferedRate dimension's name
    offered: int


class ProfileSummary(TypedDict):
    isolated: str  # cpulist
    housekeeping: str
    vcpus: int


class EngineDoc(TypedDict):
    """What the bench did to the production engine unit."""

    unit: str
    was_active: bool
    restarted: bool | None  # None: it was not running, so it was not started again


# A CPU emulated in software (QEMU's TCG, as in the lab) runs one to two orders of magnitude
# slower than the real one and with its own jitter: its figures say nothing about a real host.
EMULATORS = ("qemu",)  # systemd-detect-virt --vm names; KVM, and Nitro ("amazon"), run natively
EMULATED_WARNING = (
    "EMULATED HOST (QEMU software emulation): these figures say nothing about a real host"
)


class BenchDoc(TypedDict):
    """Every figure of one ``fab bench`` on one host: the report's ``bench.json``."""

    schema: int
    host: str
    instance_id: str
    virtualization: str  # systemd-detect-virt --vm ("qemu": software emulation)
    emulated: bool  # the figures come from an emulated CPU and say nothing about a real host
    started_at: str  # ISO 8601, UTC
    duration_s: float
    rates: list[RateLabel]
    profile: ProfileSummary
    cores: dict[str, int]
    slo_us: dict[str, float]
    check_host: CheckHostDoc
    jitter: JitterDoc
    engine: EngineDoc
    runs: dict[str, RunResult]  # by rate label, in the order offered
    finished_at: str
    slo_missed: bool
    problems: list[str]
    ok: bool
    report_dir: NotRequired[str]  # where the report was written, once it is chosen


# ------------------------------------------------------------------------- last.json


class LastRate(TypedDict):
    offered: int
    achieved: float | None
    p50_ns: float | None
    p99_ns: float | None
    p999_ns: float | None
    max_ns: float | None
    slo: str  # PASS or MISS


class LastResult(TypedDict):
    """The compact result kept on the host at <install_prefix>/bench/last.json."""

    summary: str  # one line: when, the verdict, p99 per rate (what `fab status` shows)
    report: str | None  # where the full report went, on the operator's machine
    finished_at: str
    host: str
    instance_id: str
    duration_s: float
    ok: bool
    slo_missed: bool
    check_host_ok: bool | None
    rates: dict[str, LastRate]
