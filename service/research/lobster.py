"""LOBSTER market data in: message and orderbook files to a version-2 recording, verified.

LOBSTER (lobsterdata.com) writes one message file (time, type, order id, size, price,
direction per event) and one orderbook file (the top N levels after each message). The format
and what was measured on its free sample day are in ``docs/research.md``.

``import_lobster`` turns the messages into MARKET_EVENT records (historical times in ns, the
order ids, prices in ticks) and, when the orderbook file is given, checks every row with the
order-level book kernel (``service.kernels.order_book``): the book of the previous row plus
this message must give exactly this row on every level both can know. A level that enters the
visible depth from beyond it was never shown by the messages; it is taken from the row and
written as a LEVEL event flagged EVENT_RESYNC, so the recording rebuilds the file's book
exactly. A difference on a level the previous row showed is a mismatch.

Bad input stops the import with one ``LobsterError`` line naming ``file:line``; what can be
imported but is odd (executions of orders never seen, hidden executions, halts) is counted.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from contracts.errors import LowlatError
from contracts.records import (
    ASK,
    BID,
    EVENT_RESYNC,
    HALT,
    HIDDEN_EXECUTE,
    LEVEL,
    MARKET_EVENT,
    ORDER_ADD,
    ORDER_CANCEL,
    ORDER_DELETE,
    ORDER_EXECUTE,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
)
from service.config import OrderBookConfig
from service.kernels import order_book as ob_mod
from service.kernels.jit import kernel
from service.runtime.recording import open_recording, write_events

PRICE_UNITS = 10_000  # LOBSTER prices are dollars x 10000
EMPTY_ASK = 9_999_999_999  # how LOBSTER writes a missing level's price
EMPTY_BID = -9_999_999_999
TYPES = {1: ORDER_ADD, 2: ORDER_CANCEL, 3: ORDER_DELETE, 4: ORDER_EXECUTE, 5: HIDDEN_EXECUTE}
HALT_TYPE = 7
MESSAGE_COLUMNS = 6
_DATE = re.compile(r"_(\d{4})-(\d{2})-(\d{2})_")


class LobsterError(LowlatError, ValueError):
    """A LOBSTER file that cannot be imported: one line with file:line."""


@dataclass
class ImportReport:
    """What an import did, for the one-line summary and ``--json``."""

    messages: int
    events_written: int
    adds: int
    cancels: int
    deletes: int
    executions: int
    hidden_executions: int
    hidden_off_tick: int  # hidden executions between ticks, priced at the nearest tick
    halts: int
    unknown_orders: int  # cancels/deletes/executions of ids never seen (taken from anon)
    rows_verified: int = 0
    mismatches: int = 0
    resynced_levels: int = 0  # levels that entered the depth from beyond it, from the rows
    replay_top_n_agreement: float | None = None  # rows the book matched before any resync
    replay_top_1_agreement: float | None = None
    first_mismatch: str = ""
    levels: int = 0

    def to_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------ reading


def _open_text(path: Path):
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", newline="")
        return path.open("r", encoding="ascii", newline="")
    except FileNotFoundError:
        raise LobsterError(f"{path}: no such file; expected a LOBSTER csv") from None
    except IsADirectoryError:
        raise LobsterError(f"{path}: is a directory; expected a LOBSTER csv") from None
    except OSError as exc:
        raise LobsterError(f"{path}: cannot read: {exc.strerror}") from None


def _read_table(path: Path, columns: int | None, what: str) -> np.ndarray:
    """Every row of a headerless numeric csv as float64; a bad row raises file:line."""
    try:
        with _open_text(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": below
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError):
        _raise_first_bad_row(path, columns, what)
        raise LobsterError(f"{path}: not a LOBSTER {what} file (unreadable as csv)") from None
    if table.shape[0] == 0:
        raise LobsterError(f"{path}: holds no rows; a LOBSTER {what} file has one per event")
    if columns is not None and table.shape[1] != columns:
        raise LobsterError(
            f"{path}:1: {table.shape[1]} columns; a LOBSTER {what} file has {columns}"
        )
    if not np.isfinite(table).all():
        line = int(np.argmax(~np.isfinite(table).all(axis=1))) + 1
        raise LobsterError(f"{path}:{line}: a value is not a finite number")
    return table


def _raise_first_bad_row(path: Path, columns: int | None, what: str) -> None:
    """Find the row np.loadtxt stumbled on and say what is wrong with it."""
    try:
        with _open_text(path) as f:
            width = columns
            for line, row in enumerate(csv.reader(f), start=1):
                if width is None:
                    width = len(row)
                if len(row) != width:
                    raise LobsterError(
                        f"{path}:{line}: {len(row)} columns; a LOBSTER {what} row has {width}"
                    )
                for value in row:
                    try:
                        float(value)
                    except ValueError:
                        raise LobsterError(
                            f"{path}:{line}: {value[:40]!r} is not a number; a LOBSTER {what} "
                            "row holds numbers only"
                        ) from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise LobsterError(
            f"{path}: not a LOBSTER {what} csv ({type(exc).__name__}); expected ASCII text, "
            "optionally gzip-compressed"
        ) from None


def _whole(path: Path, values: np.ndarray, name: str) -> np.ndarray:
    integral = values == np.round(values)
    if not integral.all():
        line = int(np.argmax(~integral)) + 1
        raise LobsterError(f"{path}:{line}: {name} {values[line - 1]} is not a whole number")
    return values.astype(np.int64)


def read_messages(path: Path, units_per_tick: int) -> tuple[np.ndarray, int]:
    """The message file as MARKET_EVENT records (level_qty unknown, -1), and how many hidden
    executions were between ticks; raises LobsterError with file:line."""
    table = _read_table(path, MESSAGE_COLUMNS, "message")
    seconds, type_, order_id, size, price, direction = table.T
    line_of = np.arange(1, len(table) + 1)

    def bad(mask: np.ndarray, message: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            raise LobsterError(f"{path}:{line_of[i]}: " + message.format(row=table[i]))

    bad(seconds < 0, "time {row[0]} is negative; LOBSTER times are seconds after midnight")
    time_ns = np.round(seconds * 1e9).astype(np.int64)
    bad(
        np.diff(time_ns, prepend=time_ns[0]) < 0,
        "time {row[0]} is before the previous row's; a message file is in time order",
    )
    types = _whole(path, type_, "event type")
    bad(~np.isin(types, (1, 2, 3, 4, 5, 7)), "event type {row[1]:g} is unknown; types are 1-5, 7")
    ids, sizes = _whole(path, order_id, "order id"), _whole(path, size, "size")
    prices, sides = _whole(path, price, "price"), _whole(path, direction, "direction")
    book = types != HALT_TYPE
    bad(book & ~np.isin(sides, (-1, 1)), "direction {row[5]:g} is not -1 (sell) or 1 (buy)")
    bad(book & (sizes <= 0), "size {row[3]:g} is not > 0")
    bad(book & (prices <= 0), "price {row[4]:g} is not > 0")
    bad(ids < 0, "order id {row[2]:g} is negative")
    # Visible orders rest on the tick; a hidden execution may print between ticks (midpoint
    # orders): it is priced at the nearest tick and counted, the book never holds it.
    hidden = types == 5
    bad(
        book & ~hidden & (prices % units_per_tick != 0),
        f"price {{row[4]:g}} is not a multiple of the tick ({units_per_tick} LOBSTER units; "
        "set --tick)",
    )
    events = np.zeros(len(table), dtype=MARKET_EVENT)
    events["seq"] = line_of
    events["time_ns"] = time_ns
    events["order_id"] = ids
    events["kind"] = np.select(
        [types == t for t in TYPES] + [types == HALT_TYPE], [*TYPES.values(), HALT]
    )
    events["side"] = np.where(sides == 1, BID, ASK)
    events["price"] = np.where(book, (2 * prices + units_per_tick) // (2 * units_per_tick), 0)
    # a halt's "price" is LOBSTER's indicator (-1 halt, 0 quote resume, 1 trade resume)
    events["qty"] = np.where(book, sizes, prices)
    events["level_qty"] = -1
    return events, int((hidden & (prices % units_per_tick != 0)).sum())


def read_orderbook(path: Path, rows: int, units_per_tick: int) -> np.ndarray:
    """The orderbook file as int64 rows in ticks, a missing level as price -1, size 0."""
    table = _read_table(path, None, "orderbook")
    if table.shape[1] % 4:
        raise LobsterError(
            f"{path}:1: {table.shape[1]} columns; an orderbook row has 4 per level (ask "
            "price, ask size, bid price, bid size)"
        )
    if len(table) != rows:
        raise LobsterError(
            f"{path}: {len(table)} rows, the message file {rows}; LOBSTER writes one "
            "orderbook row per message"
        )
    book = _whole(path, table, "value")
    prices, sizes = book[:, 0::2], book[:, 1::2]
    empty = (prices == EMPTY_ASK) | (prices == EMPTY_BID)
    if (sizes < 0).any() or ((sizes == 0) & ~empty).any():
        line = int(np.argmax(((sizes < 0) | ((sizes == 0) & ~empty)).any(axis=1))) + 1
        raise LobsterError(f"{path}:{line}: a level has a size <= 0 at a real price")
    off_tick = ~empty & (prices % units_per_tick != 0)
    if off_tick.any():
        line = int(np.argmax(off_tick.any(axis=1))) + 1
        raise LobsterError(
            f"{path}:{line}: a price is not a multiple of the tick ({units_per_tick} LOBSTER "
            "units; set --tick)"
        )
    out = np.empty_like(book)
    out[:, 0::2] = np.where(empty, -1, prices // units_per_tick)
    out[:, 1::2] = np.where(empty, 0, sizes)
    return out


def session_date(path: Path) -> int:
    """YYYYMMDD from a LOBSTER file name (TICKER_YYYY-MM-DD_...), 0 when it has none."""
    m = _DATE.search(path.name)
    return int("".join(m.groups())) if m else 0


# ------------------------------------------------------------------------------ kernels


@kernel
def _side_diffs(ob, inst, side, prev, row, levels, diffs, n_diffs):  # noqa: PLR0913
    """Compare the book's ``side`` with ``row`` on every level the row shows; append each
    difference to ``diffs`` as (side, price, row size, allowed, sizes differ); returns the
    new count.

    A level is allowed to differ when the previous row did not show its price: the previous
    row had all ``levels`` levels on that side and the price lies beyond its deepest.
    """
    price_col = 0 if side == ASK else 2
    row_full = row[4 * (levels - 1) + price_col] >= 0
    deepest_row = row[4 * (levels - 1) + price_col]
    prev_full = prev[4 * (levels - 1) + price_col] >= 0
    deepest_prev = prev[4 * (levels - 1) + price_col]
    sign = 1 if side == ASK else -1  # "beyond" = worse = higher ask, lower bid
    # row levels: must match the book; one the previous row did not show is taken from the
    # row even when its size agrees, since its orders may have changed unseen meanwhile
    for k in range(levels):
        price = row[4 * k + price_col]
        if price < 0:
            break
        qty = row[4 * k + price_col + 1]
        have = ob_mod.ob_level_qty(ob, inst, side, price)
        hidden = prev_full and sign * (price - deepest_prev) > 0
        if have != qty or hidden:
            diffs[n_diffs, 0] = side
            diffs[n_diffs, 1] = price
            diffs[n_diffs, 2] = qty
            diffs[n_diffs, 3] = hidden
            diffs[n_diffs, 4] = have != qty
            n_diffs += 1
    # book levels the row says are not there (within the row's visible range)
    for k in range(ob.n_ranked[inst, side]):
        lv = ob_mod.ob_level_at(ob, inst, side, k)
        price = ob.l_price[lv]
        if row_full and sign * (price - deepest_row) > 0:
            break  # beyond what the row shows: unknown, kept
        listed = False
        for j in range(levels):
            if row[4 * j + price_col] == price:
                listed = True
                break
        if not listed:
            hidden = prev_full and sign * (price - deepest_prev) > 0
            diffs[n_diffs, 0] = side
            diffs[n_diffs, 1] = price
            diffs[n_diffs, 2] = 0
            diffs[n_diffs, 3] = hidden
            diffs[n_diffs, 4] = 1
            n_diffs += 1
    return n_diffs


@kernel
def _apply_noting_level(ob, events, i):
    """Apply ``events[i]`` and note in its ``level_qty`` the visible size it leaves at its
    price; returns the book's status."""
    status = ob_mod.ob_apply(ob, events, i)
    ev = events[i]
    if status == ob_mod.OK and ev["kind"] != HALT:
        events[i]["level_qty"] = ob_mod.ob_level_qty(
            ob, np.int64(ev["instrument"]), np.int64(ev["side"]), np.int64(ev["price"])
        )
    return status


@kernel
def verify_kernel(ob, events, rows, levels, resyncs, stats, diffs):  # noqa: PLR0913
    """Apply each message to the book of the previous row and compare with its row.

    ``rows[0]`` is the book before the first message (the caller derives it). For message i
    (events[i], row i + 1): differences go to ``resyncs`` as (event index, side, price,
    size, allowed), and the book is set to the row, so the next message starts from the
    row's book. ``events[i].level_qty`` is set to the visible size at its price after it.
    stats: [0] rows with a mismatch, [1] resync levels, [2] rows whose top-N differed before
    the resync, [3] rows whose best levels differed, [4] the first mismatching event or -1,
    [5] a refused event's index or -1, [6] its status. ``diffs`` is scratch of at least
    (4 * levels, 5). Returns the number of resyncs, or -1 when ``resyncs`` is full.
    """
    n = 0
    stats[4] = -1
    stats[5] = -1
    inst = 0
    for i in range(events.shape[0]):
        status = _apply_noting_level(ob, events, i)
        if status != ob_mod.OK:
            stats[5] = i
            stats[6] = status
            return n
        prev = rows[i]
        row = rows[i + 1]
        m = _side_diffs(ob, inst, ASK, prev, row, levels, diffs, 0)
        m = _side_diffs(ob, inst, BID, prev, row, levels, diffs, m)
        if m == 0:
            continue
        differs = False
        best_differs = False
        mismatch = False
        for d in range(m):
            side = diffs[d, 0]
            if diffs[d, 4]:
                differs = True
                best = (
                    ob.n_ranked[inst, side] == 0
                    or ob.l_price[ob_mod.ob_level_at(ob, inst, side, 0)]
                )
                if best == diffs[d, 1] or diffs[d, 1] == row[0 if side == ASK else 2]:
                    best_differs = True
                if diffs[d, 3] == 0:
                    mismatch = True
            if n == resyncs.shape[0]:
                return -1
            resyncs[n, 0] = i
            resyncs[n, 1] = side
            resyncs[n, 2] = diffs[d, 1]
            resyncs[n, 3] = diffs[d, 2]
            resyncs[n, 4] = diffs[d, 3]
            n += 1
            ob_mod.ob_set_level(ob, inst, side, diffs[d, 1], diffs[d, 2])
        stats[1] += m
        stats[2] += differs
        stats[3] += best_differs
        if mismatch:
            stats[0] += 1
            if stats[4] < 0:
                stats[4] = i
    return n


# ------------------------------------------------------------------------------ import


def _before_first(row: np.ndarray, first: np.void) -> np.ndarray:
    """The book before the first message: its row with the message undone, level-aggregated."""
    before = row.copy()
    kind = int(first["kind"])
    if kind not in (ORDER_ADD, ORDER_CANCEL, ORDER_DELETE, ORDER_EXECUTE):
        return before
    side, price, qty = int(first["side"]), int(first["price"]), int(first["qty"])
    delta = -qty if kind == ORDER_ADD else qty
    col = 0 if side == ASK else 2
    levels = len(row) // 4
    prices = [int(row[4 * k + col]) for k in range(levels) if row[4 * k + col] >= 0]
    sizes = {p: int(row[4 * k + col + 1]) for k, p in enumerate(prices)}
    sizes[price] = sizes.get(price, 0) + delta
    ranked = sorted((p for p, q in sizes.items() if q > 0), reverse=side == BID)
    for k in range(levels):
        before[4 * k + col] = ranked[k] if k < len(ranked) else -1
        before[4 * k + col + 1] = sizes[ranked[k]] if k < len(ranked) else 0
    return before


def _snapshot_events(row: np.ndarray, time_ns: int) -> np.ndarray:
    """SNAPSHOT_BEGIN, a LEVEL per level of ``row``, SNAPSHOT_END."""
    levels = len(row) // 4
    out = []
    for k in range(levels):
        for side, col in ((ASK, 0), (BID, 2)):
            if row[4 * k + col] >= 0:
                out.append((side, row[4 * k + col], row[4 * k + col + 1]))
    events = np.zeros(len(out) + 2, dtype=MARKET_EVENT)
    events["kind"][0], events["kind"][-1] = SNAPSHOT_BEGIN, SNAPSHOT_END
    for j, (side, price, qty) in enumerate(out, start=1):
        events[j]["kind"] = LEVEL
        events[j]["side"] = side
        events[j]["price"] = price
        events[j]["qty"] = qty
        events[j]["level_qty"] = qty
    events["time_ns"] = time_ns
    return events


def import_lobster(
    messages: Path,
    out: Path,
    *,
    orderbook: Path | None = None,
    tick: float = 0.01,
    max_orders: int = OrderBookConfig.max_orders,
    max_levels: int = OrderBookConfig.max_levels,
) -> ImportReport:
    """Import ``messages`` (and check against ``orderbook``) into the recording ``out``."""
    units_per_tick = round(tick * PRICE_UNITS)
    if units_per_tick < 1 or abs(units_per_tick - tick * PRICE_UNITS) > 1e-6:
        raise LobsterError(
            f"--tick {tick}: must be a positive multiple of LOBSTER's price unit, $0.0001"
        )
    events, n_off_tick = read_messages(messages, units_per_tick)
    kinds = events["kind"]
    report = ImportReport(
        messages=len(events),
        events_written=0,
        adds=int((kinds == ORDER_ADD).sum()),
        cancels=int((kinds == ORDER_CANCEL).sum()),
        deletes=int((kinds == ORDER_DELETE).sum()),
        executions=int((kinds == ORDER_EXECUTE).sum()),
        hidden_executions=int((kinds == HIDDEN_EXECUTE).sum()),
        hidden_off_tick=int(n_off_tick),
        halts=int((kinds == HALT).sum()),
        unknown_orders=0,
    )
    if orderbook is not None:
        rows = read_orderbook(orderbook, len(events), units_per_tick)
        levels = rows.shape[1] // 4
        report.levels = levels
        seed = _before_first(rows[0], events[0])
        all_rows = np.vstack([seed[None, :], rows])
        head = _snapshot_events(seed, int(events[0]["time_ns"]))
        capacity = max(1024, len(events) // 2)
        while True:
            trial = ob_mod.new_order_book(1, max_orders, max_levels)
            ob_mod.ob_replay(trial, head, 0, 1, np.zeros((1, 4), np.int64), np.full(len(head), -1))
            resyncs = np.zeros((capacity, 5), np.int64)
            stats = np.zeros(8, np.int64)
            diffs = np.zeros((4 * levels, 5), np.int64)
            n = verify_kernel(trial, events, all_rows, levels, resyncs, stats, diffs)
            if n >= 0:
                break
            capacity *= 4
        book = trial
        _raise_refused(messages, events, stats, max_orders, max_levels)
        resyncs = resyncs[:n]
        report.rows_verified = len(events)
        report.mismatches = int(stats[0])
        report.resynced_levels = int(n)
        report.replay_top_n_agreement = 1.0 - stats[2] / len(events)
        report.replay_top_1_agreement = 1.0 - stats[3] / len(events)
        if stats[4] >= 0:
            report.first_mismatch = _describe_mismatch(
                orderbook, int(stats[4]), resyncs, units_per_tick
            )
        written = _with_resyncs(head, events, resyncs)
    else:  # no rows to check against: the book the messages alone build
        book = ob_mod.new_order_book(1, max_orders, max_levels)
        stats = np.full(8, -1, np.int64)
        _messages_only_kernel(book, events, stats)
        _raise_refused(messages, events, stats, max_orders, max_levels)
        written = events
    report.unknown_orders = int(book.counters[ob_mod.C_UNKNOWN_ORDER])
    written["seq"] = np.arange(1, len(written) + 1)
    write_events(
        out,
        written,
        1,
        tick_nano=units_per_tick * 100_000,
        session_date=session_date(messages),
    )
    report.events_written = len(written)
    return report


@kernel
def _messages_only_kernel(ob, events, stats):
    """Apply every event, noting level_qty; stats[5], stats[6]: a refused event and its
    status (left as they are when all applied)."""
    for i in range(events.shape[0]):
        status = _apply_noting_level(ob, events, i)
        if status != ob_mod.OK:
            stats[5] = i
            stats[6] = status
            return


def _raise_refused(
    path: Path, events: np.ndarray, stats: np.ndarray, max_orders: int, max_levels: int
) -> None:
    if stats[5] < 0:
        return
    i = int(stats[5])
    raise LobsterError(
        f"{path}:{int(events[i]['seq'])}: cannot apply order {int(events[i]['order_id'])}: "
        + ob_mod.refusal_text(int(stats[6]), max_orders, max_levels, "--max-orders", "--max-levels")
    )


def _describe_mismatch(
    orderbook: Path, event: int, resyncs: np.ndarray, units_per_tick: int
) -> str:
    for r in resyncs:
        if r[0] == event and r[4] == 0:
            side = "ask" if r[1] == ASK else "bid"
            price = r[2] * units_per_tick / PRICE_UNITS
            return (
                f"{orderbook}:{event + 1}: {side} level {price:.4f}: the orderbook row has "
                f"size {r[3]}, the previous row plus this message give another"
            )
    return f"{orderbook}:{event + 1}: mismatch"


def _with_resyncs(head: np.ndarray, events: np.ndarray, resyncs: np.ndarray) -> np.ndarray:
    """The snapshot, then each message followed by the levels its row added (EVENT_RESYNC)."""
    extra = np.zeros(len(resyncs), dtype=MARKET_EVENT)
    at = resyncs[:, 0]
    extra["kind"] = LEVEL
    extra["flags"] = EVENT_RESYNC
    extra["side"] = resyncs[:, 1]
    extra["price"] = resyncs[:, 2]
    extra["qty"] = resyncs[:, 3]
    extra["level_qty"] = resyncs[:, 3]
    extra["time_ns"] = events["time_ns"][at]
    merged = np.insert(events, at + 1, extra)
    return np.concatenate([head, merged])


# ------------------------------------------------------------------------------ book out


def book_rows(
    path: Path,
    levels: int,
    max_orders: int = OrderBookConfig.max_orders,
    max_levels: int = OrderBookConfig.max_levels,
) -> tuple[np.ndarray, int]:
    """The top ``levels`` after every message of a recording, in LOBSTER's orderbook order
    and units (a missing level as LOBSTER writes it); returns (rows, units per tick)."""
    recording = open_recording(path)
    if recording.events is None:
        raise LobsterError(
            f"{path}: a version-1 recording holds L2 levels, not order events; "
            "`book` needs an imported (version-2) recording"
        )
    events = np.ascontiguousarray(recording.events)
    kinds = events["kind"]
    resync = (kinds == LEVEL) & ((events["flags"] & EVENT_RESYNC) != 0)
    snapshot = np.zeros(len(events), dtype=bool)
    ends = np.flatnonzero(kinds == SNAPSHOT_END)
    if len(ends) and kinds[0] == SNAPSHOT_BEGIN:
        snapshot[: ends[0] + 1] = True
    message = ~resync & ~snapshot
    # a message and the resync levels after it share the message's row
    row_of = np.cumsum(message) - 1
    row_of[snapshot] = -1
    rows = np.zeros((int(message.sum()), 4 * levels), np.int64)
    book = ob_mod.new_order_book(recording.n_instruments, max_orders, max_levels)
    failed = ob_mod.ob_replay(book, events, 0, levels, rows, row_of)
    if failed >= 0:
        status = ob_mod.ob_apply(book, events, failed)
        why = ob_mod.refusal_text(status, max_orders, max_levels, "--max-orders", "--max-levels")
        raise LobsterError(f"{path}: event {failed + 1} cannot be applied to the book: {why}")
    units = recording.tick_nano // 100_000 if recording.tick_nano else 1
    prices = rows[:, 0::2]
    ask_cols = np.zeros(prices.shape[1], dtype=bool)
    ask_cols[0::2] = True
    empty = prices < 0
    rows[:, 0::2] = np.where(empty, np.where(ask_cols, EMPTY_ASK, EMPTY_BID), prices * units)
    return rows, units
