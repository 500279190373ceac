"""Names the tests compare across parts: every family GET /metrics can expose."""

from __future__ import annotations

from contracts.metric_names import FAMILIES

# As written in the exposition: counters carry their ``_total``; a histogram family ``X`` is
# exposed as the samples ``X_bucket``, ``X_count`` and ``X_sum``.
EXPORTED_NAMES = tuple(spec.name for spec in FAMILIES)
