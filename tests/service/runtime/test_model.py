"""Model files (``service.runtime.model``): the shipped default and every way a file is refused."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.features import FEATURE_NAMES, N_FEATURES
from service.runtime.model import ModelError, default_model_path, load_model


def test_default_model_loads_with_documented_signs():
    path = default_model_path()
    assert path.is_file() and path.parent.name == "runtime"
    model = load_model(path)
    w = dict(zip(FEATURE_NAMES, model.weights, strict=True))
    assert model.logistic is True
    for name in ("mid_return", "microprice_offset", "imbalance", "trade_flow"):
        assert w[name] > 0, name
    for name in ("spread_ticks", "volatility"):
        assert -0.5 < w[name] < 0, name
    assert model.weights.dtype == np.float64 and model.weights.shape == (N_FEATURES,)


def write(tmp_path, text):
    path = tmp_path / "model.toml"
    path.write_text(text)
    return path


def test_missing_weights_are_zero_and_ints_are_accepted(tmp_path):
    model = load_model(write(tmp_path, 'kind = "linear"\n[weights]\nimbalance = 2\n'))
    assert model.logistic is False and model.bias == 0.0
    assert model.weights.tolist() == [0.0, 0.0, 0.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('kind = "logistic"\n[weights]\nspred_ticks = 1.0\n', "weights.spred_ticks: unknown"),
        ('kind = "probit"\n[weights]\n', "kind is 'probit'"),
        ("[weights]\nimbalance = 1.0\n", "kind is missing"),
        ('kind = "linear"\n[weights]\nimbalance = "high"\n', "weights.imbalance = 'high'"),
        ('kind = "linear"\n[weights]\nimbalance = nan\n', "weights.imbalance = nan"),
        ('kind = "linear"\n[weights]\nimbalance = inf\n', "weights.imbalance = inf"),
        ('kind = "linear"\n[weights]\nimbalance = true\n', "weights.imbalance = True"),
        ('kind = "linear"\nbias = "0.1"\n[weights]\n', "bias = '0.1'"),
        ('kind = "linear"\n', "weights must be a [weights] table"),
        ('kind = "linear"\nweight = 1\n[weights]\n', "unknown key 'weight'"),
        ('kind = "linear"\n[weights\n', "not valid TOML"),
    ],
)
def test_model_errors_name_the_file_and_the_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_unknown_feature_error_lists_the_known_ones(tmp_path):
    with pytest.raises(ModelError, match="known features: mid_return, microprice_offset"):
        load_model(write(tmp_path, 'kind = "linear"\n[weights]\nfoo = 1.0\n'))


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model(tmp_path / "absent.toml")
