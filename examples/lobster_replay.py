"""Import a LOBSTER day, check it against its orderbook file, and replay it through the
engine at ten times its own pace.

    python examples/lobster_replay.py MESSAGE.csv ORDERBOOK.csv [--rows 5000]

With no files, the 20,000-row slice of LOBSTER's sample day under tests/data/lobster is used.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

from service.research.lobster import import_lobster

SLICE = Path(__file__).resolve().parents[1] / "tests" / "data" / "lobster"


def first_rows(path: Path, rows: int, out: Path) -> Path:
    """The first ``rows`` rows of a (gzipped) csv, as a plain file in ``out``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        lines = [next(f) for _ in range(rows)]
    target = out / path.name.removesuffix(".gz")
    target.write_bytes(b"".join(lines))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="?", type=Path)
    parser.add_argument("orderbook", nargs="?", type=Path)
    parser.add_argument("--rows", type=int, default=5000, help="rows of each file to use")
    parser.add_argument("--speed", default="10", help="replay pace, times the recorded one")
    args = parser.parse_args()
    messages = args.messages or SLICE / "GOOG_2012-06-21_34200000_57600000_message_10.csv.gz"
    orderbook = args.orderbook or SLICE / "GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        day = work / "day.lmd"
        report = import_lobster(
            first_rows(messages, args.rows, work),
            day,
            orderbook=first_rows(orderbook, args.rows, work),
        )
        print(
            f"imported {report.messages:,} messages: {report.mismatches} mismatches with the "
            f"orderbook file, {report.unknown_orders:,} events on orders older than the file"
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "run",
                "--replay",
                str(day),
                "--speed",
                args.speed,
            ],
            check=False,
        )
        raise SystemExit(report.mismatches > 0 or run.returncode)


if __name__ == "__main__":
    main()
