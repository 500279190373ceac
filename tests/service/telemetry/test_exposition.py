"""The Prometheus exposition of the stats block: names, exactness, bounds.

Every test reads a real stats block that this process creates (``create_segments`` in a private
directory), so ``EngineView`` sees it as a live engine without any stage process running. The
expected values are computed here from the raw words and raw latencies the test wrote, never
taken from the code under test; the exposition is parsed back with prometheus_client's own
parser and, where Debian's promtool is installed, linted by it.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import service
from contracts import metric_names as N
from contracts import stats_layout as L
from contracts.buckets import HIST_WORDS, N_BUCKETS, bucket_bounds
from contracts.stages import FEED, S_RUNNING, S_WARM, STAGES
from service.config import Config
from service.kernels.seqlock import set_state
from service.telemetry import exposition as M
from service.telemetry.engine_view import EngineView
from tests.support.exposition import samples_of, value
from tests.support.names import EXPORTED_NAMES
from tests.support.synthetic_engine import (
    HISTOGRAMS,
    SyntheticEngine,
    latencies,
    record,
    write_slo_counts,
)

PROMTOOL = Path("/usr/bin/promtool")
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LOWS, HIGHS = bucket_bounds()
BY_NAME = {m.name: m for m in L.CATALOG}
SCALARS = [m for m in L.CATALOG if m.kind != "histogram"]


def running_engine(tmp_path: Path, request, config: Config | None = None) -> SyntheticEngine:
    engine = SyntheticEngine(tmp_path, config)
    request.addfinalizer(engine.close)
    engine.set_states(S_RUNNING)
    engine.publish()
    return engine


@pytest.fixture
def engine(tmp_path, request) -> SyntheticEngine:
    return running_engine(tmp_path, request)


def scrape(config: Config) -> bytes:
    return M.render(EngineView(config).sample(), config)


def buckets_of(samples: dict[str, list], family: str) -> list[tuple[float, float]]:
    return [(float(s.labels["le"]), s.value) for s in samples[f"{family}_bucket"]]


def ns(le_seconds: float) -> int:
    """Back from an exported le to the integer nanoseconds it stands for."""
    return round(le_seconds * 1e9)


# ------------------------------------------------------------------------------- names


def test_catalog_names_follow_the_prometheus_conventions():
    for metric in L.CATALOG:
        name = N.prometheus_name(metric)
        assert NAME_RE.match(name) and name.startswith("trading_"), name
        assert name.count("_total") == (metric.kind == "counter"), name
        assert name.endswith("_total") == (metric.kind == "counter"), name
        assert name.endswith("_seconds") == (metric.kind == "histogram"), name
        assert (
            name
            == f"trading_{metric.name}"
            + {
                "counter": "_total",
                "gauge": "",
                "histogram": "_seconds",
            }[metric.kind]
        )


def test_a_unit_already_in_the_name_is_not_doubled():
    counter = L.Metric("widgets_total", "counter", FEED, 0, "Widgets")
    latency = L.Metric("lag_seconds", "histogram", FEED, 0, "Lag")
    assert N.prometheus_name(counter) == "trading_widgets_total"
    assert N.prometheus_name(latency) == "trading_lag_seconds"
    with pytest.raises(ValueError, match="summary"):
        N.prometheus_name(L.Metric("x", "summary", FEED, 0, "X"))


def test_exported_names_are_unique_valid_and_include_every_catalog_metric():
    names = list(EXPORTED_NAMES)
    assert len(names) == len(set(names))
    assert all(NAME_RE.match(n) and n.startswith(N.PREFIX) for n in names)
    assert {N.prometheus_name(m) for m in L.CATALOG} <= set(names)
    assert "trading_up" in names


def test_exported_names_are_exactly_what_a_live_engine_exposes(engine):
    import dataclasses as dc

    from service.kernels.histogram import hist_record
    from service.telemetry.engine_view import Interval

    names = set(EXPORTED_NAMES)
    histograms = {N.prometheus_name(m) for m in HISTOGRAMS}
    summaries = {N.recent_name(m) for m in HISTOGRAMS}
    view = EngineView(engine.config)
    first = view.sample()
    for metric in HISTOGRAMS:  # something in every histogram's recent window
        hist_record(engine.stats, metric.offset, 1234)
    second = dc.replace(view.sample(), taken_ns=first.taken_ns + 10**9)
    exposed_families = set()
    report = {"ok": True, "summary": {"failed": 0}}
    exposition = M.render(second, engine.config, Interval(first, second), report)
    for sample_name in samples_of(exposition):
        family = re.sub(r"_(bucket|count|sum)$", "", sample_name)
        if family not in histograms | summaries:
            family = sample_name
        assert family in names, f"{sample_name} is exposed but not in exported_metric_names"
        exposed_families.add(family)
    # a live engine whose stages all published a heartbeat exposes every family (the
    # hugepage gauges only where the kernel has 2 MiB pages)
    if not Path(M.HUGEPAGES_SYSFS).is_dir():
        names -= {"trading_hugepages_free", "trading_hugepages_reserved"}
    assert exposed_families == names


def _host_scrape(config: Config, report: dict | None, hugepages_dir: Path) -> dict[str, list]:
    registry = CollectorRegistry(auto_describe=False)
    sample = EngineView(config).sample()
    registry.register(
        M.TradingCollector(lambda: sample, config, None, lambda: report, str(hugepages_dir))
    )
    return samples_of(generate_latest(registry))


@pytest.mark.parametrize(("ok", "failed", "tuned"), [(True, 0, 1.0), (False, 3, 0.0)])
def test_host_tuning_verdict_follows_the_last_check_host_report(tmp_path, ok, failed, tuned):
    report = {"ok": ok, "summary": {"passed": 5, "failed": failed, "not_applicable": 3}}
    samples = _host_scrape(Config(), report, tmp_path / "none")
    assert value(samples, "trading_host_tuned") == tuned
    assert value(samples, "trading_host_checks_failed") == failed


def test_no_host_verdict_before_the_first_check_and_hugepages_read_from_sysfs(tmp_path):
    pages = tmp_path / "hugepages-2048kB"
    pages.mkdir()
    (pages / "nr_hugepages").write_text("512\n")
    (pages / "free_hugepages").write_text("37\n")
    samples = _host_scrape(Config(), None, pages)
    assert "trading_host_tuned" not in samples  # absent, not a guessed 0 or 1
    assert value(samples, "trading_hugepages_free") == 37
    assert value(samples, "trading_hugepages_reserved") == 512
    # a kernel without 2 MiB pages: the gauges are absent rather than 0
    assert "trading_hugepages_free" not in _host_scrape(Config(), None, tmp_path / "missing")


def test_describe_names_the_families_without_sampling():
    calls = []
    collector = M.TradingCollector(lambda: calls.append(1), Config())
    described = collector.describe()
    assert not calls
    assert all(not family.samples for family in described)
    # prometheus_client keeps counter names without _total; the exposition adds it back
    exposed = [f.name + ("_total" if f.type == "counter" else "") for f in described]
    assert exposed == list(EXPORTED_NAMES)


def test_a_scrape_samples_the_engine_exactly_once(engine):
    view = EngineView(engine.config)
    calls = []

    def sample_fn():
        calls.append(1)
        return view.sample()

    registry = CollectorRegistry()
    registry.register(M.TradingCollector(sample_fn, engine.config))
    assert not calls  # registering describes, it does not scrape
    text = generate_latest(registry)
    assert len(calls) == 1
    assert value(samples_of(text), "trading_up") == 1.0


# ---------------------------------------------------------------------- counters and gauges


def test_counters_and_gauges_equal_the_words_written(tmp_path, request):
    config = Config()
    config = dataclasses.replace(config, feed=dataclasses.replace(config.feed, instruments=5))
    engine = running_engine(tmp_path, request, config)
    rng = np.random.default_rng(7)
    for start, end in zip(L.SECTION_START, L.SECTION_END, strict=True):
        # below 2**53: a float64 sample value holds them exactly
        engine.local[start + L.PID + 1 : end] = rng.integers(1, 2**53, end - start - L.PID - 1)
    engine.local[L.POSITIONS : L.POSITIONS + L.MAX_INSTRUMENTS] -= 2**52  # positions go negative
    engine.publish()

    samples = samples_of(scrape(engine.config))
    for metric in SCALARS:
        name = N.prometheus_name(metric)
        if metric.words == 1:
            assert value(samples, name) == float(engine.local[metric.offset]), name
            continue
        # reasons: all of them; instruments: the configured ones, not all 64 words
        labels = list(L.REJECT_REASONS) if metric.label == "reason" else [str(i) for i in range(5)]
        exposed = {s.labels[metric.label]: s.value for s in samples[name]}
        assert sorted(exposed) == sorted(labels), name
        assert all(set(s.labels) == {metric.label} for s in samples[name])
        for i, label in enumerate(labels):
            assert exposed[label] == float(engine.local[metric.offset + i]), (name, label)


@pytest.mark.parametrize("not_running", ["feed", "engine", "gateway"])
def test_up_needs_every_stage_running(engine, not_running):
    stage = STAGES.index(not_running)
    set_state(engine.stats, engine.local, L.SECTION_START[stage], S_WARM)
    samples = samples_of(scrape(engine.config))
    assert value(samples, "trading_up") == 0.0
    for name in STAGES:
        assert value(samples, "trading_stage_up", stage=name) == float(name != not_running)
    # the engine still runs: its figures are still exported
    assert "trading_md_messages_sent_total" in samples


def test_up_build_info_heartbeat_age_and_start_time(tmp_path, request):
    before = time.time()
    engine = SyntheticEngine(tmp_path)
    request.addfinalizer(engine.close)
    after = time.time()
    engine.set_states(S_RUNNING)
    age = engine.config.telemetry.ready_heartbeat_s / 2  # within the readiness bound
    engine.publish(now_ns=time.monotonic_ns() - int(age * 1e9))

    view = EngineView(engine.config)
    collector = M.TradingCollector(view.sample, engine.config)
    registry = CollectorRegistry()
    registry.register(collector)
    samples = samples_of(generate_latest(registry))
    assert value(samples, "trading_up") == 1.0
    assert value(samples, "trading_build_info", version=service.__version__) == 1.0
    for stage in STAGES:
        assert value(samples, "trading_stage_up", stage=stage) == 1.0
        assert age <= value(samples, "trading_stage_heartbeat_age_seconds", stage=stage) < age + 1
    start = value(samples, "trading_engine_start_time_seconds")
    assert before - 0.01 <= start <= after + 0.01
    # converted once per run: the next scrape gives the very same start time
    again = samples_of(generate_latest(registry))
    assert value(again, "trading_engine_start_time_seconds") == start


def test_a_running_engine_with_old_heartbeats_is_not_up(tmp_path, request):
    """'running' in a block whose heartbeats are eleven days old is not an engine that works."""
    engine = SyntheticEngine(tmp_path)
    request.addfinalizer(engine.close)
    engine.set_states(S_RUNNING)
    engine.publish(now_ns=time.monotonic_ns() - 11 * 86400 * 10**9)
    samples = samples_of(M.render(EngineView(engine.config).sample(), engine.config))
    assert value(samples, "trading_up") == 0.0
    for stage in STAGES:
        assert value(samples, "trading_stage_up", stage=stage) == 0.0


def test_an_absent_engine_is_only_up_zero_and_the_host(tmp_path):
    config = Config()
    config = dataclasses.replace(
        config,
        service=dataclasses.replace(config.service, shm_dir=str(tmp_path), shm_prefix="nothing"),
    )
    sample = EngineView(config).sample()
    assert not sample.running
    samples = samples_of(M.render(sample, config))
    host = {spec.name for spec in N.HOST_FAMILIES}  # the host is there without an engine
    assert set(samples) - host == {"trading_up", "trading_build_info", "trading_stage_up"}
    assert value(samples, "trading_up") == 0.0
    assert value(samples, "trading_build_info", version=service.__version__) == 1.0
    assert [s.labels["stage"] for s in samples["trading_stage_up"]] == list(STAGES)
    assert all(s.value == 0.0 for s in samples["trading_stage_up"])


def test_an_engine_that_goes_away_stops_being_exported(tmp_path):
    engine = SyntheticEngine(tmp_path)
    try:
        engine.set_states(S_RUNNING)
        engine.local[L.ORDERS_SENT] = 42
        engine.publish()
        view = EngineView(engine.config)
        live = samples_of(M.render(view.sample(), engine.config))
        assert value(live, "trading_orders_sent_total") == 42.0
    finally:
        engine.close()
    gone = samples_of(M.render(view.sample(), engine.config))
    assert value(gone, "trading_up") == 0.0
    assert not any(name.endswith("_total") for name in gone)


# ------------------------------------------------------------------------------ histograms


SLO_CASES = {
    "default": (5.0, 50.0, 500.0),
    "threshold on a ladder edge": (M.LADDER_NS[3] / 1000, 2.5, 1234.567),
    "two thresholds in one bucket": (5.0, 5.1, 5.2),
}


@pytest.mark.parametrize("slo_us", SLO_CASES.values(), ids=SLO_CASES.keys())
def test_histograms_are_exported_exactly(tmp_path, request, slo_us):
    config = Config()
    slo = dataclasses.replace(
        config.slo,
        tick_to_order_p50_us=slo_us[0],
        tick_to_order_p99_us=slo_us[1],
        tick_to_order_p999_us=slo_us[2],
    )
    engine = running_engine(tmp_path, request, dataclasses.replace(config, slo=slo))
    rng = np.random.default_rng(20240611)
    recorded = {}
    for k, metric in enumerate(HISTOGRAMS):
        recorded[metric.name] = latencies(rng, 1000, median_ns=300 * 4**k)
        record(engine, metric, recorded[metric.name])
    thresholds = write_slo_counts(engine, recorded["tick_to_order"])
    assert sorted(thresholds) == sorted(round(us * 1000) for us in slo_us)

    samples = samples_of(scrape(engine.config))
    for metric in HISTOGRAMS:
        name = N.prometheus_name(metric)
        values = recorded[metric.name]
        buckets = buckets_of(samples, name)
        edges = set(M.LADDER_NS)
        if metric.offset == L.H_TICK_TO_ORDER:
            edges |= {int(t) for t in thresholds}
        assert [ns(le) for le, _ in buckets[:-1]] == sorted(edges), name
        for le, count in buckets[:-1]:
            assert count == np.count_nonzero(values <= ns(le)), (name, le)
        assert buckets[-1] == (float("inf"), len(values))
        assert value(samples, f"{name}_count") == len(values)
        assert value(samples, f"{name}_sum") == pytest.approx(values.sum() / 1e9, rel=1e-12)


def test_histograms_of_an_idle_engine_are_zero(engine):
    samples = samples_of(scrape(engine.config))
    for metric in HISTOGRAMS:
        name = N.prometheus_name(metric)
        assert all(count == 0 for _, count in buckets_of(samples, name))
        assert value(samples, f"{name}_sum") == 0.0


def test_an_slo_count_read_out_of_step_is_clamped_to_what_the_buckets_allow(engine):
    values = latencies(np.random.default_rng(3), 2000, median_ns=5000)
    record(engine, BY_NAME["tick_to_order"], values)
    thresholds = write_slo_counts(engine, values)
    # as if the counts were read long before (0) or after (far more) the buckets
    engine.stats[L.SLO_TICK_TO_ORDER_WITHIN] = 0
    engine.stats[L.SLO_TICK_TO_ORDER_WITHIN + 1] = 10**9

    buckets = dict(buckets_of(samples_of(scrape(engine.config)), "trading_tick_to_order_seconds"))
    for j, expected in ((0, "low"), (1, "high")):
        threshold = int(thresholds[j])
        k = int(np.searchsorted(HIGHS, threshold))  # first bucket reaching the threshold
        assert LOWS[k] <= threshold <= HIGHS[k]
        below = np.count_nonzero(values < LOWS[k])
        through = np.count_nonzero(values <= HIGHS[k])
        assert below < through  # the bucket holding the threshold is not empty: a real clamp
        assert buckets[threshold / 1e9] == (below if expected == "low" else through)
    counts = list(buckets.values())
    assert counts == sorted(counts)


def test_two_thresholds_in_one_bucket_read_out_of_step_stay_in_order():
    k = int(np.searchsorted(HIGHS, 5000))
    assert LOWS[k] < 5000 < 5100 < HIGHS[k]  # both thresholds fall in bucket k
    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    hist[k - 1], hist[k] = 3, 10
    # the count at 5100 read before a burst that the count at 5000 already saw
    buckets = dict(M.histogram_buckets(hist, [(5000, 11), (5100, 9)]))
    assert buckets[5000 / 1e9] == 11 and buckets[5100 / 1e9] == 11
    assert buckets[float("inf")] == 13


@settings(max_examples=200, deadline=None)
@given(
    counts=st.dictionaries(
        st.integers(0, N_BUCKETS - 1), st.integers(0, 10**12), min_size=0, max_size=40
    ),
    slos=st.lists(st.tuples(st.integers(-5, 2**40), st.integers(-5, 10**13)), max_size=6),
)
def test_bucket_lists_are_always_valid_prometheus_histograms(counts, slos):
    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    for i, c in counts.items():
        hist[i] = c
    buckets = M.histogram_buckets(hist, slos)
    les = [le for le, _ in buckets]
    assert les == sorted(set(les)) and les[-1] == float("inf")
    cumulative = [c for _, c in buckets]
    assert cumulative == sorted(cumulative) and cumulative[-1] == sum(counts.values())
    for le, count in buckets[:-1]:
        if ns(le) in M.LADDER_NS:  # a bucket edge: exact whatever the SLO counts say
            assert count == sum(c for i, c in counts.items() if HIGHS[i] <= ns(le))


# ------------------------------------------------------------------------------- promtool


def promtool_check(exposition: bytes) -> subprocess.CompletedProcess:
    if not PROMTOOL.exists():
        pytest.skip(f"{PROMTOOL} is missing (apt package prometheus)")
    return subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )


def test_promtool_accepts_a_live_engine(engine):
    values = latencies(np.random.default_rng(1), 500, median_ns=3000)
    for metric in HISTOGRAMS:
        record(engine, metric, values)
    write_slo_counts(engine, values)
    engine.local[L.MD_SENT] = 1000
    engine.publish()
    result = promtool_check(scrape(engine.config))
    assert result.returncode == 0, result
    assert result.stdout == b"" and result.stderr == b"", result


def test_promtool_accepts_an_absent_engine(tmp_path):
    config = Config()
    config = dataclasses.replace(
        config,
        service=dataclasses.replace(config.service, shm_dir=str(tmp_path), shm_prefix="nothing"),
    )
    result = promtool_check(M.render(EngineView(config).sample(), config))
    assert result.returncode == 0, result
    assert result.stdout == b"" and result.stderr == b"", result


def test_recent_summaries_give_window_quantiles_and_cumulative_count(tmp_path):
    """The summary a histogram is also exposed as: quantiles over the window only."""
    import dataclasses as dc

    from service.kernels.histogram import hist_record
    from service.telemetry.engine_view import Interval

    engine = SyntheticEngine(tmp_path)
    try:
        engine.set_states(S_RUNNING)
        engine.publish()
        before_values = np.full(1000, 100_000)  # 100 us, before the window
        for v in before_values:
            hist_record(engine.stats, L.H_TICK_TO_ORDER, int(v))
        view = EngineView(engine.config)
        first = view.sample()
        window_values = np.arange(1000, 2000)  # 1-2 us, inside the window
        for v in window_values:
            hist_record(engine.stats, L.H_TICK_TO_ORDER, int(v))
        second = dc.replace(view.sample(), taken_ns=first.taken_ns + 1_000_000_000)
        text = M.render(second, engine.config, Interval(first, second)).decode()
        samples = {
            (s.name, s.labels.get("quantile")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("trading_tick_to_order_recent_seconds")
        }
        p99 = samples[("trading_tick_to_order_recent_seconds", "0.99")]
        assert 1.98e-6 <= p99 <= 2.0e-6 * 1.07  # the window's 99th percentile, bucket resolution
        assert samples[("trading_tick_to_order_recent_seconds", "0.5")] < 1.6e-6
        assert samples[("trading_tick_to_order_recent_seconds_count", None)] == 2000  # cumulative
        assert "trading_tick_to_order_recent_seconds" in list(EXPORTED_NAMES)
        # without a window (first scrape) the summary is absent, never made up
        assert "recent_seconds" not in M.render(second, engine.config).decode()
    finally:
        engine.close()


# ------------------------------------------------- the template path equals generate_latest


def with_instruments(config: Config, n: int) -> Config:
    return dataclasses.replace(config, feed=dataclasses.replace(config.feed, instruments=n))


def same_as_reference(sample, config, window=None, report=None, hugepages_dir=None) -> bytes:
    """render's bytes, after checking they are render_reference's for the same inputs."""
    kwargs = {"hugepages_dir": str(hugepages_dir)} if hugepages_dir else {}
    fast = M.render(sample, config, window, report, **kwargs)
    assert fast == M.render_reference(sample, config, window, report, **kwargs)
    return fast


def busy_engine(tmp_path, request, instruments: int, scale: int = 1):
    """An engine with every counter, gauge, position and histogram written, and a window."""
    from service.telemetry.engine_view import Interval

    engine = running_engine(tmp_path, request, with_instruments(Config(), instruments))
    rng = np.random.default_rng(instruments * 1000 + scale)
    for metric in SCALARS:
        words = engine.local[metric.offset : metric.offset + metric.words]
        words[:] = rng.integers(0, 10**5, metric.words) * scale
    engine.local[L.POSITIONS : L.POSITIONS + L.MAX_INSTRUMENTS] -= 5 * 10**4 * scale
    engine.publish()
    view = EngineView(engine.config)
    first = view.sample()
    for k, metric in enumerate(HISTOGRAMS):
        values = latencies(rng, 3000, median_ns=500 * 3**k)
        record(engine, metric, values)
        if metric.offset == L.H_TICK_TO_ORDER:
            write_slo_counts(engine, values)
    if scale > 1:  # as if the engine had run for long: counts past 10**6, or even 2**53
        for metric in HISTOGRAMS:
            engine.stats[metric.offset : metric.offset + N_BUCKETS] *= scale
    second = dataclasses.replace(view.sample(), taken_ns=first.taken_ns + 10**9)
    return engine, first, second, Interval(first, second)


@pytest.mark.parametrize("instruments", [1, 8])
@pytest.mark.parametrize("scale", [1, 1000, 10**12], ids=["young", "long-run", "past-2**53"])
def test_the_template_path_writes_generate_latests_bytes(tmp_path, request, instruments, scale):
    from service.telemetry.engine_view import Interval

    engine, first, second, window = busy_engine(tmp_path, request, instruments, scale)
    config = engine.config
    body = same_as_reference(second, config, window, {"ok": False, "summary": {"failed": 2}})
    assert body.count(b"\ntrading_position{") == instruments
    same_as_reference(second, config)  # no window: the summaries are left out
    same_as_reference(second, config, Interval(None, second))  # the first reading
    same_as_reference(second, config, Interval(second, second))  # no time between: none
    # a window in which nothing was recorded: no quantile to tell
    same_as_reference(second, config, Interval(second, dataclasses.replace(second, taken_ns=2)))
    same_as_reference(first, config, Interval(first, first))
    # something recorded in one histogram's window only
    for metric in HISTOGRAMS:
        earlier = second.stats.copy()
        words = slice(metric.offset, metric.offset + HIST_WORDS)
        earlier[words] = first.stats[words]
        before = dataclasses.replace(second, block=earlier, taken_ns=first.taken_ns)
        same_as_reference(second, config, Interval(before, second))


def test_the_template_path_with_every_slo_case_and_idle_histograms(tmp_path, request):
    engine = running_engine(tmp_path, request)
    same_as_reference(EngineView(engine.config).sample(), engine.config)  # all zero
    for slo_us in SLO_CASES.values():
        slo = dataclasses.replace(
            engine.config.slo,
            tick_to_order_p50_us=slo_us[0],
            tick_to_order_p99_us=slo_us[1],
            tick_to_order_p999_us=slo_us[2],
        )
        config = dataclasses.replace(engine.config, slo=slo)
        values = latencies(np.random.default_rng(5), 800, median_ns=4000)
        record(engine, BY_NAME["tick_to_order"], values)
        engine.stats[L.SLO_THRESHOLDS_NS : L.SLO_THRESHOLDS_NS + 3] = config.slo.thresholds_ns()
        write_slo_counts(engine, values)
        same_as_reference(EngineView(config).sample(), config)
        # counts read out of step with the buckets: clamped the same way
        engine.stats[L.SLO_TICK_TO_ORDER_WITHIN] = 0
        engine.stats[L.SLO_TICK_TO_ORDER_WITHIN + 1] = 10**9
        same_as_reference(EngineView(config).sample(), config)


def test_the_template_path_without_an_engine_or_heartbeats(tmp_path, request):
    config = Config()
    absent = dataclasses.replace(
        config,
        service=dataclasses.replace(config.service, shm_dir=str(tmp_path), shm_prefix="nothing"),
    )
    same_as_reference(EngineView(absent).sample(), absent)
    same_as_reference(
        EngineView(absent).sample(), absent, None, {"ok": True, "summary": {"failed": 0}}
    )
    (tmp_path / "e").mkdir()
    engine = SyntheticEngine(tmp_path / "e")  # segments there, no stage has published yet
    request.addfinalizer(engine.close)
    same_as_reference(EngineView(engine.config).sample(), engine.config)
    engine.set_states(S_WARM)
    engine.publish(now_ns=time.monotonic_ns() - 11 * 86400 * 10**9)  # old heartbeats
    same_as_reference(EngineView(engine.config).sample(), engine.config)


def test_the_template_path_reads_the_hugepages_as_the_collector_does(tmp_path, engine):
    pages = tmp_path / "hugepages-2048kB"
    pages.mkdir()
    (pages / "nr_hugepages").write_text("512\n")
    (pages / "free_hugepages").write_text("37\n")
    sample = EngineView(engine.config).sample()
    assert b"trading_hugepages_free 37.0" in same_as_reference(
        sample, engine.config, None, None, pages
    )
    (pages / "free_hugepages").write_text("not a number\n")
    same_as_reference(sample, engine.config, None, None, pages)
    same_as_reference(sample, engine.config, None, None, tmp_path / "missing")
