"""LOBSTER import on the committed slice of the sample day: verified, rebuilt exactly,
recorded as version 2; bad files refused with file:line."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from contracts.records import HIDDEN_EXECUTE, LEVEL, MARKET_EVENT, ORDER_EXECUTE, TRADE
from service.research.lobster import LobsterError, book_rows, import_lobster
from service.runtime.recording import EVENTS_VERSION, open_recording
from tests.support.lobster import MESSAGES, ORDERBOOK
from tests.support.paths import REPO

ROWS = 20_000


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("lobster") / "goog.lmd"
    return out, import_lobster(MESSAGES, out, orderbook=ORDERBOOK)


def test_the_slice_verifies_with_no_mismatch(imported):
    _, report = imported
    assert (report.rows_verified, report.mismatches, report.levels) == (ROWS, 0, 10)
    assert report.messages == ROWS
    assert report.adds + report.cancels + report.deletes + report.executions == (
        ROWS - report.hidden_executions - report.halts
    )
    assert report.unknown_orders > 0  # the file starts with a full book of unseen orders
    assert 0.9 < report.replay_top_n_agreement < 1.0  # a pure replay is not exact


def test_the_book_rebuilt_from_the_recording_is_the_orderbook_file(imported):
    out, _ = imported
    rows, units = book_rows(out, 10)
    expected = np.loadtxt(ORDERBOOK, delimiter=",", dtype=np.int64)
    assert units == 100  # $0.01 ticks in LOBSTER's $0.0001 units
    assert rows.shape == expected.shape
    assert np.array_equal(rows, expected)


def test_the_recording_keeps_time_order_ids_and_replays_as_levels_and_trades(imported):
    out, _ = imported
    rec = open_recording(out)
    assert rec.version == EVENTS_VERSION and rec.events.dtype == MARKET_EVENT
    assert rec.session_date == 20120621 and rec.tick_nano == 10_000_000
    first = rec.events[rec.events["kind"] == ORDER_EXECUTE][0]
    assert (first["time_ns"], first["order_id"], first["price"]) == (
        34200015105074,
        15818974,
        57940,
    )
    assert (np.diff(rec.events["time_ns"]) >= 0).all()
    kinds = rec.events["kind"]
    trades = int(((kinds == ORDER_EXECUTE) | (kinds == HIDDEN_EXECUTE)).sum())
    assert int((rec.records["kind"] == TRADE).sum()) == trades
    assert (rec.records["kind"] == LEVEL).sum() > ROWS * 0.9
    assert (rec.records["seq"] == np.arange(1, len(rec.records) + 1)).all()


def test_a_changed_orderbook_row_is_a_mismatch_and_verify_exits_1(tmp_path):
    lines = gzip.decompress(ORDERBOOK.read_bytes()).decode().splitlines()[:3000]
    messages = gzip.decompress(MESSAGES.read_bytes()).decode().splitlines()[:3000]
    row = lines[1999].split(",")
    row[1] = str(int(row[1]) + 7)  # best ask size at line 2000
    lines[1999] = ",".join(row)
    (tmp_path / "m.csv").write_text("\n".join(messages) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "import",
            "lobster",
            str(tmp_path / "m.csv"),
            "--orderbook",
            str(tmp_path / "b.csv"),
            "--out",
            str(tmp_path / "d.lmd"),
            "--verify",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    # row 2000 is not row 1999 plus its message, nor is row 2001 row 2000 plus its message
    assert "verified 3000 rows, 2 mismatches" in result.stdout
    assert f"{tmp_path / 'b.csv'}:2000: ask level" in result.stdout


MESSAGE_ROW = "34200.1,1,11,100,5794000,1"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([MESSAGE_ROW, "34200.2,1,12,100,abc,1"], "m.csv:2: 'abc' is not a number"),
        ([MESSAGE_ROW, "34200.2,1,12,100"], "m.csv:2: 4 columns; a LOBSTER message row has 6"),
        ([MESSAGE_ROW, "34200.0,1,12,100,5794000,1"], "m.csv:2: time 34200.0 is before the prev"),
        ([MESSAGE_ROW, "34200.2,6,12,100,5794000,1"], "m.csv:2: event type 6 is unknown"),
        ([MESSAGE_ROW, "34200.2,1,12,100,5794050,1"], "m.csv:2: price 5.79405e+06 is not a mult"),
        ([MESSAGE_ROW, "34200.2,1,12,0,5794000,1"], "m.csv:2: size 0 is not > 0"),
        ([MESSAGE_ROW, "34200.2,1,12,100,5794000,0"], "m.csv:2: direction 0 is not -1"),
        ([MESSAGE_ROW, "34200.2,1,12.5,100,5794000,1"], "m.csv:2: order id 12.5 is not a whole"),
        ([], "m.csv: holds no rows"),
    ],
)
def test_bad_message_rows_are_refused_with_file_and_line(tmp_path, rows, expected):
    (tmp_path / "m.csv").write_text("".join(r + "\n" for r in rows))
    with pytest.raises(LobsterError) as caught:
        import_lobster(tmp_path / "m.csv", tmp_path / "out.lmd")
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.lmd").exists()


def test_odd_but_importable_events_are_counted(tmp_path):
    rows = [
        MESSAGE_ROW,
        "34200.2,4,999,30,5795000,-1",  # execution of an order never seen
        "34200.3,5,0,10,5794550,1",  # hidden execution between ticks
        "34200.4,7,0,0,-1,-1",  # trading halt
        "34200.5,2,11,40,5794000,1",
    ]
    (tmp_path / "m.csv").write_text("".join(r + "\n" for r in rows))
    report = import_lobster(tmp_path / "m.csv", tmp_path / "out.lmd")
    assert (report.unknown_orders, report.hidden_executions, report.hidden_off_tick) == (1, 1, 1)
    assert report.halts == 1
    events = open_recording(tmp_path / "out.lmd").events
    assert events["level_qty"][-1] == 60  # 100 added, 40 cancelled


def test_an_orderbook_of_another_length_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text(MESSAGE_ROW + "\n" + MESSAGE_ROW.replace(",11,", ",12,") + "\n")
    (tmp_path / "b.csv").write_text("5795000,100,5794000,100\n")
    with pytest.raises(LobsterError, match=r"b\.csv: 1 rows, the message file 2"):
        import_lobster(tmp_path / "m.csv", tmp_path / "o.lmd", orderbook=tmp_path / "b.csv")


def test_the_cli_refuses_in_one_line(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, cwd=REPO
        )

    missing = run("import", "lobster", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("none.csv: no such file; expected a LOBSTER csv")
    verify = run("import", "lobster", str(MESSAGES), "--out", str(tmp_path / "o"), "--verify")
    assert verify.returncode == 2 and "--verify needs --orderbook" in verify.stderr
    v1 = tmp_path / "v1.lmd"
    assert run("record", "--out", str(v1), "--messages", "100").returncode == 0
    book = run("book", "--data", str(v1), "--csv", str(tmp_path / "b.csv"))
    assert book.returncode == 2 and "needs an imported (version-2) recording" in book.stderr
    out = tmp_path / "small.lmd"  # the slice rests more than 16 orders at once
    small = run("import", "lobster", str(MESSAGES), "--out", str(out), "--max-orders", "16")
    assert small.returncode == 2 and not out.exists()
    assert "the order pool is full (16 resting orders): raise --max-orders" in small.stderr
    assert ":" in small.stderr.split(" cannot apply")[0]  # file:line of the refused message
    for result in (missing, verify, book, small):
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
