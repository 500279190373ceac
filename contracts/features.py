"""The engine's features, by name and column: one list for the kernels that compute them
(``service.kernels.signals``), the model files that weigh them, and the market section of the
stats block that publishes them (``contracts.stats_layout``)."""

from __future__ import annotations

FEATURE_NAMES = (
    "mid_return",
    "microprice_offset",
    "spread_ticks",
    "imbalance",
    "volatility",
    "trade_flow",
)
N_FEATURES = len(FEATURE_NAMES)
