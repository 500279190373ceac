"""The release record and what rollback and pruning choose from it (contracts/release_layout.py),
and small pure parts of ops: the host's platform tags (ops/remote.py), --since as journalctl
takes it (ops/inspect.py), the runtime requirements a release ships (ops/build.py)."""

from __future__ import annotations

import re
import tomllib
import zipfile

import pytest

from contracts import release_layout as L
from ops import build, remote
from ops import inspect as inspect_ops
from ops.hosts import OpsError
from tests.support.paths import REPO

A = "20261101T000000Z-aaaaaaaaaaaa"
B = "20261102T000000Z-bbbbbbbbbbbb"
C = "20261103T000000Z-cccccccccccc"


def records(*lines: tuple[str, str]) -> list[L.Record]:
    return [L.Record(f"2026-11-0{i}T00:00:00+00:00", a, r, "-", "op") for i, (a, r) in
            enumerate(lines, 1)]  # fmt: skip


def test_record_lines_round_trip_and_junk_is_skipped():
    rec = records(("deploy", A), ("rollback", A))
    text = "\n".join(r.line() for r in rec) + "\n# a note someone wrote\nnot a record\n"
    assert L.parse_record(text) == rec


def test_previous_is_the_release_deployed_before_the_current_one():
    rec = records(("adopt", L.IMAGE_RELEASE), ("deploy", A), ("deploy", B), ("deploy", C))
    existing = {L.IMAGE_RELEASE, A, B, C}
    assert L.previous_release(rec, C, existing) == B
    # after rolling back to B, the next rollback goes to A, not back to C
    rec += records(("rollback", B))
    assert L.previous_release(rec, B, existing) == A
    assert L.previous_release(rec, A, existing) == L.IMAGE_RELEASE
    assert L.previous_release(rec, L.IMAGE_RELEASE, existing) is None


def test_previous_skips_releases_whose_directory_is_gone():
    rec = records(("deploy", A), ("deploy", B), ("deploy", C))
    assert L.previous_release(rec, C, {A, C}) == A
    assert L.previous_release(rec, C, {C}) is None


def test_prune_keeps_the_newest_and_never_the_protected():
    existing = {L.IMAGE_RELEASE, A, B, C}
    assert L.to_prune(existing, 2, {C}) == [A, L.IMAGE_RELEASE]
    assert L.to_prune(existing, 2, {C, L.IMAGE_RELEASE}) == [A]
    assert L.to_prune(existing, 5, {C}) == []


def test_platform_tags_follow_the_hosts_glibc():
    al2023 = remote.HostFacts("aarch64", "3.11", (2, 34))
    tags = al2023.platforms
    assert tags[0] == "manylinux_2_34_aarch64" and "manylinux_2_28_aarch64" in tags
    assert tags[-1] == "manylinux2014_aarch64" and al2023.abi == "cp311"
    al2 = remote.HostFacts("aarch64", "3.11", (2, 26))
    assert "manylinux_2_28_aarch64" not in al2.platforms  # numba's aarch64 wheels need 2.28


@pytest.mark.parametrize(
    ("given", "expected"),
    [("15m", "-15m"), ("1h", "-1h"), ("2d", "-2d"), ("2026-11-21 13:00", "2026-11-21 13:00"),
     ("today", "today")],
)  # fmt: skip
def test_since_as_journalctl_takes_it(given, expected):
    assert inspect_ops.journal_since(given) == expected


@pytest.mark.parametrize("given", ["", "1 parsec", "-1h; reboot", "1h ago"])
def test_bad_since_is_one_clear_error(given):
    with pytest.raises(OpsError, match="use a duration like 15m"):
        inspect_ops.journal_since(given)


OPERATOR_LIBRARIES = ("aws-cdk-lib", "constructs", "cdk-nag", "fabric", "boto3", "matplotlib")


def test_runtime_requirements_leave_out_the_operators_libraries(tmp_path):
    # the METADATA setuptools writes from pyproject.toml: the operator's libraries in extras
    wheel = tmp_path / "lowlat-0.1.0-py3-none-any.whl"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: lowlat",
            "Requires-Dist: numba>=0.60",
            "Requires-Dist: uvicorn[standard]>=0.29",
            "Provides-Extra: infra",
            'Requires-Dist: aws-cdk-lib<3,>=2.275; extra == "infra"',
            'Requires-Dist: cdk_nag<3,>=2.38; extra == "infra"',
            "Provides-Extra: ops",
            'Requires-Dist: fabric<4,>=3.2; extra == "ops"',
            'Requires-Dist: boto3>=1.35; extra == "ops"',
            "Provides-Extra: dev",
            'Requires-Dist: pytest>=8; extra == "dev"',
            'Requires-Dist: lowlat[infra,ops]; extra == "dev"',
        ]
    )
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("lowlat-0.1.0.dist-info/METADATA", metadata)
    assert build.runtime_requirements(wheel) == ["numba>=0.60", "uvicorn[standard]>=0.29"]


def test_the_projects_base_dependencies_hold_no_operator_library():
    # What makes runtime_requirements enough: the wheel's base Requires-Dist is pyproject's
    # [project] dependencies, and the operator's libraries live in extras, never there.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\s\[<>=!~;(]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert not names & set(OPERATOR_LIBRARIES), names & set(OPERATOR_LIBRARIES)
    extras = {
        re.split(r"[\s\[<>=!~;(]", d, maxsplit=1)[0].lower()
        for group in ("infra", "ops")
        for d in project["optional-dependencies"][group]
    }
    assert set(OPERATOR_LIBRARIES) <= extras
