"""Read a running engine's top of book, features, model score and positions from shared memory.

Starts nothing: it reads the engine that ``--config`` names (its [service] shm_dir and
shm_prefix) a few times, without disturbing it (``service.research.live``), and prints what it
saw. With no engine running it says so in one line and exits 1.

    trading-service run --config service.toml &
    python examples/live_reader.py --config service.toml --count 5 --interval 1 [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from contracts.documents import finite_or_none
from contracts.errors import LowlatError
from contracts.features import FEATURE_NAMES
from service.research.live import LiveMarket


def as_table(rows: np.ndarray) -> str:
    """One line per instrument: book, mid, features, score and position."""
    columns = ["instrument", "bid_px", "bid_qty", "ask_px", "ask_qty", "mid", *FEATURE_NAMES]
    columns += ["score", "position"]
    width = {name: max(len(name), 9) for name in columns}
    lines = ["  ".join(f"{name:>{width[name]}}" for name in columns)]
    for row in rows:
        cells = []
        for name in columns:
            value = row[name]
            if name == "mid":  # ticks, a half at most
                text = f"{value:.1f}"
            else:
                text = f"{value:.4g}" if isinstance(value, np.floating) else str(value)
            cells.append(f"{text:>{width[name]}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def as_document(rows: np.ndarray) -> dict:
    """One snapshot as JSON-ready data (NaN as null)."""
    names = [name for name in rows.dtype.names or () if name != "heartbeat_ns"]
    instruments = [{name: row[name].item() for name in names} for row in rows]
    heartbeat = int(rows["heartbeat_ns"][0]) if len(rows) else 0
    return finite_or_none({"heartbeat_ns": heartbeat, "instruments": instruments})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="the running engine's config file")
    parser.add_argument("--count", type=int, default=3, help="snapshots to take (default 3)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between them")
    parser.add_argument("--json", action="store_true", help="one JSON document per snapshot")
    args = parser.parse_args()
    try:
        with LiveMarket(args.config) as market:
            for i in range(args.count):
                if i:
                    time.sleep(args.interval)
                rows = market.snapshot()
                if args.json:
                    print(json.dumps(as_document(rows)), flush=True)
                    continue
                age_ms = (time.monotonic_ns() - int(rows["heartbeat_ns"][0])) / 1e6
                print(f"snapshot {i + 1}: {len(rows)} instruments, published {age_ms:.1f} ms ago")
                print(as_table(rows), flush=True)
    except LowlatError as exc:
        print(f"live_reader: {' '.join(str(exc).split())}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
