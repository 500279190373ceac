"""Reading a Prometheus exposition back in tests: its samples by name, one sample's value."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples_of(exposition: bytes) -> dict[str, list]:
    """Sample name -> the samples of that name, in exposition order."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    matches = [s.value for s in samples[name] if s.labels == labels]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]
