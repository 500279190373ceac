"""The service's configuration: typed, validated, with an embedded default that runs anywhere.

A config file is TOML with the sections below; every key is optional and falls back to its
default. A key or value that is wrong raises :class:`ConfigError` with one line naming the
file, the key, the value and what is allowed; the CLI prints that line and exits 2.
``trading-service config`` prints the effective configuration as TOML, with each key's help.

The stage-to-core map defaults from the CPUs this process may use: the first is left for
housekeeping (the OS, the supervisor, the telemetry API) and the stages go on the others;
where fewer than three remain, stages share a core and are fused into one process, because two
busy-polling processes on one core would take turns instead of polling (``default_cores``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.stats_layout import MAX_INSTRUMENTS, STAGES

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ConfigError(ValueError):
    """A config value is wrong; the message is one line for a person."""


def _opt(default, help: str, *, min=None, max=None, choices=None, power_of_two=False):
    meta = {"help": help, "min": min, "max": max, "choices": choices, "pow2": power_of_two}
    return field(default=default, metadata=meta)


def default_cores() -> dict[str, int]:
    """One core per stage where there are enough; otherwise the engine and gateway share one
    (they exchange orders and fills), and with a single worker core all three share it."""
    cpus = sorted(os.sched_getaffinity(0))
    workers = cpus[1:] or cpus  # keep the first CPU for housekeeping when there is more than one
    if len(workers) >= 3:
        feed, engine, gateway = workers[:3]
    elif len(workers) == 2:
        feed, engine, gateway = workers[0], workers[1], workers[1]
    else:
        feed = engine = gateway = workers[0]
    return {"feed": feed, "engine": engine, "gateway": gateway}


@dataclass(frozen=True)
class ServiceConfig:
    shm_dir: str = _opt(
        "/dev/shm", "directory for shared-memory segments (a hugetlbfs mount on a tuned host)"
    )
    shm_prefix: str = _opt("lowlat", "name prefix of this instance's segments")
    stats_interval_us: int = _opt(
        500, "how often stages publish their counters, microseconds", min=10, max=1_000_000
    )
    ready_timeout_s: float = _opt(
        300.0, "longest warm-up (JIT compile) before giving up, seconds", min=1.0
    )
    drain_timeout_s: float = _opt(
        10.0, "longest drain on stop before stages are killed, seconds", min=0.1
    )


@dataclass(frozen=True)
class FeedConfig:
    source: str = _opt("simulator", "where market data comes from", choices=("simulator", "replay"))
    replay_file: str = _opt(
        "", 'recording to replay when source = "replay" (see `trading-service record`)'
    )
    rate: int = _opt(
        100_000,
        "offered messages per second; 0 publishes flat out with back-pressure",
        min=0,
        max=100_000_000,
    )
    instruments: int = _opt(8, "simulated instruments", min=1, max=MAX_INSTRUMENTS)
    seed: int = _opt(1, "simulator random seed", min=0)
    start_price_ticks: int = _opt(10_000, "simulator starting price, ticks", min=100)
    depth_levels: int = _opt(10, "simulated book levels per side", min=1, max=256)
    max_spread_ticks: int = _opt(3, "widest simulated spread, ticks", min=1, max=100)
    mean_queue_lots: int = _opt(50, "mean simulated level size, lots", min=1)
    trade_probability: float = _opt(0.05, "share of messages that are trades", min=0.0, max=0.5)
    move_probability: float = _opt(
        0.02, "chance per message that an instrument's price moves a tick", min=0.0, max=0.5
    )
    snapshot_interval: int = _opt(
        5000, "messages between two book snapshots (recovery after a gap)", min=100
    )
    burst_probability: float = _opt(
        0.001, "chance per message that a burst starts", min=0.0, max=0.1
    )
    burst_length: int = _opt(200, "messages in a burst", min=1)
    burst_speedup: float = _opt(10.0, "rate multiplier inside a burst", min=1.0, max=1000.0)


@dataclass(frozen=True)
class RingsConfig:
    md_capacity: int = _opt(
        65_536, "market-data ring records", min=64, max=1 << 24, power_of_two=True
    )
    order_capacity: int = _opt(4096, "order ring records", min=64, max=1 << 24, power_of_two=True)
    fill_capacity: int = _opt(4096, "fill ring records", min=64, max=1 << 24, power_of_two=True)


@dataclass(frozen=True)
class EngineConfig:
    book_window_ticks: int = _opt(
        4096, "price levels kept per side and instrument", min=64, max=1 << 20, power_of_two=True
    )
    ewma_alpha: float = _opt(
        0.05, "weight of the newest observation in the features' EWMAs", min=1e-6, max=1.0
    )
    model_file: str = _opt("", "model weights (TOML); empty uses the shipped default model")
    signal_threshold: float = _opt(0.15, "model score beyond which the strategy trades", min=0.0)
    order_qty: int = _opt(1, "lots per order", min=1)


@dataclass(frozen=True)
class RiskConfig:
    max_order_qty: int = _opt(100, "largest order, lots", min=1)
    max_notional: float = _opt(1_000_000.0, "largest order value, currency", min=0.0)
    price_band_ticks: int = _opt(50, "farthest an order price may be from mid, ticks", min=0)
    position_limit: int = _opt(
        1000, "largest absolute position per instrument incl. open orders, lots", min=0
    )
    orders_per_second: float = _opt(50_000.0, "sustained order rate (token bucket)", min=0.0)
    burst: float = _opt(500.0, "orders allowed at once above the sustained rate", min=1.0)
    tick_size: float = _opt(0.01, "currency value of one price tick", min=1e-12)


@dataclass(frozen=True)
class GatewayConfig:
    batch_size: int = _opt(16, "orders per batch sent to the exchange", min=1, max=1024)
    batch_timeout_us: int = _opt(
        20, "longest an order waits for its batch to fill, microseconds", min=0
    )
    fill_ratio: float = _opt(0.7, "share of orders the simulated exchange fills", min=0.0, max=1.0)


@dataclass(frozen=True)
class SloConfig:
    tick_to_order_p50_us: float = _opt(
        5.0, "tick-to-order median objective, microseconds", min=0.1, max=1e6
    )
    tick_to_order_p99_us: float = _opt(
        50.0, "tick-to-order 99th percentile objective, microseconds", min=0.1, max=1e6
    )
    tick_to_order_p999_us: float = _opt(
        500.0, "tick-to-order 99.9th percentile objective, microseconds", min=0.1, max=1e6
    )

    def thresholds_ns(self) -> tuple[int, ...]:
        """Every objective in nanoseconds: each is a bucket boundary of the exported histograms."""
        values = (self.tick_to_order_p50_us, self.tick_to_order_p99_us, self.tick_to_order_p999_us)
        return tuple(sorted({round(v * 1000) for v in values}))


@dataclass(frozen=True)
class TelemetryConfig:
    host: str = _opt("127.0.0.1", "address the telemetry API listens on")
    port: int = _opt(8000, "port of the telemetry API", min=1, max=65535)
    ready_heartbeat_s: float = _opt(
        1.0, "a stage whose heartbeat is older than this makes /ready say 503, seconds", min=0.01
    )
    sample_interval_s: float = _opt(
        1.0, "how often the API samples the engine for /latest rates, seconds", min=0.05, max=60.0
    )


def _cores_factory() -> dict[str, int]:
    return default_cores()


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    cores: dict[str, int] = field(default_factory=_cores_factory)
    feed: FeedConfig = field(default_factory=FeedConfig)
    rings: RingsConfig = field(default_factory=RingsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    source: str = "<embedded default>"

    def process_groups(self) -> list[tuple[int, tuple[str, ...]]]:
        """(core, stages) per process: stages that share a core are fused into one process."""
        groups: dict[int, list[str]] = {}
        for stage in STAGES:
            groups.setdefault(self.cores[stage], []).append(stage)
        return [(core, tuple(stages)) for core, stages in groups.items()]

    def segment_name(self, what: str) -> str:
        return f"{self.service.shm_prefix}.{what}"


_SECTION_TYPES = {
    "service": ServiceConfig,
    "feed": FeedConfig,
    "rings": RingsConfig,
    "engine": EngineConfig,
    "risk": RiskConfig,
    "gateway": GatewayConfig,
    "slo": SloConfig,
    "telemetry": TelemetryConfig,
}


def _allowed(f: dataclasses.Field) -> str:
    m = f.metadata
    if m["choices"]:
        return "one of " + ", ".join(f'"{c}"' for c in m["choices"])
    kind = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}[
        type(f.default)
    ]
    parts = [kind]
    if m["pow2"]:
        parts.append("a power of two")
    if m["min"] is not None and m["max"] is not None:
        parts.append(f"from {m['min']} to {m['max']}")
    elif m["min"] is not None:
        parts.append(f">= {m['min']}")
    return ", ".join(parts)


def _check_value(where: str, f: dataclasses.Field, value: Any) -> Any:
    m = f.metadata
    want = type(f.default)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if ok and want is int and not INT64_MIN <= value <= INT64_MAX:
        ok = False  # TOML integers are 64-bit; tomllib does not check
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value, ok = float(value), True
        except OverflowError:
            ok = False
    if ok and want is float and not math.isfinite(value):
        ok = False
    if ok and m["choices"] and value not in m["choices"]:
        ok = False
    if ok and m["min"] is not None and value < m["min"]:
        ok = False
    if ok and m["max"] is not None and value > m["max"]:
        ok = False
    if ok and m["pow2"] and value & (value - 1):
        ok = False
    if not ok:
        raise ConfigError(f"{where} = {value!r} is not allowed: use {_allowed(f)} ({m['help']})")
    return value


def _build_section(source: str, name: str, table: Any):
    cls = _SECTION_TYPES[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table of keys, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key [{name}] {key}; known keys: {', '.join(fields)}"
            )
        values[key] = _check_value(f"{source}: [{name}] {key}", fields[key], value)
    return cls(**values)


def _build_cores(source: str, table: Any) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [cores] must map stages to CPU numbers, got {table!r}")
    cores = default_cores()
    for key, value in table.items():
        if key not in STAGES:
            raise ConfigError(
                f"{source}: unknown key [cores] {key}; known keys: {', '.join(STAGES)}"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(
                f"{source}: [cores] {key} = {value!r} is not allowed: use a CPU number >= 0"
            )
        cores[key] = value
    return cores


def from_dict(data: dict, source: str = "<dict>") -> Config:
    """Validate a parsed TOML document into a Config."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name == "cores":
            sections["cores"] = _build_cores(source, table)
        elif name in _SECTION_TYPES:
            sections[name] = _build_section(source, name, table)
        else:
            known = ", ".join(["cores", *_SECTION_TYPES])
            raise ConfigError(f"{source}: unknown section [{name}]; known sections: {known}")
    config = Config(**sections, source=source)
    if config.feed.source == "replay" and not config.feed.replay_file:
        raise ConfigError(f'{source}: [feed] source = "replay" needs [feed] replay_file = "<path>"')
    return config


def load(path: str | os.PathLike | None) -> Config:
    """The config in ``path``, or the embedded default when ``path`` is None."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8 TOML"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, str(path))


def check_runtime(config: Config) -> None:
    """What a valid config still needs from this machine: its cores and its shm_dir."""
    check_cores(config)
    shm_dir = Path(config.service.shm_dir)
    if not shm_dir.is_dir():
        raise ConfigError(
            f"{config.source}: [service] shm_dir = {str(shm_dir)!r} is not a directory "
            "(use /dev/shm, or a mounted hugetlbfs)"
        )
    if not os.access(shm_dir, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{config.source}: [service] shm_dir = {str(shm_dir)!r} is not writable by this user"
        )


def check_cores(config: Config) -> None:
    """Every configured core must be one this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    for stage, core in config.cores.items():
        if core not in allowed:
            raise ConfigError(
                f"{config.source}: [cores] {stage} = {core} is not a CPU this process may use; "
                f"allowed: {', '.join(map(str, allowed))}"
            )


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def to_toml(config: Config) -> str:
    """The effective configuration as commented TOML (``trading-service config``)."""
    lines = [f"# lowlat trading-service configuration (from {config.source})", ""]
    lines += ["[cores]  # CPU per stage; stages on one CPU are fused into one process"]
    lines += [f"{stage} = {core}" for stage, core in config.cores.items()]
    for name in _SECTION_TYPES:
        lines += ["", f"[{name}]"]
        section = getattr(config, name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            rendered = _toml_value(value)
            lines.append(f"{f.name} = {rendered}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"
