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
import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from contracts import slo
from contracts.documents import toml_value
from contracts.errors import LowlatError
from contracts.network import Endpoint, parse_endpoint
from contracts.profile import parse_cpulist
from contracts.stages import STAGES, stage_cores
from contracts.stats_layout import MAX_INSTRUMENTS

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ConfigError(LowlatError, ValueError):
    """A config value is wrong; the message is one line for a person."""


def _opt(  # noqa: PLR0913 -- a key's whole schema, keyword-only
    default,
    help: str,
    *,
    min=None,
    max=None,
    below=None,
    choices=None,
    power_of_two=False,
    pattern=None,
):
    """A config key: its default, its help line and what values it allows (``below`` is an
    exclusive upper bound)."""
    meta = {
        "help": help,
        "min": min,
        "max": max,
        "below": below,
        "choices": choices,
        "pow2": power_of_two,
        "pattern": pattern,
    }
    return field(default=default, metadata=meta)


def default_cores() -> dict[str, int]:
    """The stages on the CPUs this process may use, the first kept for housekeeping when there
    is more than one (``contracts.stages.stage_cores``)."""
    cpus = sorted(os.sched_getaffinity(0))
    return stage_cores(cpus[1:] or cpus)


class _Section:
    """Checks every key of a section when it is made, from TOML or in code alike: a wrong value
    raises ConfigError naming ``[section] key``, the value and what is allowed."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            where = f"[{self.SECTION}] {f.name}"
            object.__setattr__(self, f.name, _check_value(where, f, getattr(self, f.name)))


@dataclass(frozen=True)
class ServiceConfig(_Section):
    SECTION: ClassVar[str] = "service"

    shm_dir: str = _opt(
        "/dev/shm", "directory for shared-memory segments (a hugetlbfs mount on a tuned host)"
    )
    shm_prefix: str = _opt(
        "lowlat",
        "name prefix of this instance's segments",
        pattern=(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", "1-64 letters, digits, - or _"),
    )
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
class FeedConfig(_Section):
    SECTION: ClassVar[str] = "feed"

    source: str = _opt(
        "simulator",
        "where market data comes from: the in-process simulator, a recording, or the exchange's "
        "UDP feed ([exchange] market_data)",
        choices=("simulator", "replay", "udp"),
    )
    replay_file: str = _opt(
        "", 'recording to replay when source = "replay" (see `trading-service record`)'
    )
    replay_pace: str = _opt(
        "rate",
        'replay timing: "rate" sends at [feed] rate (0: flat out); "recorded" keeps the '
        "recording's own gaps between messages, divided by replay_speed (version-2 "
        "recordings, e.g. imported LOBSTER days)",
        choices=("rate", "recorded"),
    )
    replay_speed: float = _opt(
        1.0, 'with replay_pace = "recorded": 10 replays ten times faster', min=1e-3, max=1e9
    )
    rate: int = _opt(
        100_000,
        "offered messages per second; 0 publishes flat out with back-pressure",
        min=0,
        max=100_000_000,
    )
    # The simulator's knobs: these bounds are the only ones (the simulator trusts them).
    instruments: int = _opt(8, "simulated instruments", min=1, max=MAX_INSTRUMENTS)
    seed: int = _opt(1, "simulator random seed", min=0)
    start_price_ticks: int = _opt(
        10_000,
        "simulator starting price, ticks (at least depth_levels: the deepest bid is >= 1 tick)",
        min=1,
        max=10**12,
    )
    depth_levels: int = _opt(10, "simulated book levels per side", min=1, max=256)
    max_spread_ticks: int = _opt(3, "widest simulated spread, ticks", min=1, max=1000)
    # queues stay below 4 * mean: far inside the records' int32 qty
    mean_queue_lots: int = _opt(50, "mean simulated level size, lots", min=1, max=10**8)
    trade_probability: float = _opt(
        0.05,
        "share of messages that are trades (with move_probability at most 1)",
        min=0.0,
        max=1.0,
    )
    move_probability: float = _opt(
        0.02, "chance per message that an instrument's price moves a tick", min=0.0, max=1.0
    )
    snapshot_interval: int = _opt(
        5000,
        "messages between two book snapshots (recovery after a gap); 0: only the first ones",
        min=0,
        max=2**62,
    )
    burst_probability: float = _opt(
        0.001, "chance per message that a burst starts", min=0.0, below=1.0
    )
    burst_length: int = _opt(200, "messages in a burst", min=1, max=10**9)
    burst_speedup: float = _opt(10.0, "rate multiplier inside a burst", min=1.0, max=1e6)

    def __post_init__(self) -> None:
        super().__post_init__()
        total = self.trade_probability + self.move_probability
        if total > 1.0:
            raise ConfigError(
                f"[feed] trade_probability + move_probability = {total!r} is not allowed: they "
                "are shares of one event draw and must sum to at most 1"
            )
        if self.start_price_ticks < self.depth_levels:
            raise ConfigError(
                f"[feed] start_price_ticks = {self.start_price_ticks} is not allowed: use at "
                f"least depth_levels = {self.depth_levels} (the deepest bid must be >= 1 tick)"
            )


@dataclass(frozen=True)
class RingsConfig(_Section):
    SECTION: ClassVar[str] = "rings"

    md_capacity: int = _opt(
        65_536, "market-data ring records", min=64, max=1 << 24, power_of_two=True
    )
    order_capacity: int = _opt(4096, "order ring records", min=64, max=1 << 24, power_of_two=True)
    fill_capacity: int = _opt(4096, "fill ring records", min=64, max=1 << 24, power_of_two=True)


@dataclass(frozen=True)
class EngineConfig(_Section):
    SECTION: ClassVar[str] = "engine"

    book_window_ticks: int = _opt(
        4096, "price levels kept per side and instrument", min=64, max=1 << 20, power_of_two=True
    )
    ewma_alpha: float = _opt(
        0.05, "weight of the newest observation in the features' EWMAs", min=1e-6, max=1.0
    )
    model_file: str = _opt("", "model weights (TOML); empty uses the shipped default model")
    signal_threshold: float = _opt(0.15, "model score beyond which the strategy trades", min=0.0)
    order_qty: int = _opt(1, "lots per order", min=1)
    order_style: str = _opt(
        "take",
        "take: immediate-or-cancel at the best opposite price; join: rest at the best price "
        "of the order's own side, behind the queue there, for up to order_ttl_us",
        choices=("take", "join"),
    )
    order_ttl_us: int = _opt(
        1000, "how long a joined order rests unfilled before it is cancelled, us", min=1
    )


@dataclass(frozen=True)
class OrderBookConfig(_Section):
    """The order-level book's fixed pools (research path: import, book, backtest). Smaller
    pools stay in cache: a LOBSTER day rests a few thousand orders at once."""

    SECTION: ClassVar[str] = "order_book"

    max_orders: int = _opt(
        1 << 16, "resting orders the order-level book holds, all instruments", min=16, max=1 << 28
    )
    max_levels: int = _opt(
        4096, "price levels per side and instrument in the order-level book", min=16, max=1 << 20
    )


@dataclass(frozen=True)
class RiskConfig(_Section):
    SECTION: ClassVar[str] = "risk"

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
class GatewayConfig(_Section):
    SECTION: ClassVar[str] = "gateway"

    batch_size: int = _opt(16, "orders per batch sent to the exchange", min=1, max=1024)
    batch_timeout_us: int = _opt(
        20, "longest an order waits for its batch to fill, microseconds", min=0
    )
    fill_ratio: float = _opt(0.7, "share of orders the simulated exchange fills", min=0.0, max=1.0)
    exchange: str = _opt(
        "simulated",
        'where orders go: "simulated", the gateway fills them itself (fill_ratio); "tcp", '
        "to the exchange at [exchange] orders (see `trading-service exchange`)",
        choices=("simulated", "tcp"),
    )
    open_orders: int = _opt(
        4096,
        "orders at the exchange not yet ended that the gateway tracks (tcp)",
        min=64,
        max=1 << 20,
        power_of_two=True,
    )
    heartbeat_ms: int = _opt(
        1000,
        "order-entry heartbeat when idle, ms; an exchange silent for three is gone (tcp)",
        min=10,
        max=60_000,
    )


_SESSION_PATTERN = (r"[ -~]{1,10}", "1 to 10 printable ASCII characters, e.g. LOWLAT0001")


@dataclass(frozen=True)
class ExchangeConfig(_Section):
    """Where the exchange is: the feed's UDP market data and TCP recovery, the gateway's TCP
    order entry. ``trading-service exchange`` serves the same addresses; the CDK app and the
    host firewall open exactly these."""

    SECTION: ClassVar[str] = "exchange"
    ENDPOINTS: ClassVar[tuple[str, ...]] = ("market_data", "recovery", "orders")

    market_data: str = _opt(
        "127.0.0.1:31001",
        "UDP market data, IP:port: a multicast group the feed joins, or a unicast address of "
        "this host the exchange sends to",
    )
    interface: str = _opt(
        "",
        "IP address of this host's interface that joins the multicast group; empty: the "
        "kernel's choice",
    )
    recovery: str = _opt("127.0.0.1:31002", "TCP recovery service (re-sends lost packets), IP:port")
    orders: str = _opt("127.0.0.1:31003", "TCP order entry, IP:port")
    session: str = _opt("LOWLAT0001", "market-data session name", pattern=_SESSION_PATTERN)
    gap_timeout_ms: int = _opt(
        50, "longest a gap waits for recovery before it is given up, ms", min=1, max=60_000
    )
    hold_packets: int = _opt(
        1024, "datagrams held behind a gap while it is recovered", min=1, max=65_536
    )
    reconnect_min_ms: int = _opt(
        10, "first wait before a TCP reconnect, ms (doubles after each failure)", min=1
    )
    reconnect_max_ms: int = _opt(500, "longest wait between TCP reconnects, ms", min=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.ENDPOINTS:
            try:
                parse_endpoint(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"[exchange] {name} = {exc}") from None
        if self.interface:
            try:
                ipaddress.ip_address(self.interface)
            except ValueError:
                raise ConfigError(
                    f"[exchange] interface = {self.interface!r} is not allowed: use this host's "
                    "IP address on the exchange's network, e.g. 10.0.1.10, or empty"
                ) from None
        if self.reconnect_max_ms < self.reconnect_min_ms:
            raise ConfigError(
                f"[exchange] reconnect_max_ms = {self.reconnect_max_ms} is not allowed: use at "
                f"least reconnect_min_ms = {self.reconnect_min_ms}"
            )

    def endpoint(self, name: str) -> Endpoint:
        """``market_data``, ``recovery`` or ``orders`` as an Endpoint."""
        return parse_endpoint(getattr(self, name))


@dataclass(frozen=True)
class SloConfig(_Section):
    SECTION: ClassVar[str] = "slo"

    tick_to_order_p50_us: float = _opt(
        *slo.TICK_TO_ORDER_OBJECTIVES_US["tick_to_order_p50_us"],
        min=slo.MIN_OBJECTIVE_US,
        max=slo.MAX_OBJECTIVE_US,
    )
    tick_to_order_p99_us: float = _opt(
        *slo.TICK_TO_ORDER_OBJECTIVES_US["tick_to_order_p99_us"],
        min=slo.MIN_OBJECTIVE_US,
        max=slo.MAX_OBJECTIVE_US,
    )
    tick_to_order_p999_us: float = _opt(
        *slo.TICK_TO_ORDER_OBJECTIVES_US["tick_to_order_p999_us"],
        min=slo.MIN_OBJECTIVE_US,
        max=slo.MAX_OBJECTIVE_US,
    )

    def thresholds_ns(self) -> tuple[int, ...]:
        """Every objective in nanoseconds: each is a bucket boundary of the exported histograms."""
        values = (self.tick_to_order_p50_us, self.tick_to_order_p99_us, self.tick_to_order_p999_us)
        return tuple(sorted({round(v * 1000) for v in values}))


@dataclass(frozen=True)
class TelemetryConfig(_Section):
    SECTION: ClassVar[str] = "telemetry"

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
    order_book: OrderBookConfig = field(default_factory=OrderBookConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
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
    "order_book": OrderBookConfig,
    "risk": RiskConfig,
    "gateway": GatewayConfig,
    "exchange": ExchangeConfig,
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
    if m["pattern"]:
        parts.append(m["pattern"][1])
    if m["pow2"]:
        parts.append("a power of two")
    if m["min"] is not None and m["max"] is not None:
        parts.append(f"from {m['min']} to {m['max']}")
    elif m["min"] is not None and m["below"] is not None:
        parts.append(f"from {m['min']} to below {m['below']}")
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
    if ok and m["below"] is not None and value >= m["below"]:
        ok = False
    if ok and m["pow2"] and value & (value - 1):
        ok = False
    if ok and m["pattern"] and not re.fullmatch(m["pattern"][0], value):
        ok = False
    if not ok:
        raise ConfigError(f"{where} = {value!r} is not allowed: use {_allowed(f)} ({m['help']})")
    return value


def _shown(key: str) -> str:
    """A key as the message shows it: bare when it is a plain name, quoted when not (a key
    with a newline must not break the one-line message)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)


def _build_section(source: str, name: str, table: Any):
    cls = _SECTION_TYPES[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table of keys, got {table!r}")
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in table:
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key [{name}] {_shown(key)}; known keys: {', '.join(fields)}"
            )
    try:
        return cls(**table)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _build_cores(source: str, table: Any) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [cores] must map stages to CPU numbers, got {table!r}")
    cores = default_cores()
    for key, value in table.items():
        if key not in STAGES:
            raise ConfigError(
                f"{source}: unknown key [cores] {_shown(key)}; known keys: {', '.join(STAGES)}"
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
            raise ConfigError(
                f"{source}: unknown section [{_shown(name)}]; known sections: {known}"
            )
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


ISOLATED_CPUS = Path("/sys/devices/system/cpu/isolated")  # isolcpus=, empty when none


def housekeeping_cpus(config: Config, isolated: Path = ISOLATED_CPUS) -> set[int]:
    """Where the supervisor of ``run`` and the telemetry API go: the CPUs this process may use
    that no stage is pinned to and the kernel does not isolate. The engine's unit allows every
    isolated CPU, and one no stage uses has no load balancing either; failing those, the CPUs
    free of stages, and failing that all of them (a machine with fewer CPUs than stages)."""
    allowed = os.sched_getaffinity(0)
    free = allowed - set(config.cores.values())
    try:
        kernel_isolated = set(parse_cpulist(isolated.read_text()))
    except (OSError, ValueError):
        kernel_isolated = set()
    return (free - kernel_isolated) or free or allowed


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
            rendered = toml_value(value)
            lines.append(f"{f.name} = {rendered}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"
