"""The lab's seed: user data taken from a template with its intrinsics resolved, and refused
when it holds one the lab cannot resolve; the NoCloud volume cloud-init reads."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lab import seed


def template(user_data) -> dict:
    return {
        "Resources": {
            "HostsHost2": {"Type": "AWS::EC2::Instance", "Properties": {"UserData": "second"}},
            "HostsHost1": {"Type": "AWS::EC2::Instance", "Properties": {"UserData": user_data}},
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
        }
    }


def test_the_first_hosts_user_data_with_its_intrinsics_resolved():
    user_data = {
        "Fn::Base64": {
            "Fn::Join": [
                "",
                [
                    "#!/bin/bash\n",
                    "region=",
                    {"Ref": "AWS::Region"},
                    "\n",
                    {"Fn::Sub": "stack=${AWS::StackName}\n"},
                ],
            ]
        }
    }
    assert seed.user_data(template(user_data)) == (
        "#!/bin/bash\nregion=eu-west-1\nstack=lowlat-lab\n"
    )


@pytest.mark.parametrize(
    ("user_data", "named"),
    [
        ({"Fn::Base64": {"Ref": "SomeBucket"}}, "Ref"),
        ({"Fn::Base64": {"Fn::GetAtt": ["Topic", "Arn"]}}, "Fn::GetAtt"),
        ({"Fn::Base64": {"Fn::Sub": "x=${Topic.Arn}"}}, "${Topic.Arn}"),
    ],
)
def test_an_intrinsic_the_lab_cannot_resolve_is_named(user_data, named):
    with pytest.raises(seed.SeedError, match="cannot resolve") as info:
        seed.user_data(template(user_data))
    assert named in str(info.value)


def test_a_template_without_hosts_is_refused():
    with pytest.raises(seed.SeedError, match="no AWS::EC2::Instance"):
        seed.user_data({"Resources": {}})


@pytest.mark.skipif(shutil.which("genisoimage") is None, reason="genisoimage is not installed")
@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="isoinfo is not installed")
def test_the_seed_is_a_cidata_volume_with_both_files(tmp_path):
    iso = seed.write_seed(tmp_path / "seed.iso", "#!/bin/bash\necho hi\n", "ssh-ed25519 AAAA k\n")
    info = subprocess.run(["isoinfo", "-d", "-i", iso], capture_output=True, text=True).stdout
    assert "Volume id: cidata" in info
    listing = subprocess.run(["isoinfo", "-J", "-f", "-i", iso], capture_output=True, text=True)
    assert set(listing.stdout.split()) == {"/user-data", "/meta-data"}
    meta = subprocess.run(["isoinfo", "-J", "-x", "/meta-data", "-i", iso], capture_output=True,
                          text=True).stdout  # fmt: skip
    assert "public-keys:\n  - ssh-ed25519 AAAA k\n" in meta
