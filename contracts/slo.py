"""The latency objectives lowlat is judged by, and their defaults.

The service's ``[slo]`` section, the CDK app's alarms and dashboard (``sloTickToOrder*Us``
context keys) and ``fab bench``'s verdict all start from these defaults, so an objective changed
here is changed everywhere. Each is a tick-to-order percentile in microseconds.
"""

from __future__ import annotations

# [slo] key -> (default in microseconds, what it bounds)
TICK_TO_ORDER_OBJECTIVES_US = {
    "tick_to_order_p50_us": (5.0, "tick-to-order median objective, microseconds"),
    "tick_to_order_p99_us": (50.0, "tick-to-order 99th percentile objective, microseconds"),
    "tick_to_order_p999_us": (500.0, "tick-to-order 99.9th percentile objective, microseconds"),
}
MIN_OBJECTIVE_US = 0.1
MAX_OBJECTIVE_US = 1e6


def default_objectives_us() -> dict[str, float]:
    """Every objective at its default: ``{"tick_to_order_p50_us": 5.0, ...}``."""
    return {key: default for key, (default, _) in TICK_TO_ORDER_OBJECTIVES_US.items()}
