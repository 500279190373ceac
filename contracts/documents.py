"""How lowlat writes the documents people and scripts read: JSON and TOML values.

JSON stays strict: a figure with no samples is NaN inside the service and ``null`` in every
document (``--json``, ``/latest``, bench reports), and numpy scalars become plain numbers.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in nested dicts and lists) made None."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    # numpy scalars become plain numbers; numpy is not imported for that (the tuning profile
    # reads this module, and check-host and the renderers start without numpy): where no
    # numpy is loaded, no value can be one of its scalars
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def toml_value(value: Any) -> str:
    """One TOML value: booleans, numbers, strings (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"{value!r} is not a TOML boolean, number or string")
