"""The research loop on a LOBSTER day: import, train the model, backtest it at several
latencies, and say where the report is.

    python examples/train_and_backtest.py [MESSAGE.csv ORDERBOOK.csv] [--out report/]

With no files, the 20,000-row slice of the sample day under tests/data/lobster.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from service.config import load
from service.research.backtest import Latency, run_backtest
from service.research.lobster import import_lobster
from service.research.report import write_report
from service.research.train import feature_rows, fit, future_moves, model_toml, write_model
from service.runtime.recording import open_recording

SLICE = Path(__file__).resolve().parents[1] / "tests" / "data" / "lobster"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="?", type=Path)
    parser.add_argument("orderbook", nargs="?", type=Path)
    parser.add_argument("--out", type=Path, default=Path("backtest-report"))
    parser.add_argument("--horizon-ms", type=float, default=500.0)
    args = parser.parse_args()
    messages = args.messages or SLICE / "GOOG_2012-06-21_34200000_57600000_message_10.csv.gz"
    orderbook = args.orderbook or SLICE / "GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz"
    args.out.mkdir(parents=True, exist_ok=True)

    day = args.out / "day.lmd"
    imported = import_lobster(messages, day, orderbook=orderbook)
    print(f"1. imported {imported.messages:,} messages, {imported.mismatches} mismatches")

    recording = open_recording(day)
    features, meta = feature_rows(recording, load(None))
    horizon_ns = int(args.horizon_ms * 1e6)
    fitted = fit(features, future_moves(meta, horizon_ns), "logistic", test_fraction=0.3)
    model = args.out / "model.toml"
    write_model(model, model_toml(fitted, day.name, horizon_ns))
    print(
        f"2. trained: out-of-sample accuracy {fitted.metrics['test_accuracy']:.1%} "
        f"(base rate {fitted.metrics['test_base_rate']:.1%})"
    )

    config_file = args.out / "trained.toml"
    config_file.write_text(f'[engine]\nmodel_file = "{model.resolve()}"\n')
    config = load(config_file)
    result = run_backtest(recording, config, Latency(feed_ns=20_000, order_ns=50_000))
    sensitivity = [
        (ns, run_backtest(recording, config, Latency(20_000, ns)).stats["pnl"])
        for ns in (0, 50_000, 500_000, 5_000_000)
    ]
    write_report(result, sensitivity, args.out, f"Backtest of {day.name} with its trained model")
    print(
        f"3. backtest: P&L ${result.stats['pnl']:,.2f}, {result.stats['orders']:,} orders; "
        f"open {args.out / 'summary.md'} and {args.out / 'equity.png'}"
    )


if __name__ == "__main__":
    main()
