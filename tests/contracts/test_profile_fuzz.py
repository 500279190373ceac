"""Fuzzing the profile loader: random bytes, random TOML-looking text, and random TOML documents
of the profile's keys with values of every kind. ``load_profile`` returns a profile that renders
and writes back to itself, or raises ``ProfileError``: one line naming the file. Never another
exception, never a hang."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ami.render import render
from contracts.profile import (
    MAX_INTERNET_ADDRESSES,
    ProfileError,
    TuningProfile,
    internet_addresses,
    load_profile,
    parse_cpulist,
    profile_file,
)
from tests.support.fuzz import time_limit

EXAMPLE_SECONDS = 5
FIELDS = [
    "vcpus",
    "housekeeping",
    "isolated",
    "hugepages",
    "platform",
    "os",
    "sysctls",
    "nic",
    "rx_usecs",
    "service_user",
    "install_prefix",
    "shm_dir",
    "telemetry_port",
    "telemetry_host",
    "ssh_cidrs",
    "telemetry_cidrs",
    "ssh_root_login",
]
GOOD = profile_file(TuningProfile.for_vcpus(8), "a good profile").encode()


@pytest.fixture(scope="module")
def scratch():
    """Where each example's profile file goes: in memory (tmpfs) where there is one, since
    thousands of files are written."""
    memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="lowlat-fuzz-", dir=memory) as directory:
        yield Path(directory) / "profile.toml"


def load(path: Path, content: bytes) -> TuningProfile | None:
    """Load ``content`` as a profile file; check the promise either way."""
    path.write_bytes(content)
    with time_limit(EXAMPLE_SECONDS, "load_profile"):
        try:
            profile = load_profile(path, 4)
        except ProfileError as exc:
            message = str(exc)
            assert message.splitlines() == [message] and "\n" not in message, message
            assert message.startswith(f"{path}: "), message
            assert len(message) < 4000, message
            return None
    assert isinstance(profile, TuningProfile)
    # what was accepted renders, and writes back to an equal profile
    assert render(profile)
    path.write_text(profile_file(profile, "the profile read back"))
    assert load_profile(path, 4) == profile
    for cidrs in (profile.ssh_cidrs, profile.telemetry_cidrs):
        v4 = [c for c in cidrs if ":" not in c]
        assert internet_addresses(map(_net, v4)) <= MAX_INTERNET_ADDRESSES[4]
    return profile


def _net(text: str):
    import ipaddress

    return ipaddress.ip_network(text)


# ------------------------------------------------------------------------------ TOML writing


def toml(value) -> str:
    """``value`` as a TOML value: what tomllib gives back, plus inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (no lone surrogates)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


def document(data: dict) -> bytes:
    return "".join(f"{json.dumps(k)} = {toml(v)}\n" for k, v in data.items()).encode()


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
SCALARS = (
    st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats()
    | TEXT
)
ANY = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PLAUSIBLE = {
    "vcpus": st.integers(-2, 2000),
    "housekeeping": st.sampled_from(["0", "0-1", "", "0-99999999999", "1-0", "٣", [0], [0, 1]]),
    "isolated": st.sampled_from(["1-3", "1-7", "2-15", "1,2,3", "1-3,", "-1", [1, 2, 3]]),
    "hugepages": st.integers(-1, 2**21),
    "platform": st.sampled_from(["graviton", "x86", "arm"]),
    "os": st.sampled_from(["al2023", "ubuntu2404", "debian12", "centos"]),
    "sysctls": st.dictionaries(
        st.sampled_from(["vm.swappiness", "kernel.watchdog", "a\nb", "x", "net.core.busy_poll"]),
        st.one_of(st.integers(-5, 10**6), st.sampled_from(["0", "1 2 3", "a;b", ""])),
        max_size=3,
    ),
    "nic": st.sampled_from(["auto", "eth0", "ens5", "eth0; reboot", "a" * 16]),
    "rx_usecs": st.integers(-1, 2000),
    "service_user": st.sampled_from(["lowlat", "root", "Root", "a b"]),
    "install_prefix": st.sampled_from(["/opt/lowlat", "opt", "/opt/../etc"]),
    "shm_dir": st.sampled_from(["/dev/hugepages/lowlat", "/dev/shm/x"]),
    "telemetry_port": st.integers(-1, 70000),
    "telemetry_host": st.sampled_from(["127.0.0.1", "0.0.0.0", "localhost", "::1", "host"]),
    "ssh_cidrs": st.lists(
        st.sampled_from(
            [
                "203.0.113.0/24",
                "10.0.0.0/8",
                "2001:db8::/32",
                "0.0.0.0/0",
                "0.0.0.0/1",
                "128.0.0.0/1",
                "::ffff:0:0/96",
                "1.2.3.4/0",
                "10.0.0.1/8",
                "2001:DB8::/32",
            ]
        ),
        max_size=4,
    ),
    "telemetry_cidrs": st.lists(st.sampled_from(["198.51.100.7/32", "::/0", "fd00::/8"])),
    "ssh_root_login": st.sampled_from(["no", "prohibit-password", "yes"]),
}
assert set(PLAUSIBLE) == set(FIELDS)
KEYS = st.sampled_from([*FIELDS, "colour", "a\nb", "", "vcpus.x"])


@st.composite
def documents(draw) -> bytes:
    data = {}
    for key in draw(st.lists(KEYS, unique=True, max_size=8)):
        plausible = PLAUSIBLE.get(key)
        data[key] = draw(st.one_of(plausible, ANY) if plausible is not None else ANY)
    return document(data)


TOMLISH = st.text(
    alphabet=st.sampled_from([*"[]{}=.,\"'#\n \t-+_:0123456789aeinfrutsl\\", "\u2028", "é"]),
    max_size=60,
)

FUZZ = settings(
    max_examples=250,
    deadline=timedelta(seconds=EXAMPLE_SECONDS),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(FUZZ, max_examples=150)
@given(content=documents())
def test_random_toml_documents(scratch, content):
    load(scratch, content)


@FUZZ
@given(content=st.binary(max_size=200))
def test_random_bytes(scratch, content):
    load(scratch, content)


@FUZZ
@given(text=TOMLISH)
def test_random_toml_looking_text(scratch, text):
    load(scratch, text.encode())


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(GOOD)), st.binary(max_size=3), st.integers(0, 3)),
        min_size=1,
        max_size=4,
    )
)
def test_a_good_profile_with_random_edits(scratch, edits):
    content = GOOD
    for at, insert, cut in edits:
        content = content[:at] + insert + content[at + cut :]
    load(scratch, content)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_thousands_of_mutated_profiles(scratch, seed):
    """20 seeds x 200 byte-level mutations of a good profile: 4000 files."""
    rng = random.Random(seed)
    for _ in range(200):
        content = bytearray(GOOD)
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(content) + 1)
            kind = rng.randrange(4)
            if kind == 0:
                del content[at : at + rng.randrange(1, 8)]
            elif kind == 1:
                content[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
            elif kind == 2:
                content[at:at] = rng.choice([b"[", b"]", b"=", b'"', b"\n", b"9" * 50, b"\xff"])
            elif at < len(content):
                content[at] = rng.randrange(256)
        load(scratch, bytes(content))


# Hypothesis spends milliseconds drawing one document; drawn from a random.Random (seeded by
# Hypothesis, so a failure replays) they cost microseconds: the batches below are the bulk.
ODD_VALUES = [
    True, 0, -1, 1, 2, 3, 4, 8, 64, 1024, 1025, 2**63 - 1, -(2**63), 0.5, math.nan, math.inf,
    "", " ", "0", "1-3", "0-1", "1,3", "0-99999999999", "auto", "eth0", "lowlat", "/opt/lowlat",
    "127.0.0.1", "0.0.0.0", "::", "al2023", "x86", "no", "yes", "\n", "\u2028", "a;b", "é",
    "203.0.113.0/24", "0.0.0.0/1", "128.0.0.0/1", "::ffff:0:0/96", "2001:DB8::/32",
]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 2 else 4)
    if kind < 3:
        return rng.choice(ODD_VALUES)
    if kind == 3:
        return "".join(rng.choice("0123456789-,./:abcfx ") for _ in range(rng.randrange(8)))
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.choice([*FIELDS, "vm.swappiness", "x"]): random_value(rng, depth + 1)}


def random_document(rng: random.Random) -> bytes:
    keys = rng.sample([*FIELDS, "colour", "a\nb"], rng.randrange(6))
    return document({key: random_value(rng) for key in keys})


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_thousands_of_random_documents(scratch, seed):
    """20 seeds x 150 documents: 3000 profiles of random keys and values."""
    rng = random.Random(seed)
    for _ in range(150):
        load(scratch, random_document(rng))


@pytest.mark.parametrize(
    "content",
    [
        b"a = " + b"[" * 5000 + b"]" * 5000,  # deeper than tomllib can recurse
        b"a = " + b"{b = " * 3000 + b"1" + b"}" * 3000,
        b"vcpus = " + b"9" * 5000,  # more digits than int() takes
        b'isolated = "0-99999999999"',  # would be a list of 10**11 CPUs
        b'housekeeping = "0-99999999999"',
        b"vcpus = 99999999999999999999",
        b'"a\\nb" = 1',  # a key with a newline in it
        b'[sysctls]\n"a\\nb" = "1"',
        b'ssh_cidrs = ["0.0.0.0/1", "128.0.0.0/1"]',
        b'ssh_cidrs = ["::ffff:0:0/96"]',
        b"ssh_cidrs = [5]",  # ipaddress takes an int as an address
        b"\xef\xbb\xbfvcpus = 4",  # a byte-order mark
        b"\x00",
        b"vcpus = 4\r\nnic = 'eth0'\r",
    ],
)
def test_odd_profiles_are_one_line(scratch, content):
    assert load(scratch, content) is None


def test_parse_cpulist_refuses_what_no_kernel_has():
    assert parse_cpulist("0-3,5\n") == (0, 1, 2, 3, 5)
    for text in ("0-99999999999", "٣", "1 -3", "+1", "3-1", "0-65536"):
        with pytest.raises(ValueError):
            parse_cpulist(text)
