"""The service's log lines: one time stamp format, written by the service, read by ``fab logs``.

Every line the service logs starts with its time in UTC, ISO 8601 with milliseconds and a
``Z``, then a space: ``2026-11-30T08:36:06.123Z INFO lowlat.runtime.pipeline: ready``. On a
host those lines land in ``/var/log/lowlat/*.log`` (the units append their output there), so
``fab logs --since 15m`` can cut the files as it cuts the journal. A line that does not start
with a stamp (a traceback's continuation, the table a run prints when it stops) belongs to the
stamped line above it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import time

STAMP_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})Z(?= |$)")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StampedFormatter(logging.Formatter):
    """``LOG_FORMAT`` with ``asctime`` in UTC: ``2026-11-30T08:36:06.123Z``."""

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self.converter = time.gmtime


def setup(level: int = logging.INFO) -> None:
    """Send this process's log records to stderr, stamped; idempotent."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, StampedFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(StampedFormatter())
        root.addHandler(handler)
    root.setLevel(level)


def parse_stamp(line: str) -> dt.datetime | None:
    """The UTC time a log line starts with, or None for a continuation line."""
    match = STAMP_RE.match(line)
    if match is None:
        return None
    try:
        return dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=dt.UTC)
    except ValueError:  # the shape of a stamp but no such time (month 13): a plain line
        return None
