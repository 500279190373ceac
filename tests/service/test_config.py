"""Configuration: the embedded default, the core map, and one clear line for every mistake."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib

import pytest

from contracts.stages import STAGES
from contracts.stats_layout import MAX_INSTRUMENTS
from service.config import (
    Config,
    ConfigError,
    FeedConfig,
    check_cores,
    default_cores,
    from_dict,
    housekeeping_cpus,
    load,
    to_toml,
)

SOURCE = "/etc/lowlat/test.toml"


# --------------------------------------------------------------------------- defaults


def test_embedded_default_loads_and_is_valid():
    config = load(None)
    assert config == Config()
    assert config.source == "<embedded default>"
    assert set(config.cores) == set(STAGES)
    assert config.feed.source == "simulator"
    for capacity in (config.rings.md_capacity, config.rings.order_capacity):
        assert capacity & (capacity - 1) == 0
    assert config.segment_name("md") == "lowlat.md"
    check_cores(config)  # the default only uses CPUs this process may run on


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        ({0}, (0, 0, 0)),
        ({0, 1}, (1, 1, 1)),
        ({0, 1, 2}, (1, 2, 2)),
        ({0, 1, 2, 3}, (1, 2, 3)),
        ({3, 9, 5, 7, 11}, (5, 7, 9)),
    ],
)
def test_default_cores_keep_the_first_cpu_for_housekeeping(monkeypatch, cpus, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cpus))
    cores = default_cores()
    assert tuple(cores[stage] for stage in STAGES) == expected
    if len(cpus) >= 2:
        assert min(cpus) not in cores.values()
    groups = Config(cores=cores).process_groups()
    # every stage in exactly one process; processes on distinct cores
    assert sorted(s for _, stages in groups for s in stages) == sorted(STAGES)
    assert len({core for core, _ in groups}) == len(groups)


def test_process_groups_fuse_stages_that_share_a_core():
    config = from_dict({"cores": {"feed": 1, "engine": 2, "gateway": 1}}, SOURCE)
    assert config.process_groups() == [(1, ("feed", "gateway")), (2, ("engine",))]
    config = from_dict({"cores": {"feed": 4, "engine": 4, "gateway": 4}}, SOURCE)
    assert config.process_groups() == [(4, ("feed", "engine", "gateway"))]
    config = from_dict({"cores": {"feed": 1, "engine": 2, "gateway": 3}}, SOURCE)
    assert config.process_groups() == [(1, ("feed",)), (2, ("engine",)), (3, ("gateway",))]


def test_a_partial_cores_table_keeps_the_defaults_for_the_rest():
    config = from_dict({"cores": {"engine": 0}}, SOURCE)
    defaults = default_cores()
    assert config.cores == {**defaults, "engine": 0}


def test_valid_values_are_taken():
    config = from_dict(
        {
            "service": {"shm_prefix": "x", "ready_timeout_s": 5},  # int accepted for a float
            "feed": {"source": "replay", "replay_file": "/data/day.bin", "instruments": 64},
            "rings": {"md_capacity": 1 << 24, "order_capacity": 64},
            "risk": {"max_notional": 0.0},
        },
        SOURCE,
    )
    assert config.service.ready_timeout_s == 5.0 and isinstance(
        config.service.ready_timeout_s, float
    )
    assert config.feed.replay_file == "/data/day.bin" and config.feed.instruments == 64
    assert config.rings.md_capacity == 1 << 24 and config.rings.order_capacity == 64
    assert config.source == SOURCE


# --------------------------------------------------------------------------- bad input

# (document, words the one-line message must contain besides the source)
BAD = {
    "unknown section": ({"risky": {"a": 1}}, ["[risky]", "cores", "gateway"]),
    "section not a table": ({"feed": 3}, ["[feed]", "3"]),
    "unknown key": ({"feed": {"rat": 5}}, ["[feed] rat", "rate", "instruments"]),
    "string for int": ({"feed": {"rate": "fast"}}, ["[feed] rate", "'fast'", "whole number"]),
    "bool for int": ({"feed": {"rate": True}}, ["[feed] rate", "True", "whole number"]),
    "float for int": (
        {"feed": {"instruments": 8.0}},
        ["[feed] instruments", "8.0", "whole number"],
    ),
    "string for float": ({"risk": {"burst": "x"}}, ["[risk] burst", "'x'", "a number"]),
    "bool for float": ({"risk": {"burst": False}}, ["[risk] burst", "False", "a number"]),
    "int for string": ({"service": {"shm_prefix": 5}}, ["[service] shm_prefix", "5", "a string"]),
    "below minimum": ({"feed": {"rate": -1}}, ["[feed] rate", "-1", "from 0 to 100000000"]),
    "above maximum": (
        {"feed": {"instruments": MAX_INSTRUMENTS + 1}},
        ["[feed] instruments", str(MAX_INSTRUMENTS + 1), f"from 1 to {MAX_INSTRUMENTS}"],
    ),
    "float below minimum": (
        {"gateway": {"fill_ratio": -0.5}},
        ["[gateway] fill_ratio", "-0.5", "from 0.0 to 1.0"],
    ),
    "only a minimum": ({"risk": {"max_order_qty": 0}}, ["[risk] max_order_qty", "0", ">= 1"]),
    "not a power of two": (
        {"rings": {"md_capacity": 1000}},
        ["[rings] md_capacity", "1000", "power of two"],
    ),
    "power of two too small": (
        {"rings": {"fill_capacity": 32}},
        ["[rings] fill_capacity", "32", "from 64"],
    ),
    "bad choice": (
        {"feed": {"source": "kafka"}},
        ["[feed] source", "'kafka'", '"simulator", "replay"'],
    ),
    "infinite float": ({"risk": {"burst": math.inf}}, ["[risk] burst", "inf", "a number"]),
    "nan float": ({"engine": {"ewma_alpha": math.nan}}, ["[engine] ewma_alpha", "nan"]),
    "table for int": ({"feed": {"rate": {"x": 1}}}, ["[feed] rate", "{'x': 1}"]),
    "replay without file": ({"feed": {"source": "replay"}}, ["source", "replay", "replay_file"]),
    "cores not a table": ({"cores": [1, 2]}, ["[cores]", "[1, 2]"]),
    "cores unknown stage": ({"cores": {"risk": 1}}, ["[cores] risk", "feed, engine, gateway"]),
    "cores negative": ({"cores": {"engine": -1}}, ["[cores] engine", "-1", "CPU number >= 0"]),
    "cores bool": ({"cores": {"engine": True}}, ["[cores] engine", "True", "CPU number >= 0"]),
    "cores string": ({"cores": {"feed": "1"}}, ["[cores] feed", "'1'", "CPU number >= 0"]),
    "cores float": ({"cores": {"feed": 1.0}}, ["[cores] feed", "1.0", "CPU number >= 0"]),
    "exchange host name": (
        {"exchange": {"orders": "exchange.example:31003"}},
        ["[exchange] orders", "exchange.example", "host names are not allowed"],
    ),
    "exchange no port": (
        {"exchange": {"market_data": "239.192.0.1"}},
        ["[exchange] market_data", "239.192.0.1", "has no port"],
    ),
    "exchange bad port": (
        {"exchange": {"recovery": "10.0.0.1:70000"}},
        ["[exchange] recovery", "70000", "from 1 to 65535"],
    ),
    "exchange interface": (
        {"exchange": {"interface": "eth0"}},
        ["[exchange] interface", "'eth0'", "IP address"],
    ),
    "exchange session": (
        {"exchange": {"session": "LOWLAT-SESSION-1"}},
        ["[exchange] session", "1 to 10 printable ASCII"],
    ),
    "exchange backoff": (
        {"exchange": {"reconnect_min_ms": 100, "reconnect_max_ms": 10}},
        ["[exchange] reconnect_max_ms", "10", "reconnect_min_ms = 100"],
    ),
}


def _assert_one_line(message: str, *words: str) -> None:
    assert "\n" not in message and message.strip() == message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(("document", "words"), BAD.values(), ids=BAD.keys())
def test_bad_value_gives_one_line_naming_file_key_value_and_what_is_allowed(document, words):
    with pytest.raises(ConfigError) as exc:
        from_dict(document, SOURCE)
    _assert_one_line(str(exc.value), SOURCE, *words)


@pytest.mark.parametrize(("document", "words"), list(BAD.values())[:6], ids=list(BAD)[:6])
def test_bad_value_in_a_file(tmp_path, document, words):
    """The same errors through load(): the message names the real file."""
    path = tmp_path / "bad.toml"
    lines = []
    for section, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        else:
            lines.append(f"{section} = {_toml_value(table)}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as exc:
        load(path)
    _assert_one_line(str(exc.value), str(path), *words)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.mark.parametrize(
    "text",
    ["[feed\nrate = 1\n", "[feed]\nrate = \n", "[feed]\nrate = 1\nrate = 2\n", "= 3\n"],
    ids=["unclosed table", "missing value", "duplicate key", "missing key"],
)
def test_invalid_toml(tmp_path, text):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load(path)
    _assert_one_line(str(exc.value), str(path), "not valid TOML")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        load(path)
    _assert_one_line(str(exc.value), str(path), "no such config file")


def test_unreadable_path(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path)  # a directory
    _assert_one_line(str(exc.value), str(tmp_path), "cannot read")


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[service]\nshm_prefix = "caf\xe9"\n')
    with pytest.raises(ConfigError) as exc:
        load(path)
    _assert_one_line(str(exc.value), str(path))


def test_huge_integer_for_a_float():
    with pytest.raises(ConfigError) as exc:
        from_dict({"risk": {"burst": 10**400}}, SOURCE)
    _assert_one_line(str(exc.value), SOURCE, "[risk] burst")


@pytest.mark.parametrize(("section", "key"), [("risk", "max_order_qty"), ("feed", "seed")])
def test_integer_beyond_64_bits(section, key):
    with pytest.raises(ConfigError) as exc:
        from_dict({section: {key: 2**63}}, SOURCE)
    _assert_one_line(str(exc.value), SOURCE, f"[{section}] {key}")


def test_a_valid_file_loads_with_its_path_as_source(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text("[feed]\nrate = 0\n\n[cores]\nengine = 0\n")
    config = load(path)
    assert config.source == str(path)
    assert config.feed.rate == 0 and config.cores["engine"] == 0


# --------------------------------------------------------------------------- to_toml, check_cores


def test_to_toml_round_trips_the_default():
    config = load(None)
    text = to_toml(config)
    again = from_dict(tomllib.loads(text), "<printed>")
    assert dataclasses.replace(again, source=config.source) == config
    assert "# " in text and "[cores]" in text


def test_to_toml_round_trips_changed_values():
    config = from_dict(
        {
            "cores": {"feed": 0, "engine": 0, "gateway": 0},
            "service": {"shm_dir": "/mnt/huge pages", "drain_timeout_s": 0.1},
            "feed": {"source": "replay", "replay_file": "/data/rec.bin", "seed": 2**40},
            "engine": {"ewma_alpha": 1e-6},
            "risk": {"tick_size": 1e-12, "max_notional": 1e300},
        },
        SOURCE,
    )
    again = from_dict(tomllib.loads(to_toml(config)), "<printed>")
    assert dataclasses.replace(again, source=SOURCE) == config


@pytest.mark.parametrize("replay_file", ['/data/"quoted".bin', "C:\\data\\rec.bin"])
def test_to_toml_round_trips_strings_that_need_escaping(replay_file):
    config = from_dict({"feed": {"source": "replay", "replay_file": replay_file}}, SOURCE)
    again = from_dict(tomllib.loads(to_toml(config)), "<printed>")
    assert again.feed.replay_file == replay_file


def test_check_cores_rejects_a_cpu_this_process_may_not_use():
    allowed = sorted(os.sched_getaffinity(0))
    outside = max(allowed) + 1
    config = from_dict({"cores": {"gateway": outside}}, SOURCE)
    with pytest.raises(ConfigError) as exc:
        check_cores(config)
    _assert_one_line(
        str(exc.value), SOURCE, f"[cores] gateway = {outside}", ", ".join(map(str, allowed))
    )
    check_cores(from_dict({"cores": {"gateway": allowed[-1]}}, SOURCE))


@pytest.mark.parametrize(
    ("allowed", "isolated", "expected"),
    [
        # the engine unit on a tuned 4-vCPU host: the stages' cores and housekeeping cpu0
        ({0, 1, 2, 3}, "1-3\n", {0}),
        # 16 vCPUs: cpu4-15 are isolated too but run no stage; still not the supervisor's
        (set(range(16)), "1-15\n", {0}),
        # an untuned machine (nothing isolated): every CPU no stage uses
        ({0, 1, 2, 3, 4, 5}, "\n", {0, 4, 5}),
        # no kernel file, or every free CPU isolated: the CPUs free of stages
        ({0, 1, 2, 3}, None, {0}),
        ({1, 2, 3, 4}, "1-4\n", {4}),
        # fewer CPUs than stages: it shares theirs
        ({1, 2, 3}, "1-3\n", {1, 2, 3}),
    ],
)
def test_housekeeping_cpus_are_free_of_stages_and_not_isolated(
    monkeypatch, tmp_path, allowed, isolated, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(allowed))
    path = tmp_path / "isolated"
    if isolated is not None:
        path.write_text(isolated)
    config = from_dict({"cores": {"feed": 1, "engine": 2, "gateway": 3}}, SOURCE)
    assert housekeeping_cpus(config, path) == expected


# --- the simulator's knobs: [feed] is their one validator ----------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("instruments", 0, f"from 1 to {MAX_INSTRUMENTS}"),
        ("instruments", 70_000, f"from 1 to {MAX_INSTRUMENTS}"),
        ("instruments", 2.0, "whole number"),
        ("seed", -1, ">= 0"),
        ("depth_levels", 0, "from 1 to 256"),
        ("start_price_ticks", 5, "deepest bid"),
        ("max_spread_ticks", 0, "from 1 to 1000"),
        ("mean_queue_lots", 0, "from 1 to 100000000"),
        ("mean_queue_lots", 10**9, "from 1 to 100000000"),
        ("trade_probability", 1.5, "from 0.0 to 1.0"),
        ("move_probability", -0.1, "from 0.0 to 1.0"),
        ("move_probability", float("nan"), "move_probability"),
        ("snapshot_interval", -1, "0: only the first ones"),
        ("burst_probability", 1.0, "from 0.0 to below 1.0"),
        ("burst_length", 0, "from 1 to 1000000000"),
        ("burst_speedup", 0.5, "from 1.0 to 1000000.0"),
        ("depth_levels", True, "whole number"),
    ],
)
def test_simulator_knobs_name_field_value_and_range(field, value, words):
    kwargs = {"depth_levels": 10, field: value}
    with pytest.raises(ConfigError, match=f"\\[feed\\] {field}") as info:
        FeedConfig(**kwargs)
    assert repr(value) in str(info.value)
    assert words in str(info.value)
    # the same value in a config file is refused the same way, naming the file
    with pytest.raises(ConfigError, match=f"day.toml: \\[feed\\] {field}"):
        from_dict({"feed": kwargs}, "day.toml")


def test_simulator_probabilities_must_share_one_draw():
    with pytest.raises(ConfigError, match="trade_probability \\+ move_probability"):
        FeedConfig(trade_probability=0.7, move_probability=0.4)


def test_feed_defaults_are_valid_and_frozen():
    params = FeedConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.seed = 2  # type: ignore[misc]
