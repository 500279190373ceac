"""Fuzzing the Fabric config's ``lowlat:`` section and the task's host flags.

Whatever a Fabric config file gives (``lowlat:`` a mapping or not; known keys, unknown ones,
keys that are not strings; values of every YAML type: strings, whole and huge numbers, floats
with NaN and the infinities, booleans, null, lists, mappings), ``Settings.from_config`` either
returns settings that keep their promises (types right, ranges respected) or raises
``OpsError`` with ONE line naming the key. Never another exception, never a hang (each example
runs under a time limit). The same for ``--host``/``--hosts``/``--stack``:
``resolve_targets`` returns well-formed host names or raises one line naming the flag.

Each test counts the examples it ran (``pytest -s`` prints the counts) and insists on a floor,
so a strategy that silently generates nothing is caught.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from unittest import mock

import fabric
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ops import hosts as H
from tests.support.fuzz import time_limit

EXAMPLE_SECONDS = 5  # far above what one example takes (well under 10 ms); a hang fails
KNOWN = list(H.SETTINGS)
FUZZ = settings(
    max_examples=3000,
    deadline=None,  # a hang is caught by time_limit (SIGALRM), without timing every example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,  # nothing written into the working tree
)


def report(name: str, count: int, started: float, floor: int, outcomes: Counter | None = None):
    seen = f" ({', '.join(f'{n} {k}' for k, n in outcomes.most_common())})" if outcomes else ""
    print(f"\n{name}: {count} examples in {time.monotonic() - started:.1f} s{seen}")
    assert count >= floor, f"{name}: only {count} examples ran"


# ------------------------------------------------------------------------------ strategies

ODD_STRINGS = st.sampled_from(
    ["", " ", "\n", "\t", "no", "yes", "off", "on", "true", "false", "True", "null", "~",
     "nan", "inf", "-inf", "1e999", "-1", "0", "2", "2.5", "180", "1_000", "0x10",
     "\u0663", "\x00", "\x7f", "\u2028", "\ud800", "9" * 5000, "/", "//", "/srv/x\n",
     "relative/path", "~/x", "auto", "AUTO", "python", "python3.11 -I", "python3;rm -rf /",
     "/usr/bin/python3.12", "-python3", "sudo", "systemctl --user"]
)  # fmt: skip
HUGE = st.integers(min_value=0, max_value=6000).map(lambda e: 10**e) | st.integers(
    min_value=-(10**400), max_value=10**400
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-5, max_value=2000),
    HUGE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=100_000),
    st.text(max_size=30),
    ODD_STRINGS,
)
# what YAML can give, nested: lists and mappings of the scalars (keys of any scalar type)
YAML = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8), inner, max_size=4
        )
    ),
    max_leaves=5,
)
GOOD_PYTHONS = ["auto", "python3", "python3.11", "python3.12", "/usr/bin/python3.11",
                "/opt/python/bin/python3", "pypy3", "python3.99"]  # fmt: skip
GOOD: dict[str, st.SearchStrategy] = {
    "root": st.sampled_from(["/", "/srv/lowlat", "/tmp/x/root", "/a b/c"]),
    "sudo": st.booleans(),
    "systemctl": st.sampled_from(["systemctl", "/usr/bin/systemctl", "sv root-x"]),
    "journalctl": st.sampled_from(["journalctl", "lowlat-test-no-journalctl"]),
    "python": st.sampled_from(GOOD_PYTHONS),
    "keep_releases": st.integers(min_value=2, max_value=H.MAX_KEEP_RELEASES) | st.just(3.0),
    "ready_timeout_s": st.floats(min_value=0.001, max_value=H.MAX_READY_TIMEOUT_S)
    | st.integers(min_value=1, max_value=int(H.MAX_READY_TIMEOUT_S)),
    "connect_timeout_s": st.floats(min_value=0.001, max_value=H.MAX_CONNECT_TIMEOUT_S)
    | st.integers(min_value=1, max_value=int(H.MAX_CONNECT_TIMEOUT_S)),
    "wheelhouse_cache": st.sampled_from(["~/.cache/lowlat/wheelhouse", "/tmp/wh", "wh"]),
}
assert set(GOOD) == set(KNOWN)
GOOD_VALUES: dict[str, list] = {
    "root": ["/", "/srv/lowlat", "/tmp/x/root"],
    "sudo": [True, False],
    "systemctl": ["systemctl", "sv root-x"],
    "journalctl": ["journalctl"],
    "python": GOOD_PYTHONS,
    "keep_releases": [2, 5, 1000, 4.0],
    "ready_timeout_s": [180, 0.5, 86400, 1500.0],
    "connect_timeout_s": [15, 60.0, 3600, 0.001],
    "wheelhouse_cache": ["~/.cache/lowlat/wheelhouse", "wh"],
}
UNKNOWN_KEYS = st.one_of(
    st.text(max_size=20).filter(lambda k: k not in H.SETTINGS),
    st.sampled_from([k + "z" for k in KNOWN] + [k.upper() for k in KNOWN] + ["roto", "Sudo"]),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)


# Values of every YAML type that a key is often given: each key draws from its good values
# and these (one draw each), and one key per example gets an arbitrary nested YAML value.
ODD_VALUES = [
    None, True, False, 0, 1, -1, 2, 3, 1000, 1001, 2.5, 3.0, -0.0, 0.0001, 1e308, -1e308,
    math.inf, -math.inf, math.nan, 10**30, -(10**30), 10**5000, 86400, 86400.0001, 3600.5,
    "", " ", "\n", "no", "yes", "true", "180", "soon", "/", "/srv/x", "rel/x", "a\nb", "\x00",
    "\u2028", "auto", "python3.11", "python3 -I", "~/x", "9" * 5000, [], [1], ["a"], {},
    {"a": 1}, {"root": "/"}, [[None]], {None: {True: []}},
]  # fmt: skip


def known_keys(choice: int, all_good: bool) -> dict:
    """The known keys a number picks, each with a good value or an odd one: one draw of
    hypothesis makes a whole section (thousands of examples in seconds), and shrinking it
    towards 0 makes the section smaller and its values the first good ones."""
    choice, mask = divmod(choice, 2 ** len(KNOWN))
    section = {}
    for i, key in enumerate(KNOWN):
        if mask >> i & 1:
            choice, odd = divmod(choice, 2)
            pool = ODD_VALUES if odd and not all_good else GOOD_VALUES[key]
            choice, index = divmod(choice, len(pool))
            section[key] = pool[index]
    return section


CHOICES = st.integers(min_value=0, max_value=(2 ** len(KNOWN)) * (2 * len(ODD_VALUES)) ** 9)


@st.composite
def sections(draw) -> object:
    """A ``lowlat:`` value: a mapping of known keys to good or odd values, now and then one of
    them (or an unknown key) given an arbitrary nested YAML value, or every value a good one
    (the accepted path gets its share); sometimes not a mapping at all."""
    shape = draw(st.integers(0, 31))
    if shape == 0:
        return draw(YAML)
    section = known_keys(draw(CHOICES), all_good=shape >= 24)
    if shape <= 3:
        section[draw(st.sampled_from(KNOWN))] = draw(YAML)
    elif shape <= 6:
        section[draw(UNKNOWN_KEYS)] = draw(st.sampled_from(ODD_VALUES))
    return section


# ------------------------------------------------------------------------------ the model

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_line(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not CONTROL.search(value)


def number_in(value: object, low: float, high: float) -> bool:
    """A real number (not a bool), finite, in (low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (not isinstance(value, float) or math.isfinite(value)) and low < value <= high


def valid(key: str, value: object) -> bool | None:
    """Whether ``value`` is right for ``key``, as the settings' documentation says; None where
    only properties of the result are checked (python)."""
    if key == "root":
        return is_line(value) and value.startswith("/")
    if key == "sudo":
        return type(value) is bool
    if key in ("systemctl", "journalctl", "wheelhouse_cache"):
        return is_line(value)
    if key == "keep_releases":
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return number_in(value, 1, H.MAX_KEEP_RELEASES) and whole
    if key == "ready_timeout_s":
        return number_in(value, 0, H.MAX_READY_TIMEOUT_S)
    if key == "connect_timeout_s":
        return number_in(value, 0, H.MAX_CONNECT_TIMEOUT_S)
    assert key == "python"
    if not isinstance(value, str):
        return False
    return True if value in GOOD_PYTHONS else None


def plausible_python(value: str) -> bool:
    """What an accepted lowlat.python must look like: "auto", or a name or absolute path of a
    python/pypy interpreter with nothing a shell would read as more than one word."""
    base = value.rsplit("/", 1)[-1]
    return value == "auto" or (
        re.fullmatch(r"[A-Za-z0-9._+/-]+", value) is not None
        and (value.startswith("/") or "/" not in value)
        and base.startswith(("python", "pypy"))
    )


def named(key: object) -> str:
    """How a refusal names a key of the section."""
    return f"lowlat.{H.key_text(key)} = "


def check_settings(section: object) -> str:
    """Check one section against the model; which way it went."""
    try:
        with time_limit(EXAMPLE_SECONDS):
            result = H.Settings.from_config({"lowlat": section})
    except H.OpsError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and message == message.strip(), message
        assert message.startswith("Fabric config lowlat"), message
        assert len(message) < 700, message
        if not isinstance(section, dict):
            assert message.startswith("Fabric config lowlat = "), message
            return "not a mapping"
        unknown = [k for k in section if k not in H.SETTINGS]
        if unknown:
            assert any(named(k) in message for k in unknown), message
            assert "unknown setting" in message, message
            return "unknown key"
        bad = [k for k in section if valid(k, section[k]) is not True]
        assert any(message.startswith(f"Fabric config {named(k)}") for k in bad), message
        return "bad value"
    # accepted: a mapping of known keys, every value right for its key
    assert isinstance(section, dict), section
    assert all(valid(k, v) is not False for k, v in section.items()), section
    assert isinstance(result.root, str) and result.root.startswith("/")
    assert type(result.sudo) is bool
    assert type(result.keep_releases) is int
    assert 2 <= result.keep_releases <= H.MAX_KEEP_RELEASES
    for seconds, high in ((result.ready_timeout_s, H.MAX_READY_TIMEOUT_S),
                          (result.connect_timeout_s, H.MAX_CONNECT_TIMEOUT_S)):  # fmt: skip
        assert type(seconds) is float and math.isfinite(seconds) and 0 < seconds <= high
    for text in (result.systemctl, result.journalctl, result.wheelhouse_cache):
        assert is_line(text), result
    assert plausible_python(result.python), result
    for key, value in section.items():
        assert getattr(result, key) == value, (key, value, result)  # taken as given
    for key in set(KNOWN) - set(section):
        assert getattr(result, key) == H.DEFAULT_SETTINGS[key]
    return "accepted"


# ------------------------------------------------------------------------------ the tests


def test_the_defaults_pass_their_own_checks():
    settings_ = H.Settings.from_config({})
    assert {k: getattr(settings_, k) for k in KNOWN} == H.DEFAULT_SETTINGS
    for key, setting in H.SETTINGS.items():
        assert setting.accept(setting.default) is not None, key
        assert setting.allowed and setting.meaning, key


def test_fuzz_lowlat_sections():
    count, started, outcomes = 0, time.monotonic(), Counter()

    @FUZZ
    @given(sections())
    def run(section):
        nonlocal count
        count += 1
        outcomes[check_settings(section)] += 1

    run()
    report("lowlat sections", count, started, floor=2500, outcomes=outcomes)
    # every way through was taken, often
    assert min(outcomes[k] for k in ("accepted", "bad value", "unknown key", "not a mapping")) > 50


def has_huge_int(value: object) -> bool:
    if isinstance(value, int):
        return abs(value) >= 10**4000
    if isinstance(value, dict):
        return any(has_huge_int(k) or has_huge_int(v) for k, v in value.items())
    return isinstance(value, list) and any(map(has_huge_int, value))


def test_fuzz_through_invokes_config():
    """The same, through a real Fabric Config (invoke's merge and DataProxy), fewer examples."""
    count, started = 0, time.monotonic()

    @settings(FUZZ, max_examples=400)
    @given(sections())
    def run(section):
        nonlocal count
        # invoke's own debug logging repr()s the config: an int of more than 4300 digits fails
        # there, before any of ours runs (and YAML could not load one: PyYAML fails alike)
        assume(not has_huge_int(section))
        count += 1
        config = fabric.Config(overrides={"lowlat": section})
        try:
            direct: object = H.Settings.from_config({"lowlat": section})
        except H.OpsError as exc:
            direct = str(exc)
        try:
            with time_limit(EXAMPLE_SECONDS):
                through: object = H.Settings.from_config(config)
        except H.OpsError as exc:
            through = str(exc)
        assert through == direct

    run()
    report("lowlat sections through fabric.Config", count, started, floor=300)


HOST_CHARS = st.sampled_from([*"abcz09.-_@:,% \t\n[]/;$'\"*", "\u00e9", "\x00", "\u2028"])
HOSTISH = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=HOST_CHARS, max_size=30),
    st.lists(
        st.sampled_from(["a", "b", "host-1.example.com", "10.0.0.1", "::1", "fe80::1%eth0",
                         "root@h", "ec2-user@h:2222", "h:0", "h:65536", "h:99999999999",
                         "-oProxyCommand=x", "", " ", "a b", "i-0123456789abcdef0", "é"]),
        max_size=5,
    ).map(",".join),
)  # fmt: skip


def check_targets(flag: str, text: str) -> None:
    args = {"--host": (text, None, None), "--hosts": (None, text, None)}[flag]
    try:
        with time_limit(EXAMPLE_SECONDS):
            names = H.resolve_targets(*args)
    except H.OpsError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and message == message.strip(), message
        assert message.startswith(f"{flag} " if text else "give one of"), message
        assert len(message) < 700, message
        return
    assert names and len(names) == len(set(names))
    for name in names:
        assert name == name.strip() and name and not name.startswith("-")
        assert not re.search(r"[\s,;$'\"*\x00-\x1f]", name), name
        assert name.isascii(), name
    if flag == "--hosts":
        assert names == list(dict.fromkeys(part.strip() for part in text.split(",")))
    else:
        assert names == [text.strip()]


def test_fuzz_host_flags():
    count, started = 0, time.monotonic()

    @settings(FUZZ, max_examples=2000)
    @given(st.sampled_from(["--host", "--hosts"]), HOSTISH)
    def run(flag, text):
        nonlocal count
        count += 1
        check_targets(flag, text)

    run()
    report("--host/--hosts strings", count, started, floor=1500)


def test_fuzz_stack_flag():
    """--stack: a stack name or ARN reaches CloudFormation (here a stand-in), anything else is
    one line naming --stack, without a call."""
    count, started = 0, time.monotonic()
    found = [H.StackHost("host1", "i-0123456789abcdef0", "ec2-1.example.com")]

    @settings(FUZZ, max_examples=1000)
    @given(st.text(max_size=40) | st.sampled_from(["LowlatHosts", "lowlat-2", "1abc", "a_b"]))
    def run(stack):
        nonlocal count
        count += 1
        with mock.patch.object(H, "stack_hosts", return_value=found) as stack_hosts:
            try:
                with time_limit(EXAMPLE_SECONDS):
                    names = H.resolve_targets(None, None, stack)
            except H.OpsError as exc:
                message = str(exc)
                assert len(message.splitlines()) == 1, message
                assert message.startswith("--stack " if stack else "give one of"), message
                stack_hosts.assert_not_called()
                return
        assert names == ["ec2-1.example.com"]
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}|arn:\S+", stack), stack

    run()
    report("--stack strings", count, started, floor=700)
