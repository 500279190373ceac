"""Prometheus text-format expositions rendered from a template that is built once.

prometheus_client's ``generate_latest`` checks every sample's name and formats every line on
each scrape: about 2 ms for the engine's ~170 samples, 20 times issue 16's budget of 100 us of
CPU per scrape. Yet the families, names, help texts, types and label sets never change for a
given set of families: only the values do. ``Template`` therefore asks prometheus_client, once,
for the text of every line with a placeholder value and keeps each line up to its value; per
scrape it only formats the values into them, with one bytes ``%`` over one format string (a
bytes format costs a third of the same str format here).

A slot is one sample line. ``Template.render`` takes, per scrape, which slots have a sample
(a family none of whose slots has one is left out, header included, as prometheus_client does),
the integer slots' values as an int64 vector and the float slots' values, written already.
Values are written as prometheus_client's ``floatToGoString`` writes them, integers included:
``1.0``, ``123456.0``, but ``1.2345678e+07`` from 10**6 up (Go's switch to exponents). Counters
and bucket counts are integers: a young engine's are all below 10**6 and go straight in as
``%d.0``, a long-running one's are split into digits with numpy (``int_formats``). The caller
writes the few float slots (sums, quantiles, ages) with ``go_float``. The format of each set of
families present, and of each way of writing the integers, is worked out once and kept. The
tests prove the bytes equal ``generate_latest``'s for the same families and values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How a slot's value is written, and the %-format spec that writes it (see int_formats).
# TEXT: a value written already (a float, or an integer past 2**53), as one "%s" argument.
PLAIN, EXPONENT, EXPONENT_ONE_DIGIT, TEXT = 0, 1, 2, 3
_SPECS = (b"%d.0\n", b"%d.%0*de+%02d\n", b"%de+%02d\n", b"%s\n")
# which of a slot's four argument columns (lead, width, tail, exponent) its spec consumes
_USED = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 0]], dtype=bool)
_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
_GO_EXPONENT_FROM = 1_000_000  # floatToGoString writes positive floats from here as d.ddde+XX
_EXACT = 2**53  # every integer up to this is a float64 exactly, so repr shows all its digits


def go_float(value: float) -> bytes:
    """``floatToGoString(value)``, as ASCII bytes, with a shortcut for the common case: a
    finite value below 10**6 is written as Python's repr, which floatToGoString returns."""
    if -math.inf < value < _GO_EXPONENT_FROM:
        return repr(value).encode()
    return floatToGoString(value).encode()


def int_formats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How to write each int64 value as ``floatToGoString(float(value))`` would: its kind
    (``PLAIN``, ``EXPONENT``, ``EXPONENT_ONE_DIGIT`` or ``TEXT``) and its arguments (lead,
    width, tail, exponent), those ``_USED`` marks, for the kind's spec in ``_SPECS``.

    Below 10**6, and for negative values, that is the integer followed by ``.0``. From 10**6 up
    it is the first digit, a dot and the other digits without their trailing zeros (no dot if
    none is left), then ``e+`` and the exponent: 12340000 is ``1.234e+07``. Past 2**53 the
    float is no longer the integer: ``TEXT``, left to floatToGoString.
    """
    kinds = np.zeros(values.shape, dtype=np.int64)  # PLAIN
    args = np.zeros((values.size, 4), dtype=np.int64)
    args[:, 0] = values
    kinds[(values > _EXACT) | (values < -_EXACT)] = TEXT
    big = np.flatnonzero((values >= _GO_EXPONENT_FROM) & (values <= _EXACT))
    if big.size:
        v = values[big]
        exponent = np.searchsorted(_POW10, v, side="right") - 1  # digits after the first
        scale = _POW10[exponent]
        lead = v // scale
        rest = v - lead * scale
        # trailing zeros of the other digits: how many powers of ten divide them, all when 0
        zeros = np.minimum((rest[:, None] % _POW10[None, 1:17] == 0).sum(axis=1), exponent)
        width = exponent - zeros
        args[big] = np.stack([lead, width, rest // _POW10[zeros], exponent], axis=1)
        kinds[big] = np.where(width > 0, EXPONENT, EXPONENT_ONE_DIGIT)
    return kinds, args


class _Only(Collector):
    """A collector of one family: generate_latest's text of just that family."""

    def __init__(self, family: Metric):
        self._family = family

    def collect(self) -> Iterable[Metric]:
        return [self._family]


class _Plan(NamedTuple):
    """How to write the slots of one presence pattern (the families a scrape holds)."""

    slots: np.ndarray  # the slots present, in order
    opens: np.ndarray  # 1 where a slot is its family's first present one (with the header)
    is_text: np.ndarray  # per slot present: a value written by the caller
    texts: list[tuple[int, int]]  # (argument, slot) of those, when one argument per slot
    plain: bytes  # the format when every integer is PLAIN: one argument per slot
    formats: dict[bytes, tuple[bytes, np.ndarray, list[tuple[int, int]]]]  # by kinds: see render


class Template:
    """The exposition of ``families`` (prometheus_client families, in exposition order), whose
    samples are the slots, numbered in that order. A sample's value says what its slot holds:
    an ``int`` value an integer (formatted here), a ``float`` one a text the caller formats."""

    def __init__(self, families: Iterable[Metric]):
        prefixes: list[str] = []
        family_of: list[int] = []
        is_text: list[bool] = []
        headers: list[str] = []
        for number, family in enumerate(families):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Only(family))
            lines = generate_latest(registry).decode().splitlines(keepends=True)
            samples = [line for line in lines if not line.startswith("#")]
            if len(samples) != len(family.samples):  # e.g. a _created sample: not a slot
                raise ValueError(f"{family.name}: {len(samples)} lines for its samples")
            headers.append("".join(line for line in lines if line.startswith("#")))
            # a line ends with " <value>\n"
            prefixes += [line[: line.rindex(" ") + 1] for line in samples]
            family_of += [number] * len(samples)
            is_text += [isinstance(s.value, float) for s in family.samples]
        self.slots = len(prefixes)
        self._family = np.array(family_of, dtype=np.int64)
        self._is_text = np.array(is_text, dtype=bool)
        # every line in each way it can be written, "%" escaped: [kind + 4 if it opens its
        # family, with the family's header][slot]. Bytes: a bytes format is applied in a third
        # of the time of the same str format (no Unicode to handle), and the body is bytes.
        self._lines = np.empty((8, self.slots), dtype=object)
        for kind, spec in enumerate(_SPECS):
            for slot, (prefix, number) in enumerate(zip(prefixes, family_of, strict=True)):
                self._lines[kind, slot] = prefix.replace("%", "%%").encode() + spec
                line = headers[number] + prefix
                self._lines[kind + 4, slot] = line.replace("%", "%%").encode() + spec
        self._plans: dict[bytes, _Plan] = {}

    def _plan(self, present: np.ndarray) -> _Plan:
        slots = np.flatnonzero(present)
        family = self._family[slots]
        opens = np.ones(slots.size, dtype=np.int64)
        opens[1:] = family[1:] != family[:-1]
        is_text = self._is_text[slots]
        kinds = np.where(is_text, TEXT, PLAIN)
        plain = b"".join(self._lines[kinds + 4 * opens, slots].tolist())
        at = np.flatnonzero(is_text)
        texts = list(zip(at.tolist(), slots[at].tolist(), strict=True))
        return _Plan(slots, opens, is_text, texts, plain, {})

    def render(self, present: np.ndarray, ints: np.ndarray, texts: Mapping[int, bytes]) -> bytes:
        """The exposition of the slots ``present`` marks: integer slots from ``ints`` (one
        int64 per slot), the others from ``texts`` (slot -> the value as floatToGoString
        writes it, in ASCII: ``go_float``)."""
        # which families a scrape holds changes seldom (an engine starts, a window fills):
        # the slots, headers and format of each such pattern are worked out once
        key = present.tobytes()
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 64:  # bounded, whatever comes and goes
                self._plans.clear()
            plan = self._plans[key] = self._plan(present)
        if not plan.slots.size:
            return b""
        numbers = ints[plan.slots]
        if numbers.max() < _GO_EXPONENT_FROM and numbers.min() >= -_EXACT:
            # every integer plain (a young engine): one argument per slot, the value itself
            values = numbers.tolist()
            for at, slot in plan.texts:
                values[at] = texts[slot]
            return plan.plain % tuple(values)
        kinds, args = int_formats(numbers)
        kinds[plan.is_text] = TEXT
        # the format for these kinds, with where the texts go among its arguments
        kinds_key = kinds.tobytes()
        if kinds_key not in plan.formats:
            if len(plan.formats) >= 64:
                plan.formats.clear()
            used = _USED[kinds]
            counts = used.sum(axis=1)
            starts = np.cumsum(counts) - counts
            text_at = np.flatnonzero(kinds == TEXT)
            plan.formats[kinds_key] = (
                b"".join(self._lines[kinds + 4 * plan.opens, plan.slots].tolist()),
                used,
                list(zip(starts[text_at].tolist(), plan.slots[text_at].tolist(), strict=True)),
            )
        text, used, text_args = plan.formats[kinds_key]
        values = args[used].tolist()
        for at, slot in text_args:  # texts, and integers past 2**53
            values[at] = texts[slot] if slot in texts else go_float(float(ints[slot]))
        return text % tuple(values)
