"""The service's log line stamp: written by StampedFormatter, read back by parse_stamp."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from contracts.log_lines import STAMP_RE, StampedFormatter, parse_stamp

UTC = dt.UTC


def record(when: dt.datetime, message: str = "ready") -> logging.LogRecord:
    rec = logging.LogRecord("lowlat.test", logging.INFO, __file__, 1, message, None, None)
    rec.created, rec.msecs = when.timestamp(), when.microsecond // 1000  # no float rounding
    return rec


def test_a_line_starts_with_its_utc_time_to_the_millisecond():
    when = dt.datetime(2026, 11, 30, 8, 36, 6, 123000, tzinfo=dt.UTC)
    line = StampedFormatter().format(record(when))
    assert line == "2026-11-30T08:36:06.123Z INFO lowlat.test: ready"
    assert parse_stamp(line) == when


def test_continuation_lines_have_no_stamp():
    assert parse_stamp("Traceback (most recent call last):") is None
    assert parse_stamp("  2026-11-30T08:36:06.123Z indented") is None
    assert parse_stamp("2026-11-30 08:36:06 not ours") is None
    assert STAMP_RE.match("2026-11-30T08:36:06.123Z x")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-11-30T08:36:06.123Z INFO ready", dt.datetime(2026, 11, 30, 8, 36, 6, 123000, UTC)),
        ("2026-11-30T08:36:06.000Z", dt.datetime(2026, 11, 30, 8, 36, 6, tzinfo=UTC)),
        ("2026-11-30T08:36:06Z INFO no milliseconds", None),
        ("2026-11-30T08:36:06.123 INFO no Z", None),
        ("2026-11-30T08:36:06.123+00:00 INFO an offset, not Z", None),
        ("2026-11-30T08:36:06.123ZINFO no space", None),
        ("2026-13-30T08:36:06.123Z INFO no such month", None),
        ('  File "pipeline.py", line 3, in run', None),
        (" 2026-11-30T08:36:06.123Z INFO indented", None),
        ("", None),
    ],
)
def test_parse_stamp(line, expected):
    assert parse_stamp(line) == expected
