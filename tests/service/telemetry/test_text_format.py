"""The template exposition writes what prometheus_client's generate_latest writes.

``service.telemetry.text_format`` formats values itself (integers in bulk with numpy, floats
through ``go_float``) to skip generate_latest's per-scrape work; these tests hold every way of
writing a value, and the families left out or kept, to generate_latest's own bytes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from service.telemetry.text_format import Template, go_float

INT64 = st.integers(-(2**63), 2**63 - 1)
# the edges where floatToGoString changes its way of writing an integer-valued float
EDGES = [0, 1, -1, 999_999, 10**6, 10**6 + 1, 12_340_000, 10**15, 2**53, 2**53 + 1, -(2**53) - 1]


class _Families(Collector):
    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self):
        return self._families


def reference(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def gauges(values: list[int | float], name: str = "x") -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, "Help with a % sign and a \\ backslash", labels=["i"])
    for i, v in enumerate(values):
        family.add_metric([str(i)], v)
    return family


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(INT64, st.sampled_from(EDGES)), min_size=1, max_size=40))
@example(EDGES)
@example([10**k for k in range(19)])
@example([10**k + 1 for k in range(19)])
def test_integers_are_written_as_floatToGoString_writes_their_float(values):
    template = Template([gauges([0] * len(values))])
    body = template.render(np.ones(len(values), bool), np.array(values, dtype=np.int64), {})
    assert body == reference([gauges([float(v) for v in values])])


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
@example(1e6)
@example(999_999.9999)
@example(1.7961582167081985e09)
@example(-0.0)
@example(1e16)
@example(-1e22)
def test_go_float_is_floatToGoString(value):
    assert go_float(value) == floatToGoString(value).encode()


def test_families_without_a_present_slot_are_left_out_header_and_all():
    families = [
        gauges([0, 0, 0], "a"),
        gauges([0.0, 0.0], "b"),
        CounterMetricFamily("c", "Counted", labels=["reason"]),
    ]
    families[2].add_metric(["x"], 0)
    families[2].add_metric(["y"], 0)
    template = Template(families)
    ints = np.array([5, 6, 7, 0, 0, 8, 9], dtype=np.int64)
    texts = {3: go_float(0.25), 4: go_float(1e-9)}  # as ASCII bytes
    for present in ([1, 1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0], [0] * 7):
        mask = np.array(present, dtype=bool)
        expected = []
        for number, (first, values) in enumerate(
            [(0, [5.0, 6.0, 7.0]), (3, [0.25, 1e-9]), (5, [8.0, 9.0])]
        ):
            kept = [i for i in range(len(values)) if mask[first + i]]
            if not kept:
                continue
            family = [gauges, gauges, None][number]
            if family is None:
                counter = CounterMetricFamily("c", "Counted", labels=["reason"])
                for i in kept:
                    counter.add_metric(["xy"[i]], values[i])
                expected.append(counter)
            else:
                whole = family(values, "ab"[number])
                whole.samples = [whole.samples[i] for i in kept]
                expected.append(whole)
        assert template.render(mask, ints, texts) == reference(expected), present
