"""The ``fab bench`` report drawn from a bench document, and the figures behind it (no host).

The document is built here from known latencies put into the service's own buckets, so the
percentiles the report shows can be checked against ``contracts.buckets`` computed on the same
samples, and the summary's numbers against the document's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from contracts.buckets import bucket_bounds, summary
from ops import bench as B
from ops.report import FILES, PIXELS, fmt_rate, fmt_us, render, summary_md
from service.config import from_dict
from service.telemetry.report import sparse_histogram
from tests.support.bench_docs import SLO, bench_doc, bucket_of, hist_of


def test_bucket_of_matches_the_service_bounds():
    lows, highs = bucket_bounds()
    for value in (0, 15, 16, 17, 31, 32, 1000, 123_456, 10**9):
        i = bucket_of(value)
        assert lows[i] <= value <= highs[i]


def png_size(path) -> tuple[int, int]:
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return image.shape[1], image.shape[0]


def test_render_writes_every_file_at_the_documented_size(tmp_path):
    doc = bench_doc()
    written = render(doc, tmp_path / "out")
    assert [p.name for p in written] == list(FILES)
    for path in written:
        assert path.stat().st_size > 0
        if path.suffix == ".png":
            assert png_size(path) == PIXELS, path.name
    assert json.loads((tmp_path / "out/bench.json").read_text()) == doc


def test_summary_table_holds_the_documents_numbers_and_verdicts(tmp_path):
    doc = bench_doc()
    render(doc, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    for label, run in doc["runs"].items():
        row = next(line for line in text.splitlines() if f"({label})" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        lat = run["latency_ns"]
        assert cells[0] == f"{fmt_rate(run['offered_rate'])} ({label})"
        assert cells[1] == fmt_rate(run["achieved_rate"])
        assert cells[2].split()[0] == fmt_us(lat["p50"])
        assert cells[3].split()[0] == fmt_us(lat["p99"])
        assert cells[4].split()[0] == fmt_us(lat["p999"])
        assert cells[5] == fmt_us(lat["max"])
        assert cells[6].startswith("PASS" if run["verdict"]["pass"] else "MISS")
    assert doc["runs"]["100k"]["verdict"]["pass"]
    assert not doc["runs"]["1m"]["verdict"]["pass"]
    assert "**SLO MISSED**" in text
    assert "NOT TUNED" in text and "| thp |" in text and "| hugepages |" not in text
    for cpu, f in doc["jitter"]["cpus"].items():
        assert f"| {cpu} | {fmt_us(f['p99'])} | {fmt_us(f['p999'])} | {fmt_us(f['max'])} |" in text
    assert "stopped for the bench and started again" in text


def test_an_emulated_host_is_named_in_the_reports_first_line(tmp_path):
    doc = bench_doc()
    render(doc, tmp_path)
    assert (tmp_path / "summary.md").read_text().startswith("# lowlat bench: h1")
    render({**doc, "virtualization": "qemu", "emulated": True}, tmp_path)
    first = (tmp_path / "summary.md").read_text().splitlines()[0]
    assert (
        first == "**EMULATED HOST (QEMU software emulation): these figures say nothing about "
        "a real host** (qemu)"
    )


def test_percentiles_are_the_services_own():
    values = np.random.default_rng(3).integers(100, 5_000_000, 50_000)
    hist = hist_of(values)
    ours = B.latency_figures(sparse_histogram(hist))
    theirs = summary(hist)
    for key in ("count", "p50", "p90", "p99", "p999", "max"):
        assert ours[key] == theirs[key], key
    assert ours["p999"] <= ours["p9999"] <= ours["max"]


def test_a_run_without_figures_and_a_host_without_jitter_still_render(tmp_path):
    doc = bench_doc()
    empty = B.latency_figures({"buckets": [], "sum": 0, "max": 0})
    doc["runs"]["1m"] = {
        "offered_rate": 1_000_000,
        "achieved_rate": None,
        "latency_ns": empty,
        "histogram_ns": {"buckets": [], "sum": 0, "max": 0},
        "timeline": [],
        "verdict": B.verdict(empty, SLO),
        "exit_code": 2,
        "error": "[cores] engine = 7 is not a CPU this process may use",
    }
    doc["jitter"] = {"error": "jitter probe failed"}
    doc["check_host"] = {"error": "no such profile"}
    render(doc, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "| 1,000,000 (1m) | - | - ✗ | - ✗ | - ✗ | - | MISS (p50, p99, p999) |" in text
    assert "- 1m: [cores] engine = 7" in text
    assert "no jitter figures: jitter probe failed" in text
    assert "check-host did not run: no such profile" in text
    for name in FILES:
        if name.endswith(".png"):
            assert png_size(tmp_path / name) == PIXELS


def test_verdict_compares_microsecond_objectives_with_nanoseconds():
    latency = {"p50": 5000.0, "p99": 50_001.0, "p999": 1.0}
    v = B.verdict(latency, SLO)
    assert v["checks"]["p50"]["pass"]  # equal to the objective meets it
    assert not v["checks"]["p99"]["pass"]
    assert not v["pass"]


def test_timeline_starts_when_every_stage_runs():
    def sample(t, state, rate):
        stages = {s: {"state": state} for s in ("feed", "engine", "gateway")}
        latest = {"engine_running": True, "stages": stages, "rates_per_s": {"md_messages": rate}}
        return {"t": t, "latest": latest}

    samples = [
        {"t": 99.0, "latest": {"engine_running": False, "stages": {}, "rates_per_s": {}}},
        sample(100.0, "warming", 0.0),
        sample(101.0, "running", None),
        sample(102.0, "running", 5.0),
        sample(103.0, "running", 7.0),
    ]
    assert [(p["t_s"], p["md_messages_per_s"]) for p in B.timeline(samples)] == [
        (0.0, 5.0),
        (1.0, 7.0),
    ]


@pytest.mark.parametrize(
    ("text", "rate", "label"),
    [
        ("100k", 100_000, "100k"),
        ("1m", 1_000_000, "1m"),
        ("2.5m", 2_500_000, "2.5m"),
        ("250000", 250_000, "250k"),
        ("1M", 1_000_000, "1m"),
        (" 500K ", 500_000, "500k"),
        ("1500", 1500, "1500"),
        ("0.5m", 500_000, "500k"),
    ],
)
def test_rates_parse_and_label(text, rate, label):
    assert B.parse_rate(text) == rate
    assert B.rate_label(rate) == label


@pytest.mark.parametrize("text", ["fast", "0", "-1", "1g", "1.5", "0.1k5", "", "200m", "1e6"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError):
        B.parse_rate(text)


def test_options_parse_dedupes_and_rejects_in_one_line(tmp_path):
    from ops.hosts import OpsError

    options = B.BenchOptions.parse(duration="2.5", rates="100k,1m,100000", out=None, publish=False)
    assert options.rates == (100_000, 1_000_000) and options.duration_s == 2.5
    assert options.jitter_s == 2.5
    assert B.BenchOptions.parse(60, "1m", None, False).jitter_s == B.JITTER_MAX_S
    (tmp_path / "file").write_text("")
    for kwargs, start in (
        ({"rates": "1m,fast"}, "--rates: 'fast' is not an offered rate"),
        ({"duration": "soon"}, "--duration 'soon': not a number"),
        ({"duration": "nan"}, "--duration 'nan': use seconds > 0"),
        ({"out": str(tmp_path / "file")}, f"--out {tmp_path / 'file'}: it is not a directory"),
    ):
        # the fab task's handler (ops.hosts.refusing_bad_input) makes it "fab bench: ...", exit 2
        with pytest.raises(OpsError) as caught:
            B.BenchOptions.parse(
                **{"duration": 1, "rates": "1m", "out": None, "publish": False, **kwargs}
            )
        assert str(caught.value).startswith(start) and "\n" not in str(caught.value)
    assert B.BenchOptions.parse(1, "1m", str(tmp_path / "new" / "dir"), False).out is not None
    assert not (tmp_path / "new").exists()  # checked, not created


def test_a_report_that_cannot_be_finished_leaves_nothing_half_written(tmp_path, monkeypatch):
    import ops.report as report

    out = tmp_path / "out"

    def fails(doc, directory):
        (directory / "latency_percentiles.png").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "_draw", fails)
    with pytest.raises(OSError):
        report.render(bench_doc(), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nor the hidden directory it was drawn in


def test_bench_config_is_the_hosts_config_with_rate_prefix_and_port():
    import tomllib

    effective = {
        "cores": {"feed": 1, "engine": 2, "gateway": 3},
        "service": {"shm_dir": "/dev/hugepages/lowlat", "shm_prefix": "lowlat"},
        "feed": {"rate": 100_000, "instruments": 8, "trade_probability": 0.05},
        "slo": {"tick_to_order_p99_us": 50.0},
        "telemetry": {"host": "0.0.0.0", "port": 8000},
    }
    text = B.bench_config_toml(effective, 2_500_000, 41234)
    config = from_dict(tomllib.loads(text), "<bench>")  # the service accepts it as written
    assert config.feed.rate == 2_500_000
    assert config.service.shm_prefix == "lowlat-bench"  # never production's segments
    assert config.service.shm_dir == "/dev/hugepages/lowlat"
    assert (config.telemetry.host, config.telemetry.port) == ("127.0.0.1", 41234)
    assert config.cores == {"feed": 1, "engine": 2, "gateway": 3}
    assert config.slo.tick_to_order_p99_us == 50.0
    assert effective["feed"]["rate"] == 100_000  # the input is left alone


def test_last_result_is_compact(tmp_path):
    last = B.last_result(bench_doc())
    assert set(last["rates"]) == {"100k", "1m"}
    assert last["rates"]["1m"]["slo"] == "MISS" and last["rates"]["100k"]["slo"] == "PASS"
    assert len(json.dumps(last)) < 2000


def test_summary_md_alone_needs_no_matplotlib():
    assert summary_md(bench_doc()).startswith("# lowlat bench: h1 (i-0123456789abcdef0)")
