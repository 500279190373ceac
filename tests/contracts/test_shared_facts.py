"""Facts kept once in contracts/ and read by several parts: the parts agree with them.

Where two parts must agree (the service's [slo] and the CDK app's alarm thresholds, the tuning
profile's [cores] and the service's default layout, the stage masks of the kernels and the
supervisor), this proves it through their public surfaces, not by reading contracts twice.
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

from contracts import slo
from contracts.documents import finite_or_none, toml_value
from contracts.profile import TuningProfile
from contracts.stages import ALL_STAGES, STAGE_BITS, STAGES, stage_cores
from infra.config import DeploymentConfig
from service.config import SloConfig, default_cores


def test_slo_defaults_are_the_same_for_service_cdk_app_and_bench():
    service = SloConfig()
    cdk = DeploymentConfig()
    defaults = slo.default_objectives_us()
    assert defaults == {key: getattr(service, key) for key in defaults}
    assert (cdk.slo_p50_us, cdk.slo_p99_us, cdk.slo_p999_us) == tuple(defaults.values())


@pytest.mark.parametrize(
    ("workers", "expected"),
    [
        ([1, 2, 3, 4], {"feed": 1, "engine": 2, "gateway": 3}),
        ([5, 6, 7], {"feed": 5, "engine": 6, "gateway": 7}),
        ([2, 3], {"feed": 2, "engine": 3, "gateway": 3}),  # engine and gateway fused
        ([1], {"feed": 1, "engine": 1, "gateway": 1}),
    ],
)
def test_stage_cores_share_out_the_workers(workers, expected):
    assert stage_cores(workers) == expected


def test_the_profile_and_the_service_split_cores_the_same_way():
    for vcpus in (2, 3, 4, 8, 16, 64):
        profile = TuningProfile.for_vcpus(vcpus)
        assert profile.stage_cores() == stage_cores(profile.isolated)
    assert set(default_cores()) == set(STAGES)
    with pytest.raises(ValueError, match="no CPU"):
        stage_cores([])


def test_stage_bits_name_each_stage_once_and_all_of_them():
    assert len(set(STAGE_BITS)) == len(STAGES)
    assert ALL_STAGES == sum(STAGE_BITS) == (1 << len(STAGES)) - 1


def test_no_sample_figures_become_null_and_numbers_plain():
    doc = {"p99": math.nan, "max": math.inf, "n": np.int64(3), "x": [np.float64(1.5), math.nan]}
    assert finite_or_none(doc) == {"p99": None, "max": None, "n": 3, "x": [1.5, None]}
    assert type(finite_or_none(np.int64(3))) is int


@pytest.mark.parametrize("value", [True, False, 0, -7, 2**62, 0.05, 1e-6, 1e6, 'a "b"\\c', "é"])
def test_toml_values_read_back_as_written(value):
    assert tomllib.loads(f"k = {toml_value(value)}\n")["k"] == value


def test_toml_values_refuse_what_toml_cannot_say():
    with pytest.raises(TypeError, match="not a TOML"):
        toml_value([1, 2])
