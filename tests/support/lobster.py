"""The committed slice of LOBSTER's sample day, and small days imported from it."""

from __future__ import annotations

import gzip
from pathlib import Path

from service.research.lobster import import_lobster
from tests.support.paths import REPO

DATA = REPO / "tests" / "data" / "lobster"
MESSAGES = DATA / "GOOG_2012-06-21_34200000_57600000_message_10.csv.gz"
ORDERBOOK = DATA / "GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz"


def first_rows(path: Path, rows: int) -> list[bytes]:
    """The first ``rows`` lines of a gzipped slice file."""
    return gzip.decompress(path.read_bytes()).splitlines()[:rows]


def imported_day(directory: Path, rows: int, name: str = "day.lmd") -> Path:
    """Import the slice's first ``rows`` rows (checked against its orderbook) into
    ``directory / name``; the csv files keep LOBSTER's dated names."""
    for kind, source in (("message", MESSAGES), ("orderbook", ORDERBOOK)):
        (directory / f"GOOG_2012-06-21_{kind}.csv").write_bytes(
            b"\n".join(first_rows(source, rows)) + b"\n"
        )
    out = directory / name
    import_lobster(
        directory / "GOOG_2012-06-21_message.csv",
        out,
        orderbook=directory / "GOOG_2012-06-21_orderbook.csv",
    )
    return out
