"""Prometheus text-format expositions rendered from a template that is built once.

prometheus_client's ``generate_latest`` checks every sample's name and formats every line on
each scrape: about 2 ms for the engine's ~170 samples, 20 times issue 16's budget of 100 us of
CPU per scrape. Yet the families, names, help texts, types and label sets never change for a
given set of families: only the values do. ``Template`` therefore asks prometheus_client, once,
for the text of every line with a placeholder value, keeps each line up to its value, and per
scrape only formats the values and joins them in, with one ``%`` over one format string.

A slot is one sample line. ``Template.render`` takes, per scrape, which slots have a sample
(a family none of whose slots has one is left out, header included, as prometheus_client does),
the integer slots' values as an int64 vector and the float slots' values. Values are written
as prometheus_client's ``floatToGoString`` writes them, integers included: ``1.0``,
``123456.0``, but ``1.2345678e+07`` from 10**6 up (Go's switch to exponents). Counters and
bucket counts are integers, so they are formatted in bulk with numpy (``int_formats``); the few
float slots (sums, quantiles, ages) go through ``go_float``. The tests prove the bytes equal
``generate_latest``'s for the same families and values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How a slot's value is written, and the %-format spec that writes it (see int_formats).
# TEXT: a value written already (a float, or an integer past 2**53), which Template.render puts
# in its line rather than as an argument of a spec.
PLAIN, EXPONENT, EXPONENT_ONE_DIGIT, TEXT = 0, 1, 2, 3
_SPECS = ("%d.0\n", "%d.%0*de+%02d\n", "%de+%02d\n", "")
# which of a slot's four argument columns (lead, width, tail, exponent) its spec consumes
_USED = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)
_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
_GO_EXPONENT_FROM = 1_000_000  # floatToGoString writes positive floats from here as d.ddde+XX
_EXACT = 2**53  # every integer up to this is a float64 exactly, so repr shows all its digits


def go_float(value: float) -> str:
    """``floatToGoString(value)``, with a shortcut for the common case: a finite value below
    10**6 is written as Python's repr, which is what floatToGoString returns for it."""
    if -math.inf < value < _GO_EXPONENT_FROM:
        return repr(value)
    return floatToGoString(value)


def int_formats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """How to write each int64 value as ``floatToGoString(float(value))`` would: its kind
    (``PLAIN``, ``EXPONENT``, ``EXPONENT_ONE_DIGIT`` or ``TEXT``) and its arguments (lead,
    width, tail, exponent), those ``_USED`` marks, for the kind's spec in ``_SPECS``; no
    arguments (None) when every value is ``PLAIN``, its own single argument.

    Below 10**6, and for negative values, that is the integer followed by ``.0``. From 10**6 up
    it is the first digit, a dot and the other digits without their trailing zeros (no dot if
    none is left), then ``e+`` and the exponent: 12340000 is ``1.234e+07``. Past 2**53 the
    float is no longer the integer: ``TEXT``, left to floatToGoString.
    """
    kinds = np.zeros(values.shape, dtype=np.int64)  # PLAIN
    if values.size == 0 or (values.max() < _GO_EXPONENT_FROM and values.min() >= -_EXACT):
        return kinds, None  # the common case of a young engine: checked in two calls
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


class Template:
    """The exposition of ``families`` (prometheus_client families, in exposition order), whose
    samples are the slots, numbered in that order. A sample's value says what its slot holds:
    an ``int`` value an integer (formatted here), a ``float`` one a text the caller formats."""

    def __init__(self, families: Iterable[Metric]):
        heads: list[str] = []  # each slot's line up to its value, with the family's header
        prefixes: list[str] = []  # the same without the header
        family_of: list[int] = []
        is_text: list[bool] = []
        for number, family in enumerate(families):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Only(family))
            lines = generate_latest(registry).decode().splitlines(keepends=True)
            header = "".join(line for line in lines if line.startswith("#"))
            samples = [line for line in lines if not line.startswith("#")]
            if len(samples) != len(family.samples):  # e.g. a _created sample: not a slot
                raise ValueError(f"{family.name}: {len(samples)} lines for its samples")
            # a line ends with " <value>\n"; "%" would be read as a format spec
            line_prefixes = [line[: line.rindex(" ") + 1].replace("%", "%%") for line in samples]
            prefixes += line_prefixes
            heads += [header.replace("%", "%%") + prefix for prefix in line_prefixes]
            family_of += [number] * len(samples)
            is_text += [isinstance(s.value, float) for s in family.samples]
        self.slots = len(prefixes)
        self._family = np.array(family_of, dtype=np.int64)
        self._is_text = np.array(is_text, dtype=bool)
        self._starts = (prefixes, heads)  # [opens its family][slot]
        # every line in each way it can be written: [kind + 4 if it opens its family][slot]
        self._lines = np.empty((8, self.slots), dtype=object)
        for kind, spec in enumerate(_SPECS):
            for slot in range(self.slots):
                self._lines[kind, slot] = prefixes[slot] + spec
                self._lines[kind + 4, slot] = heads[slot] + spec

    def render(self, present: np.ndarray, ints: np.ndarray, texts: Mapping[int, str]) -> bytes:
        """The exposition of the slots ``present`` marks: integer slots from ``ints`` (one
        int64 per slot), the others from ``texts`` (slot -> the value as floatToGoString
        writes it: ``go_float``)."""
        slots = np.flatnonzero(present)
        if not slots.size:
            return b""
        family = self._family[slots]
        opens = np.empty(slots.size, dtype=np.int64)  # 1 where no earlier slot of its family
        opens[0] = 1
        np.not_equal(family[1:], family[:-1], out=opens[1:])
        numbers = ints[slots]
        kinds, args = int_formats(numbers)
        text_at = np.flatnonzero(self._is_text[slots] | (kinds == TEXT))
        kinds[text_at] = TEXT
        # every value plain (no args): one argument each, the value itself
        values = (numbers[kinds == PLAIN] if args is None else args[_USED[kinds]]).tolist()
        pieces = self._lines[kinds + 4 * opens, slots].tolist()
        # the few values written already (or past 2**53) go in their lines, not as arguments
        starts = self._starts
        for at, slot, first in zip(
            text_at.tolist(), slots[text_at].tolist(), opens[text_at].tolist(), strict=True
        ):
            text = texts[slot] if slot in texts else floatToGoString(float(ints[slot]))
            pieces[at] = f"{starts[first][slot]}{text}\n"
        return ("".join(pieces) % tuple(values)).encode()
