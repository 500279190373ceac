"""Model files: the engine's weights, read and checked off the hot path.

A model is linear in the features of ``service.kernels.signals`` (``FEATURE_NAMES``); the file
names each weight by its feature, so its order never matters. ``load_model`` refuses a file it
cannot use with one ``ModelError`` line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import math
import tomllib
from importlib.resources import files
from pathlib import Path

import numpy as np

from contracts.errors import LowlatError
from contracts.features import FEATURE_NAMES, N_FEATURES
from service.kernels.signals import MODEL_KINDS, Model


class ModelError(LowlatError, ValueError):
    """A model file that cannot be used, with the file, the key and what would be allowed."""


def default_model_path() -> Path:
    """The model shipped inside the package (service/runtime/default_model.toml)."""
    return Path(str(files(__package__).joinpath("default_model.toml")))


def _finite_number(path: Path, key: str, value) -> float:
    # bool is an int in Python; `true` as a weight is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelError(f"{path}: {key} = {value!r}: must be a finite number")
    return float(value)


def load_model(path) -> Model:
    """Read a model file; raises ModelError naming the file, the key and what is allowed.

    Format::

        kind = "logistic"        # or "linear"
        bias = 0.1               # optional, default 0.0
        [weights]                # one finite number per feature name; a missing one is 0.0
        mid_return = 4.0
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ModelError(
            f"{path}: not UTF-8 text (byte {exc.start}): a model file is TOML, see "
            "service/runtime/default_model.toml"
        ) from None

    allowed = ("kind", "bias", "weights")
    for key in data:
        if key not in allowed:
            raise ModelError(f"{path}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
    kind = data.get("kind")
    if kind not in MODEL_KINDS:
        shown = "missing" if kind is None else f"{kind!r}"
        raise ModelError(f'{path}: kind is {shown}; allowed: "logistic" or "linear"')
    bias = _finite_number(path, "bias", data.get("bias", 0.0))
    table = data.get("weights")
    if not isinstance(table, dict):
        raise ModelError(
            f"{path}: weights must be a [weights] table of feature = number "
            f"(features: {', '.join(FEATURE_NAMES)})"
        )
    weights = np.zeros(N_FEATURES, dtype=np.float64)
    for name, value in table.items():
        if name not in FEATURE_NAMES:
            raise ModelError(
                f"{path}: weights.{name}: unknown feature; known features: "
                f"{', '.join(FEATURE_NAMES)}"
            )
        weights[FEATURE_NAMES.index(name)] = _finite_number(path, f"weights.{name}", value)
    return Model(weights=weights, bias=bias, logistic=kind == "logistic")
