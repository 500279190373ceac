"""check-host's memory checks beyond the first twelve: THP defrag, khugepaged, swap, the
engine's memlock limit, the segments' mount. Crafted trees: tuned, untuned, half-tuned."""

from __future__ import annotations

import shutil

import pytest

from ami.check import Check, check_host
from ami.render import ENGINE_UNIT, LIMITS_CONF
from tests.support.host_tree import LIMITS_UNLIMITED, tuned_tree, write

THP = "sys/kernel/mm/transparent_hugepage"


def check(root, name: str) -> Check:
    return check_host(root, irq_window_s=0).check(name)


@pytest.fixture
def tuned(tmp_path):
    return tuned_tree(tmp_path)


def test_thp_defrag(tuned, tmp_path_factory):
    assert check(tuned, "thp_defrag").status == "pass"
    write(tuned, f"{THP}/defrag", "always defer defer+madvise [madvise] never\n")
    c = check(tuned, "thp_defrag")
    assert c.status == "fail" and "systemctl restart lowlat-tune" in c.detail
    assert check(tmp_path_factory.mktemp("empty"), "thp_defrag").status == "not_applicable"


def test_khugepaged_stopped_by_thp_never_or_defrag_0(tuned):
    c = check(tuned, "thp_khugepaged")  # defrag 1, THP [never]: khugepaged does not run
    assert c.status == "pass" and c.observed == "defrag 1, THP always madvise [never]"
    assert "stopped" in c.detail
    write(tuned, f"{THP}/enabled", "always [madvise] never\n")  # half-tuned: THP on
    c = check(tuned, "thp_khugepaged")
    assert c.status == "fail" and "khugepaged/defrag" in c.detail
    write(tuned, f"{THP}/khugepaged/defrag", "0\n")
    assert check(tuned, "thp_khugepaged").status == "pass"


def test_swap(tuned, tmp_path_factory):
    assert (check(tuned, "swap").status, check(tuned, "swap").observed) == ("pass", "none")
    swaps = (tuned / "proc/swaps").read_text() + "/swapfile file 1048572 0 -2\n"
    write(tuned, "proc/swaps", swaps)
    c = check(tuned, "swap")
    assert (c.status, c.observed) == ("fail", "/swapfile")
    assert "swapoff -a" in c.detail and "/etc/fstab" in c.detail
    assert check(tmp_path_factory.mktemp("empty"), "swap").status == "not_applicable"


def test_memlock_of_the_running_engine(tuned):
    c = check(tuned, "memlock")
    assert (c.status, c.observed) == ("pass", "unlimited in 2 engine process(es)")  # + a stage
    write(
        tuned,
        "proc/101/limits",
        LIMITS_UNLIMITED.replace("unlimited            unlimited", "65536                65536"),
    )
    c = check(tuned, "memlock")
    assert (c.status, c.observed) == ("fail", "pid 101: 65536 65536")
    assert "LimitMEMLOCK=infinity" in c.detail and "restart lowlat-engine" in c.detail


def test_memlock_engine_not_running_reads_the_rendered_files(tuned):
    for pid in (100, 101):
        shutil.rmtree(tuned / f"proc/{pid}")
    c = check(tuned, "memlock")
    assert c.status == "pass" and c.observed.startswith("engine not running")
    write(tuned, LIMITS_CONF, "lowlat hard memlock unlimited\n")  # soft still capped
    c = check(tuned, "memlock")
    assert c.status == "fail" and "'lowlat - memlock unlimited'" in c.observed
    write(tuned, LIMITS_CONF, "lowlat soft memlock unlimited\nlowlat hard memlock unlimited\n")
    assert check(tuned, "memlock").status == "pass"
    (tuned / ENGINE_UNIT.lstrip("/")).unlink()
    c = check(tuned, "memlock")
    assert c.status == "fail" and "no LimitMEMLOCK=infinity" in c.observed
    assert "python -m ami apply" in c.detail


def test_shm_dir_mount_and_directory(tuned):
    c = check(tuned, "shm_dir")
    assert (c.status, c.observed) == (
        "pass",
        "/dev/hugepages/lowlat on /dev/hugepages (hugetlbfs)",
    )
    (tuned / "dev/hugepages/lowlat").rmdir()
    c = check(tuned, "shm_dir")
    assert c.status == "fail" and "lowlat-tune creates" in c.detail
    write(tuned, "proc/mounts", "devtmpfs /dev devtmpfs rw 0 0\n/dev/root / ext4 rw 0 0\n")
    c = check(tuned, "shm_dir")
    assert (c.status, c.observed) == ("fail", "/dev/hugepages/lowlat is on /dev (devtmpfs)")
    assert "dev-hugepages.mount" in c.detail
