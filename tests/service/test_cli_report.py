"""``run --report`` and ``report`` through the real command line.

One real run (3 s on the simulator) writes ``--json`` and ``--report``; the tests check its
charts' pixel sizes, that statistics.txt says what the JSON says, that the timeline has about
one point a second, and that ``report`` on that JSON draws the same report. Bad input is one
line on stderr, exit 2, and nothing left behind; an output directory that cannot be written is
refused before the run starts. Run by hand under ``flock /tmp/lowlat-spin.lock``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from charts.draw import DASHBOARD_PIXELS, PIXELS
from charts.text import fmt_rate, fmt_us
from tests.support.images import png_size
from tests.support.run_docs import run_doc

CLI = [sys.executable, "-m", "service.cli"]
FILES = ("latency_histogram.png", "throughput_timeline.png", "performance_summary.png")
DURATION_S = 3
RATE = 200_000
SHM = Path("/dev/shm")


def cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """One line on stderr naming ``words``, exit 2, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def cells(text: str, first: str) -> list[str]:
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    return next(row[1:] for row in rows if row[0] == first)


def config(tmp_path: Path) -> tuple[Path, str]:
    prefix = f"lltest-report-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "service.toml"
    path.write_text(f'[service]\nshm_prefix = "{prefix}"\n[feed]\nrate = {RATE}\n')
    return path, prefix


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One real run with --json and --report: (its directory, the CompletedProcess)."""
    where = tmp_path_factory.mktemp("run")
    path, prefix = config(where)
    result = cli(
        "run", "--config", path, "--duration", DURATION_S,
        "--json", where / "run.json", "--report", where / "report",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not list(SHM.glob(f"{prefix}.*"))
    return where, result


@pytest.mark.slow
def test_run_report_writes_four_files_that_agree_with_the_json(ran):
    where, result = ran
    report = where / "report"
    assert sorted(p.name for p in report.iterdir()) == sorted([*FILES, "statistics.txt"])
    assert png_size(report / "latency_histogram.png") == PIXELS
    assert png_size(report / "throughput_timeline.png") == PIXELS
    assert png_size(report / "performance_summary.png") == DASHBOARD_PIXELS
    assert f"report in {report}/" in result.stdout
    doc = json.loads((where / "run.json").read_text())
    text = (report / "statistics.txt").read_text()
    lat = doc["latency_ns"]["tick_to_order"]
    assert lat["count"] > 0
    assert cells(text, "tick_to_order") == [
        f"{lat['count']:,}",
        *(fmt_us(lat[k]) for k in ("p50", "p90", "p99", "p999", "max")),
    ]
    for name in ("md_messages_processed", "md_messages_dropped", "orders_sent", "fills"):
        assert cells(text, name) == [f"{doc['counters'][name]:,}"], name
    assert cells(text, "market data processed / s") == [fmt_rate(doc["rates_per_s"]["md_messages"])]
    assert cells(text, "feed.rate") == [str(RATE)]
    # the histogram's buckets are in the JSON, non-empty ones only, and add up to the count
    buckets = doc["latency_histograms_ns"]["tick_to_order"]["buckets"]
    assert all(row[3] > 0 for row in buckets)
    assert sum(row[3] for row in buckets) == lat["count"]


@pytest.mark.slow
def test_the_timeline_has_a_point_a_second(ran):
    where, _ = ran
    points = json.loads((where / "run.json").read_text())["timeline"]
    assert DURATION_S - 1 <= len(points) <= DURATION_S
    times = [p["t_s"] for p in points]
    assert all(0.9 <= b - a <= 1.2 for a, b in zip([0.0, *times], times, strict=False))
    for p in points:
        assert 0.5 * RATE <= p["md_messages_per_s"] <= 1.5 * RATE, p
        assert p["orders_per_s"] > 0 and p["md_dropped_per_s"] is not None
    text = (where / "report/statistics.txt").read_text()
    assert f"per-second timeline: {len(points)} samples" in text
    assert cells(text, f"{times[0]:.1f}")[0] == fmt_rate(points[0]["md_messages_per_s"])


@pytest.mark.slow
def test_report_on_the_runs_json_draws_the_same_report(ran, tmp_path):
    where, _ = ran
    result = cli("report", where / "run.json", "--out", tmp_path / "again", timeout=120)
    assert result.returncode == 0, result.stderr
    again = tmp_path / "again"
    assert (again / "statistics.txt").read_text() == (where / "report/statistics.txt").read_text()
    for name in FILES:
        assert png_size(again / name) == png_size(where / "report" / name), name


def test_report_of_a_good_document(tmp_path):
    doc = tmp_path / "run.json"
    doc.write_text(json.dumps(run_doc()))
    result = cli("report", doc, "--out", tmp_path / "out", timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [*FILES, "statistics.txt"]
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ("[]", "a JSON list"),
        ('{"ratios": {}}', "neither a run nor a bench document"),
        ('{"rtt_ns": {}, "tick_to_order_ns": {}}', "bench --transports"),
        ('{"latency_histograms_ns": {}, "counters": {}, "rates_per_s": {}}', "without"),
    ],
)
def test_a_document_report_cannot_draw_is_one_line_and_nothing_written(tmp_path, content, words):
    doc = tmp_path / "doc.json"
    if content is not None:
        doc.write_text(content)
    out = tmp_path / "out"
    line = refused(cli("report", doc, "--out", out, timeout=120), str(doc), words)
    assert line.startswith("trading-service report: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == (["doc.json"] if content else [])


@pytest.fixture
def read_only(tmp_path):
    """A directory this process cannot write: chmod for a user, a read-only tmpfs for root."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_report_into_an_unwritable_directory_is_one_line(tmp_path, read_only):
    doc = tmp_path / "run.json"
    doc.write_text(json.dumps(run_doc()))
    refused(
        cli("report", doc, "--out", read_only / "out", timeout=120),
        str(read_only),
        "not writable",
    )
    assert list(read_only.iterdir()) == []
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(cli("report", doc, "--out", afile, timeout=120), "is a file")
    assert afile.read_text() == "x"


def test_run_refuses_an_unwritable_report_directory_before_it_starts(tmp_path, read_only):
    path, prefix = config(tmp_path)
    started = time.monotonic()
    result = cli("run", "--config", path, "--duration", 60, "--report", read_only / "r")
    refused(result, "--report", "not writable")
    assert time.monotonic() - started < 30  # refused, not run for 60 s
    assert not list(SHM.glob(f"{prefix}.*"))
    assert list(read_only.iterdir()) == []
    refused(cli("run", "--config", path, "--report", tmp_path / "no/such/dir"), "does not exist")
