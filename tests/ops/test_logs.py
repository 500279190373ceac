"""``fab logs --since`` on the units' log files: lines stamped at or after a UTC cutoff.

The pure parts first (ops/inspect.py): ``--since`` as a UTC cutoff, a line's stamp, the lines of
a log since a cutoff with their continuation lines, the line ``fab status`` makes of last.json.
Then the real ``fab logs`` over the loopback sshd against a throwaway host whose log files the
test writes (no deploy, no engine: the task only reads the files).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from ops import inspect as inspect_ops
from ops.hosts import OpsError
from tests.support.fabtest import make_host, output, run_fab

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 8, 36, 6, 123000, tzinfo=UTC)
LOOPBACK = "lowlat-loopback"


def stamp(when: dt.datetime) -> str:
    """A log line's stamp, as the service writes it: ISO 8601, UTC, milliseconds, Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------------------- --since


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("15 m", NOW - dt.timedelta(minutes=15)),
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("10sec", NOW - dt.timedelta(seconds=10)),
        ("5min", NOW - dt.timedelta(minutes=5)),
        ("1h", NOW - dt.timedelta(hours=1)),
        ("2d", NOW - dt.timedelta(days=2)),
        ("1w", NOW - dt.timedelta(weeks=1)),
        ("now", NOW),
        ("today", dt.datetime(2026, 11, 30, tzinfo=UTC)),
        ("yesterday", dt.datetime(2026, 11, 29, tzinfo=UTC)),
        ("2026-11-21", dt.datetime(2026, 11, 21, tzinfo=UTC)),
        ("2026-11-21 13:00", dt.datetime(2026, 11, 21, 13, 0, tzinfo=UTC)),
        ("2026-11-21T13:00:05", dt.datetime(2026, 11, 21, 13, 0, 5, tzinfo=UTC)),
    ],
)
def test_since_is_a_utc_cutoff(since, expected):
    cutoff = inspect_ops.since_cutoff(since, NOW)
    assert cutoff == expected
    assert cutoff.utcoffset() == dt.timedelta(0)


def test_since_counts_back_from_the_given_clock_whatever_its_zone():
    # the host's clock, handed over in another zone: "today" is still the UTC day
    tokyo = NOW.astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert inspect_ops.since_cutoff("today", tokyo) == dt.datetime(2026, 11, 30, tzinfo=UTC)
    assert inspect_ops.since_cutoff("1h", tokyo) == NOW - dt.timedelta(hours=1)


@pytest.mark.parametrize("since", ["15m", "1h", "2d", "2026-11-21 13:00", "today"])
def test_since_cutoff_takes_what_journalctl_is_given(since):
    inspect_ops.journal_since(since)
    inspect_ops.since_cutoff(since, NOW)


def test_a_duration_beyond_the_calendar_means_everything():
    assert inspect_ops.since_cutoff("99999999w", NOW) == dt.datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize("given", ["", "1 parsec", "-1h; reboot", "1h ago", "1y"])
def test_since_cutoff_refuses_what_journal_since_refuses(given):
    with pytest.raises(OpsError, match="use a duration like 15m"):
        inspect_ops.since_cutoff(given, NOW)


@pytest.mark.parametrize("given", ["2026-02-30", "2026-13-01 10:00", "2026-11-21 25:00"])
def test_a_date_that_does_not_exist_is_one_clear_error(given):
    with pytest.raises(OpsError, match=f"--since '{given}': no such date or time"):
        inspect_ops.since_cutoff(given, NOW)


# ------------------------------------------------------------------------------ stamps


# ------------------------------------------------------------------------- lines since

CUTOFF = dt.datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
LOG = """\
stage feed: started before the stamps
  and its second line
2026-11-30T07:59:59.999Z ERROR lowlat.runtime.pipeline: engine died
Traceback (most recent call last):
  File "pipeline.py", line 3, in run
RuntimeError: before the cutoff
2026-11-30T08:00:00.000Z INFO lowlat.runtime.pipeline: starting (at the cutoff)
2026-11-30T08:00:01.500Z INFO lowlat.runtime.pipeline: ready: all stages running
2026-11-30T07:59:58.000Z INFO lowlat.runtime.stage: late line from another process
  continuation of the late line
2026-11-30T08:10:00.000Z INFO lowlat.runtime.pipeline: stopped
stage    msgs/s   p99 us
feed     100000     1.20

2026-11-30T08:10:00.001Z INFO last line
"""


def test_lines_since_keeps_stamped_lines_at_or_after_the_cutoff_with_their_continuations():
    window = inspect_ops.lines_since(LOG, CUTOFF)
    assert window.lines == [
        "2026-11-30T08:00:00.000Z INFO lowlat.runtime.pipeline: starting (at the cutoff)",
        "2026-11-30T08:00:01.500Z INFO lowlat.runtime.pipeline: ready: all stages running",
        "2026-11-30T08:10:00.000Z INFO lowlat.runtime.pipeline: stopped",
        "stage    msgs/s   p99 us",
        "feed     100000     1.20",
        "",
        "2026-11-30T08:10:00.001Z INFO last line",
    ]
    assert window.first_stamp == dt.datetime(2026, 11, 30, 7, 59, 59, 999000, tzinfo=UTC)
    assert window.undated == 2


def test_lines_since_before_every_line_keeps_all_but_the_undated_head():
    window = inspect_ops.lines_since(LOG, dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert window.lines == LOG.splitlines()[2:]


def test_lines_since_after_every_line_keeps_none():
    assert inspect_ops.lines_since(LOG, CUTOFF + dt.timedelta(hours=1)).lines == []


def test_lines_since_a_log_without_stamps():
    window = inspect_ops.lines_since("one\ntwo\n", CUTOFF)
    assert window == inspect_ops.LogWindow([], None, 2)


# ------------------------------------------------------------------- status: last bench


def test_bench_line_from_last_json():
    doc = {"summary": "2026-11-22T01:00:00Z SLOs met", "report": "bench-results/x", "ok": True}
    assert inspect_ops.bench_line(doc) == "2026-11-22T01:00:00Z SLOs met (report: bench-results/x)"
    assert inspect_ops.bench_line({"finished_at": "2026-11-22T01:00:00Z"}) == (
        "2026-11-22T01:00:00Z"
    )
    assert inspect_ops.bench_line({}) == "no summary in the file"
    assert inspect_ops.bench_line(["not", "a", "dict"]) == "['not', 'a', 'dict']"


# ----------------------------------------------------------------- fab logs, end to end


@pytest.fixture
def host(ssh_server, tmp_path):
    h = make_host(tmp_path / "host", ssh_server.ssh_config, tmp_path / "wheelhouse")
    log_dir(h).mkdir(parents=True)
    yield h
    h.stop()


def log_dir(host) -> Path:
    """Where the units append their output (ami.units.LOG_DIR), under the host's root."""
    return host.root / "var/log/lowlat"


def test_logs_since_shows_the_lines_in_range_with_their_continuations(host):
    now = dt.datetime.now(UTC)
    (log_dir(host) / "engine.log").write_text(
        "engine output from before the stamps\n"
        f"{stamp(now - dt.timedelta(hours=3))} INFO three hours ago\n"
        "  continuation of three hours ago\n"
        f"{stamp(now - dt.timedelta(minutes=20))} ERROR twenty minutes ago\n"
        "Traceback (most recent call last):\n"
        "  [cores] engine = 7 is not a CPU this process may use\n"
        "RuntimeError: continuation of twenty minutes ago\n"
        f"{stamp(now - dt.timedelta(seconds=5))} INFO five seconds ago\n"
    )
    (log_dir(host) / "telemetry.log").write_text(
        "".join(f"unstamped telemetry line {i}\n" for i in range(1, 251))
    )
    result = host.fab("logs", "--host", LOOPBACK, "--since", "1h", timeout=120)
    out = output(result)
    assert result.returncode == 0, out
    # continuation lines verbatim, in place (and "[cores]" not taken for markup)
    assert "Traceback (most recent call last):\n  [cores] engine = 7 is not a CPU" in out
    assert "no lowlat-test-no-journalctl on this host" in out
    for shown in ("twenty minutes ago", "continuation of twenty minutes ago", "five seconds ago"):
        assert shown in out, (shown, out)
    for hidden in ("three hours ago", "before the stamps"):
        assert hidden not in out, (hidden, out)
    assert re.search(r"engine\.log since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(5 lines\)", out)
    assert "not shown" not in out  # the first stamp is before the cutoff: nothing in range lost
    # a file without stamps (a release from before them): its last 200 lines, as before
    assert "telemetry.log (last 200 lines: no time stamps)" in out
    assert "unstamped telemetry line 250" in out and "unstamped telemetry line 51\n" in out
    assert "unstamped telemetry line 50\n" not in out
    assert result.stdout.rstrip().endswith("logs: ok  logs since 1h")


def test_an_absolute_since_is_utc_whatever_the_operators_time_zone(host):
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    (log_dir(host) / "engine.log").write_text(
        f"{stamp(now - dt.timedelta(minutes=90))} INFO ninety minutes ago\n"
        f"{stamp(now - dt.timedelta(minutes=30))} INFO thirty minutes ago\n"
    )
    (log_dir(host) / "telemetry.log").write_text(
        f"from a release before the stamps\n{stamp(now - dt.timedelta(minutes=10))} INFO up\n"
    )
    since = f"{now - dt.timedelta(hours=1):%Y-%m-%d %H:%M}"
    # 14 hours east of UTC here: a cutoff read as local time would show both lines or none
    result = host.fab("logs", "--host", LOOPBACK, "--since", since, env={"TZ": "LLT-14"})
    out = output(result)
    assert result.returncode == 0, out
    assert "thirty minutes ago" in out and "ninety minutes ago" not in out, out
    assert f"engine.log since {since}:00 UTC (1 line)" in out
    # what came before the first stamp may be in the range: said, not shown
    assert "from a release before the stamps" not in out
    assert "telemetry.log: lines before " in out
    assert "not shown: the 1 earlier line(s) carry no time stamp" in out


def test_lines_in_range_beyond_the_fetch_cap_are_said_to_be_missing(host):
    now = dt.datetime.now(UTC)
    filler = "x" * 1000
    count = inspect_ops.LOG_FETCH_BYTES // 1000 + 200  # past the cap, every line in range
    with open(log_dir(host) / "engine.log", "w") as f:
        f.write(f"{stamp(now - dt.timedelta(minutes=10))} INFO the very first line\n")
        for i in range(count):
            f.write(f"{stamp(now - dt.timedelta(minutes=5))} INFO line {i} {filler}\n")
    result = host.fab("logs", "--host", LOOPBACK, "--since", "1h", timeout=300)
    out = output(result)
    assert result.returncode == 0, out[-3000:]
    assert "the very first line" not in out
    assert f"line {count - 1} x" in out
    assert (
        "lines before" in out and "not shown: only the last 4 MiB of the file were fetched" in out
    )


def test_a_since_date_that_does_not_exist_is_refused_before_connecting(host):
    result = run_fab("--config", str(host.config), "logs", "--host", "no-such-host.invalid",
                     "--since", "2026-02-30", timeout=60)  # fmt: skip
    out = output(result)
    assert result.returncode == 2, out
    assert out.strip().splitlines() == [
        "fab logs: --since '2026-02-30': no such date or time; use a duration like 15m, 1h or "
        '2d, or a time like "2026-11-21 13:00", "today"'
    ]
