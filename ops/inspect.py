"""The read-only tasks: ``status``, ``logs`` and ``check-host``; none of them changes the host.

``logs --since`` reads two sources. The units' journal gets ``--since`` as journalctl takes it
(``journal_since``): a duration is relative to the host's clock, a date or time is in the
host's time zone (UTC on a stock AL2023 host). The units' log files (``StandardOutput=append:``,
shipped by the CloudWatch agent) carry an ISO-8601 UTC stamp at the start of each line
(``2026-11-30T08:36:06.123Z INFO ...``); a line without one (a traceback's continuation, the
table a run prints when it stops) belongs to the stamped line above it. ``since_cutoff`` turns
``--since`` into a UTC time against the host's clock and ``lines_since`` keeps the lines at or
after it. Only the last ``LOG_FETCH_BYTES`` of a file are fetched; when lines that may be in
the range were beyond them, the output says so. A file with no stamp at all (a release that
predates them) is shown as before: its last ``LOG_FILE_LINES`` lines.

Light modules only (no numba, no service hot path): ``fab --list`` imports this.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import cast

from rich.markup import escape

from ami import units as ami_units
from contracts import release_layout as L
from contracts.log_lines import parse_stamp
from contracts.profile import INSTALLED_PROFILE
from ops.bench_doc import CheckHostDoc, LastResult
from ops.hosts import Connection, HostResult, OpsError, Settings
from ops.remote import (
    LOG_DIR,
    Target,
    current_release,
    probe_ready,
    q,
    read_records,
    read_text,
    run,
    sudo,
    unit_states,
)
from ops.ui import console, say, warn

LOG_FILES = ("engine", "telemetry")  # LOG_DIR/<name>.log, one per unit (ami/units.py)
LOG_FETCH_BYTES = 4 * 1024 * 1024  # per file: what one `fab logs` pulls over SSH at most
LOG_FILE_LINES = 200  # of a file without time stamps

# ------------------------------------------------------------------------------ status


def _check_host_command(settings: Settings, lay: L.Layout, *extra: str) -> str:
    # /proc and /sys are the real ones ("/"); the profile is the one installed under root.
    return " ".join(
        [
            f"{q(lay.current)}/venv/bin/trading-service",
            "check-host",
            "--profile",
            q(settings.path(INSTALLED_PROFILE)),
            *extra,
        ]
    )


def status(conn: Connection, settings: Settings) -> HostResult:
    """Unit states, current release, /ready with reasons, check-host summary, last bench."""
    t = Target.of(conn, settings)
    settings = t.settings  # with the host's Python resolved (lowlat.python: auto)
    states = unit_states(conn, settings)
    for unit, state in states.items():
        say(conn, f"{unit}: {state}")
    current = current_release(conn, t.lay)
    records = [r for r in read_records(conn, t.lay) if r.release == current]
    since = ""
    if records:
        last = records[-1]
        since = f" (since {last.time}, {last.action} by {last.operator})"
    say(conn, f"release: {current or 'none'}{since}")
    code, reasons = probe_ready(conn, settings, t.profile)
    ready = code == 200
    say(conn, "ready: yes" if ready else f"ready: no ({code or '-'}): {'; '.join(reasons)}")
    tuning = _tuning(t) if current else "unknown"
    say(conn, f"tuning: {tuning}")
    last_bench = _last_bench(t)

    engine = states[ami_units.ENGINE_UNIT]
    summary = f"{current or 'no release'}, engine {engine}, " + ("ready" if ready else "NOT ready")
    details = {"units": states, "release": current, "ready": ready, "reasons": reasons,
               "tuning": tuning, "bench": last_bench}  # fmt: skip
    return HostResult(engine == "active" and ready, summary, details)


def _tuning(t: Target) -> str:
    """check-host's verdict in one line: counts, and the checks that failed."""
    result = run(t.conn, _check_host_command(t.settings, t.lay, "--json", "--irq-window", "0"))
    try:
        report: CheckHostDoc = json.loads(result.stdout)
        s = report["summary"]
        failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
        tuning = f"{s['passed']} passed, {s['failed']} failed, {s['not_applicable']} n/a"
    except (ValueError, KeyError, TypeError):
        return f"check-host gave no report (exit {result.exited})"
    if failed:
        tuning += f" (failed: {', '.join(failed)})"
    return tuning


def _last_bench(t: Target) -> object:
    """Say what ``fab bench`` left on the host; the document (None when there is none)."""
    text = read_text(t.conn, t.lay.bench_last)
    if text is None or not text.strip():
        say(t.conn, "last bench: none")
        return None
    try:
        doc: object = json.loads(text)
    except ValueError:
        say(t.conn, f"last bench: {t.lay.bench_last} is not JSON")
        return None
    say(t.conn, f"last bench: {bench_line(doc)}")
    return doc


def bench_line(doc: object) -> str:
    """One line from ``fab bench``'s last.json (``ops.bench_doc.LastResult``: its "summary"
    says when and the verdict per rate, "report" where the full report went)."""
    if not isinstance(doc, dict):
        return str(doc)[:200]
    last = cast("LastResult", doc)  # written by fab bench, perhaps an older one: read with .get
    line = str(last.get("summary") or last.get("finished_at") or "no summary in the file")
    if last.get("report"):
        line += f" (report: {last['report']})"
    return line


# -------------------------------------------------------------------------------- --since

SINCE_DURATION = re.compile(r"^(\d+)\s*(s|sec|m|min|h|d|w)$")
SINCE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?|today|yesterday|now)$")
SINCE_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_FORMS = 'use a duration like 15m, 1h or 2d, or a time like "2026-11-21 13:00", "today"'


def journal_since(since: str) -> str:
    """``--since`` as journalctl takes it: 15m -> "-15m"; a date or time as it is."""
    text = str(since).strip()
    if SINCE_DURATION.match(text):
        return "-" + text.replace(" ", "")
    if SINCE_TIME.match(text):
        return text
    raise OpsError(f"--since {since!r}: {SINCE_FORMS}")


def since_cutoff(since: str, now: dt.datetime) -> dt.datetime:
    """``--since`` as a UTC time: a duration back from ``now`` (the host's clock), a date or
    time read as UTC, ``today``/``yesterday`` as that UTC day's midnight. Accepts exactly what
    ``journal_since`` accepts, with its error; an OpsError too for a date that does not exist."""
    journal_since(since)
    text = str(since).strip()
    now = now.astimezone(dt.UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    duration = SINCE_DURATION.match(text)
    try:
        if duration:
            return now - dt.timedelta(seconds=int(duration[1]) * SINCE_UNIT_S[duration[2]])
        if text == "yesterday":
            return midnight - dt.timedelta(days=1)
    except OverflowError:  # further back than datetime goes: from the beginning
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    if text == "today":
        return midnight
    if text == "now":
        return now
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    except ValueError:
        raise OpsError(f"--since {since!r}: no such date or time; {SINCE_FORMS}") from None


# ------------------------------------------------------------------------------ log lines


@dataclass(frozen=True)
class LogWindow:
    """The lines of a log text at or after a cutoff (``lines_since``)."""

    lines: list[str]  # stamped lines at or after the cutoff, each with its continuation lines
    first_stamp: dt.datetime | None  # the text's first stamped line's; None: no stamp at all
    undated: int  # lines before the first stamp: their time is unknown, so they are left out


def lines_since(text: str, cutoff: dt.datetime) -> LogWindow:
    """The lines of ``text`` stamped at or after ``cutoff``, with the unstamped lines that
    follow each (a traceback, a table); lines before the first stamp are left out and counted."""
    kept: list[str] = []
    first: dt.datetime | None = None
    undated = 0
    keep = False
    for line in text.splitlines():
        when = parse_stamp(line)
        if when is not None:
            first = first or when
            keep = when >= cutoff  # each stamp on its own: processes sharing a file interleave
        elif first is None:
            undated += 1
        if keep:
            kept.append(line)
    return LogWindow(kept, first, undated)


# ---------------------------------------------------------------------------------- logs


def logs(conn: Connection, settings: Settings, since: str = "1h") -> HostResult:
    """The units' journal since ``since`` plus their log files' lines since then (UTC)."""
    since_arg = journal_since(since)
    shown = 0
    journal = run(conn, f"command -v {q(settings.journalctl.split()[0])}")
    if journal.ok:
        # privileged: a login user sees only its own journal unless it is in systemd-journal
        result = sudo(
            conn,
            settings,
            f"{settings.journalctl} -u {ami_units.ENGINE_UNIT} -u {ami_units.TELEMETRY_UNIT} "
            f"--since {q(since_arg)} --no-pager",
        )
        _print_block(conn, f"journal since {since}", result.stdout or result.stderr)
        shown += 1
    else:
        say(conn, f"no {settings.journalctl} on this host: showing the log files only")
    cutoff = since_cutoff(since, _host_now(conn))
    for name in LOG_FILES:
        shown += _log_file(conn, settings, settings.path(f"{LOG_DIR}/{name}.log"), cutoff)
    if not shown:
        raise OpsError(f"no journal and no log files under {settings.path(LOG_DIR)}")
    return HostResult(True, f"logs since {since}")


def _host_now(conn: Connection) -> dt.datetime:
    """The host's clock: a duration in --since counts back from it, as journalctl's does."""
    result = run(conn, "date -u +%s")
    seconds = result.stdout.strip()
    if result.ok and seconds.isdigit():
        return dt.datetime.fromtimestamp(int(seconds), dt.UTC)
    return dt.datetime.now(dt.UTC)


def _log_file(conn: Connection, settings: Settings, path: str, cutoff: dt.datetime) -> int:
    """Print the lines of the log file ``path`` since ``cutoff``; 1 if there is such a file."""
    # privileged: systemd made the files (root); the size says whether the tail is all of it
    result = sudo(conn, settings, f"stat -c %s {q(path)} && tail -c {LOG_FETCH_BYTES} {q(path)}")
    if not result.ok:
        return 0
    size, _, text = result.stdout.partition("\n")
    cut = int(size) > LOG_FETCH_BYTES if size.strip().isdigit() else False
    if cut:
        text = text.partition("\n")[2]  # the first line starts before the fetched bytes
    window = lines_since(text, cutoff)
    if window.first_stamp is None:
        tail = text.splitlines()[-LOG_FILE_LINES:]
        _print_block(conn, f"{path} (last {LOG_FILE_LINES} lines: no time stamps)", tail)
        return 1
    when = f"{cutoff:%Y-%m-%d %H:%M:%S} UTC"
    count = f"{len(window.lines)} line{'' if len(window.lines) == 1 else 's'}"
    _print_block(conn, f"{path} since {when} ({count})", window.lines)
    if window.first_stamp >= cutoff and (cut or window.undated):
        # what came before the first stamp may be in the range: say that it is not shown
        first = f"{window.first_stamp:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"
        if cut:
            why = f"only the last {LOG_FETCH_BYTES // 2**20} MiB of the file were fetched"
        else:
            why = f"the {window.undated} earlier line(s) carry no time stamp"
        warn(conn, escape(f"{path}: lines before {first} not shown: {why}"))
    return 1


def _print_block(conn: Connection, title: str, text: str | list[str]) -> None:
    say(conn, f"--- {title}")
    lines = text.rstrip().splitlines() if isinstance(text, str) else text
    for line in lines:
        console.print(escape(line), highlight=False)


# ---------------------------------------------------------------------------- check-host


def check_host(conn: Connection, settings: Settings) -> HostResult:
    """The host's own ``trading-service check-host`` against its installed profile."""
    t = Target.of(conn, settings)
    settings = t.settings  # with the host's Python resolved (lowlat.python: auto)
    if not run(conn, f"test -x {q(t.lay.current)}/venv/bin/trading-service").ok:
        raise OpsError(f"no release at {t.lay.current}: deploy one first (fab deploy)")
    result = run(conn, _check_host_command(settings, t.lay))
    _print_block(conn, "trading-service check-host", result.stdout + result.stderr)
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    if result.exited not in (0, 1):
        raise OpsError(f"check-host exited {result.exited}: {last}")
    return HostResult(result.exited == 0, last)
