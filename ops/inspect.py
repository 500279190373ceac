"""The read-only tasks: ``status``, ``logs`` and ``check-host``; none of them changes the host.

Light modules only (no numba, no service hot path): ``fab --list`` imports this.
"""

from __future__ import annotations

import json
import re
from typing import cast

from rich.markup import escape

from ami import units as ami_units
from contracts import release_layout as L
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
from ops.ui import console, say

LOG_FILES = ("engine", "telemetry")  # LOG_DIR/<name>.log, one per unit (ami/units.py)

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
SINCE_FORMS = 'use a duration like 15m, 1h or 2d, or a time like "2026-11-21 13:00", "today"'


def journal_since(since: str) -> str:
    """``--since`` as journalctl takes it: 15m -> "-15m"; a date or time as it is."""
    text = str(since).strip()
    if SINCE_DURATION.match(text):
        return "-" + text.replace(" ", "")
    if SINCE_TIME.match(text):
        return text
    raise OpsError(f"--since {since!r}: {SINCE_FORMS}")


# ---------------------------------------------------------------------------------- logs


def logs(conn: Connection, settings: Settings, since: str = "1h") -> HostResult:
    """The units' journal since ``since`` plus the tail of their log files."""
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
    # The units send their output to files (StandardOutput=append:, for the CloudWatch agent);
    # the lines carry no time stamps, so --since cannot apply to them: the last 200 lines.
    for name in LOG_FILES:
        path = settings.path(f"{LOG_DIR}/{name}.log")
        result = sudo(conn, settings, f"tail -n 200 {q(path)}")  # systemd made them (root)
        if result.ok:
            _print_block(conn, f"{path} (last 200 lines)", result.stdout)
            shown += 1
    if not shown:
        raise OpsError(f"no journal and no log files under {settings.path(LOG_DIR)}")
    return HostResult(True, f"logs since {since}")


def _print_block(conn: Connection, title: str, text: str) -> None:
    say(conn, f"--- {title}")
    for line in text.rstrip().splitlines():
        console.print(escape(line), highlight=False)


# ---------------------------------------------------------------------------- check-host


def check_host(conn: Connection, settings: Settings) -> HostResult:
    """The host's own ``trading-service check-host`` against its installed profile."""
    t = Target.of(conn, settings)
    if not run(conn, f"test -x {q(t.lay.current)}/venv/bin/trading-service").ok:
        raise OpsError(f"no release at {t.lay.current}: deploy one first (fab deploy)")
    result = run(conn, _check_host_command(settings, t.lay))
    _print_block(conn, "trading-service check-host", result.stdout + result.stderr)
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    if result.exited not in (0, 1):
        raise OpsError(f"check-host exited {result.exited}: {last}")
    return HostResult(result.exited == 0, last)
