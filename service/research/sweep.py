"""Parameter sweeps of backtests over many days, in parallel on Dask distributed.

``grid`` expands ``--sweep key=v1,v2,...`` options (config keys as ``section.key``, the
latencies as ``latency.feed`` / ``latency.order``) into every combination, times every day;
each combination is checked on this machine before anything is sent to a worker, so a typo
fails at once with one line, not in a worker an hour later. ``run_sweep`` maps ``one_backtest``
over them on a Dask cluster: a ``LocalCluster`` of ``workers`` processes by default, or the
scheduler at ``scheduler`` (``tcp://host:8786``) for a real cluster, whose workers need this
package installed and the recordings at the same paths.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from service.config import Config, ConfigError, load
from service.research.backtest import Fees, Latency, parse_duration_ns, run_backtest
from service.runtime.recording import open_recording

LATENCY_KEYS = ("latency.feed", "latency.order")
KEPT = ("pnl", "max_drawdown", "sharpe", "orders", "trades", "fill_ratio", "fees", "events_per_s")


class SweepError(ConfigError):
    """A sweep that cannot run as written (one line)."""


def parse_sweep(options: Sequence[str]) -> dict[str, list[str]]:
    """['engine.signal_threshold=0.1,0.2', 'latency.order=0,1ms'] -> {key: [values]}."""
    dims: dict[str, list[str]] = {}
    for option in options:
        key, eq, values = option.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or "." not in key or not items or key in dims:
            raise SweepError(
                f"--sweep {option!r}: write section.key=v1,v2,... (e.g. "
                "engine.signal_threshold=0.1,0.2 or latency.order=0,50us), each key once"
            )
        dims[key] = items
    return dims


def _typed(config: Config, key: str, text: str):
    section_name, _, name = key.partition(".")
    section = getattr(config, section_name, None)
    if (
        section is None
        or not dataclasses.is_dataclass(section)
        or name not in {f.name for f in dataclasses.fields(section)}
    ):
        raise SweepError(f"--sweep {key}: no such config key; see `trading-service config`")
    kind = type(getattr(section, name))
    try:
        if kind is bool:
            return {"true": True, "false": False}[text.lower()]
        return kind(text)
    except (ValueError, KeyError):
        raise SweepError(f"--sweep {key}={text}: not a {kind.__name__}") from None


def apply(config: Config, overrides: dict[str, str]) -> tuple[Config, Latency]:
    """``config`` with ``overrides`` applied and validated, and the latency they name."""
    latency = Latency()
    for key, text in overrides.items():
        if key in LATENCY_KEYS:
            ns = parse_duration_ns(text, f"--sweep {key}")
            field = "feed_ns" if key == "latency.feed" else "order_ns"
            latency = dataclasses.replace(latency, **{field: ns})
            continue
        section_name, _, name = key.partition(".")
        value = _typed(config, key, text)
        section = dataclasses.replace(getattr(config, section_name), **{name: value})
        config = dataclasses.replace(config, **{section_name: section})
    return config, latency


def grid(dims: dict[str, list[str]], days: Sequence[Path]) -> list[tuple[str, dict[str, str]]]:
    """Every (day, {key: value}) combination."""
    keys = list(dims)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*dims.values())]
    return [(str(day), combo) for day in days for combo in combos]


def one_backtest(day: str, overrides: dict[str, str], config_path: str | None, fees: Fees) -> dict:
    """One cell of the sweep (runs on a worker): the backtest's headline figures."""
    config, latency = apply(load(Path(config_path) if config_path else None), overrides)
    result = run_backtest(open_recording(day), config, latency, fees=fees)
    return {"day": day, **overrides, **{k: result.stats[k] for k in KEPT}}


def run_sweep(
    tasks: list[tuple[str, dict[str, str]]],
    config_path: str | None,
    fees: Fees,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[list[dict], float]:
    """Run every task on Dask; returns the rows in task order and the wall time."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SweepError(
            "sweeps run on Dask distributed, which is not installed here: "
            "pip install 'lowlat[research]'"
        ) from None

    if scheduler:
        client = Client(scheduler, timeout="10s")
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,  # logging.ERROR: the workers' chatter is not the user's output
        )
        client = Client(cluster)
    try:
        started = time.perf_counter()
        futures = [
            client.submit(one_backtest, day, combo, config_path, fees, pure=False)
            for day, combo in tasks
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        rows: list[dict] = [{} for _ in futures]
        for future in as_completed(futures):
            rows[index[future.key]] = future.result()
            progress(1)
        return rows, time.perf_counter() - started
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def write_heatmap(rows: list[dict], dims: dict[str, list[str]], path: Path) -> None:
    """Mean P&L over the days for each combination: a heatmap of the first two keys (the
    others averaged), or bars for one key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(dims)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(keys) == 1:
        (key,) = keys
        means = [np.mean([r["pnl"] for r in rows if r[key] == v]) for v in dims[key]]
        ax.bar(dims[key], means, color=["#2e7d32" if m >= 0 else "#b03030" for m in means])
        ax.set_xlabel(key)
        ax.set_ylabel("mean P&L $")
    else:
        a, b = keys[:2]
        grid_values = np.array(
            [
                [np.mean([r["pnl"] for r in rows if r[a] == va and r[b] == vb]) for vb in dims[b]]
                for va in dims[a]
            ]
        )
        image = ax.imshow(grid_values, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(dims[b])), dims[b])
        ax.set_yticks(range(len(dims[a])), dims[a])
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        for i in range(len(dims[a])):
            for j in range(len(dims[b])):
                ax.text(j, i, f"{grid_values[i, j]:,.0f}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, label="mean P&L $")
    ax.set_title("Sweep: mean P&L over the days")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    tmp.replace(path)
