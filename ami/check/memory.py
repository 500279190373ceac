"""Memory: hugepages, transparent hugepages and khugepaged, swap, the memlock limit the engine
runs with, and the hugetlbfs mount its segments live on.

- ``thp_khugepaged`` passes when ``khugepaged/defrag`` is 0, or when THP is ``[never]``: the
  kernel stops khugepaged then, so it collapses and compacts nothing whatever ``defrag`` says.
- ``memlock`` reads ``Max locked memory`` in /proc/<pid>/limits of the running engine (its
  supervisor, found by the command line ``trading-service run``, and the stage processes it
  spawned); with no engine running, the rendered unit (``LimitMEMLOCK=infinity``) and limits file
  (sessions of the service user) must say unlimited.
- ``shm_dir``: the segments are files on hugetlbfs, not SysV shared memory, so kernel.shmmax and
  shmall do not bound them; the mount and the hugepages pool do.
"""

from __future__ import annotations

import re

from ami.check.model import FAIL, NA, PASS, Check
from ami.check.read import Host, Proc
from ami.render import ENGINE_UNIT, LIMITS_CONF
from contracts.profile import HUGEPAGE_KB

THP = "sys/kernel/mm/transparent_hugepage"
RESTART_TUNE = "lowlat-tune sets it at boot (systemctl restart lowlat-tune)"
ENGINE_COMMAND = "trading-service run"
APPLY = "python -m ami apply --root / writes it; then systemctl daemon-reload"


def check_hugepages(host: Host) -> Check:
    profile = host.profile
    base = f"sys/kernel/mm/hugepages/hugepages-{HUGEPAGE_KB}kB"
    expected = f">= {profile.hugepages} pages of {HUGEPAGE_KB} kB"
    total, free = host.read(f"{base}/nr_hugepages"), host.read(f"{base}/free_hugepages")
    try:
        n = int((total or "").strip())
    except ValueError:
        if profile.hugepages == 0:
            return Check("hugepages", PASS, expected, "missing", "none needed")
        return Check("hugepages", FAIL, expected, "missing", f"no {HUGEPAGE_KB} kB hugepages")
    observed = f"total {n}, free {(free or '?').strip()}"
    if n >= profile.hugepages:
        return Check("hugepages", PASS, expected, observed)
    return Check(
        "hugepages",
        FAIL,
        expected,
        observed,
        f"{profile.hugepages - n} pages short: hugepages= on the command line reserves them at "
        "boot, before memory fragments",
    )


def check_thp(host: Host) -> Check:
    text = host.read(f"{THP}/enabled")
    if text is None:
        return Check("thp", NA, "[never]", "missing", "this kernel has no transparent hugepages")
    observed = text.strip()
    if "[never]" in observed:
        return Check("thp", PASS, "[never]", observed)
    return Check(
        "thp", FAIL, "[never]", observed, f"khugepaged may stall the stages' pages: {RESTART_TUNE}"
    )


def check_thp_defrag(host: Host) -> Check:
    text = host.read(f"{THP}/defrag")
    if text is None:
        return Check("thp_defrag", NA, "[never]", "missing", "this kernel has no THP defrag")
    observed = text.strip()
    if "[never]" in observed:
        return Check("thp_defrag", PASS, "[never]", observed)
    return Check(
        "thp_defrag",
        FAIL,
        "[never]",
        observed,
        f"a THP allocation may stall in direct compaction: {RESTART_TUNE}",
    )


def check_khugepaged(host: Host) -> Check:
    expected = "khugepaged/defrag 0, or khugepaged stopped (THP [never])"
    text = host.read(f"{THP}/khugepaged/defrag")
    if text is None:
        return Check("thp_khugepaged", NA, expected, "missing", "this kernel has no khugepaged")
    enabled = host.read(f"{THP}/enabled") or ""
    observed = f"defrag {text.strip()}, THP {enabled.strip() or 'unknown'}"
    if text.strip() == "0":
        return Check("thp_khugepaged", PASS, expected, observed)
    if "[never]" in enabled:
        return Check(
            "thp_khugepaged",
            PASS,
            expected,
            observed,
            "THP is never, so the kernel keeps khugepaged stopped: it compacts nothing",
        )
    return Check(
        "thp_khugepaged",
        FAIL,
        expected,
        observed,
        "khugepaged runs and compacts memory to collapse huge pages: set THP to never (the thp "
        f"check) or echo 0 > /{THP}/khugepaged/defrag",
    )


def check_swap(host: Host) -> Check:
    text = host.read("proc/swaps")
    if text is None:
        return Check("swap", NA, "no swap", "missing", "no /proc/swaps: this kernel has no swap")
    active = [line.split()[0] for line in text.splitlines()[1:] if line.strip()]
    if not active:
        return Check("swap", PASS, "no swap", "none")
    return Check(
        "swap",
        FAIL,
        "no swap",
        ", ".join(active),
        "a page of the service swapped out is a millisecond stall: lowlat-tune runs swapoff -a "
        "at boot (systemctl restart lowlat-tune); take the entry out of /etc/fstab too",
    )


def engine_processes(host: Host) -> list[Proc]:
    """The engine's supervisor(s) (``trading-service run``) and the processes they started."""
    supervisors = {
        p.pid
        for p in host.processes
        if any(
            a.endswith("trading-service") and b == "run"
            for a, b in zip(p.cmdline, p.cmdline[1:], strict=False)
        )
    }
    return [p for p in host.processes if p.pid in supervisors or _ppid(p) in supervisors]


def _ppid(proc: Proc) -> int | None:
    value = proc.field("PPid")
    return int(value) if value and value.isdigit() else None


def _memlock(host: Host, pid: int) -> str | None:
    """ "soft hard" of Max locked memory in /proc/<pid>/limits."""
    text = host.read(f"proc/{pid}/limits") or ""
    match = re.search(r"^Max locked memory\s+(\S+)\s+(\S+)", text, re.MULTILINE)
    return f"{match.group(1)} {match.group(2)}" if match else None


def check_memlock(host: Host) -> Check:
    user = host.profile.service_user
    expected = "Max locked memory unlimited for the engine's processes"
    engine = engine_processes(host)
    if engine:
        limits = {p.pid: _memlock(host, p.pid) for p in engine}
        wrong = [
            f"pid {pid}: {value or 'unreadable'}"
            for pid, value in sorted(limits.items())
            if value != "unlimited unlimited"
        ]
        if not wrong:
            return Check(
                "memlock", PASS, expected, f"unlimited in {len(engine)} engine process(es)"
            )
        return Check(
            "memlock",
            FAIL,
            expected,
            "; ".join(wrong[:5]),
            "mlock of the rings and stats block can fail or be capped: LimitMEMLOCK=infinity in "
            f"{ENGINE_UNIT} ({APPLY}), then systemctl restart lowlat-engine",
        )
    unit = host.read(ENGINE_UNIT) or ""
    limits_conf = host.read(LIMITS_CONF) or ""
    missing = []
    if "LimitMEMLOCK=infinity" not in unit.splitlines():
        missing.append(f"{ENGINE_UNIT} has no LimitMEMLOCK=infinity")
    kinds = set(
        re.findall(rf"^{re.escape(user)}\s+(\S+)\s+memlock\s+unlimited\s*$", limits_conf, re.M)
    )
    if "-" not in kinds and not {"soft", "hard"} <= kinds:
        missing.append(f"{LIMITS_CONF} has no '{user} - memlock unlimited'")
    if missing:
        return Check("memlock", FAIL, expected, "; ".join(missing), f"engine not running; {APPLY}")
    return Check(
        "memlock",
        PASS,
        expected,
        f"engine not running; its unit and {LIMITS_CONF} say unlimited",
        "checked in /proc/<pid>/limits while the engine runs",
    )


def _mount_of(mounts: str, path: str) -> tuple[str, str] | None:
    """(mount point, fs type) of the mount holding ``path`` in /proc/mounts text."""
    best: tuple[str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fields[2])
    return best


def check_shm_dir(host: Host) -> Check:
    shm_dir = host.profile.shm_dir
    fstype = "tmpfs" if shm_dir == "/dev/shm" or shm_dir.startswith("/dev/shm/") else "hugetlbfs"
    expected = f"{shm_dir} on {fstype}"
    mounts = host.read("proc/mounts")
    if mounts is None:
        return Check("shm_dir", FAIL, expected, "missing", "cannot read /proc/mounts")
    mount = _mount_of(mounts, shm_dir)
    on = f"{mount[0]} ({mount[1]})" if mount else "no mount"
    if mount is None or mount[1] != fstype:
        return Check(
            "shm_dir",
            FAIL,
            expected,
            f"{shm_dir} is on {on}",
            f"the segments need {fstype} there: systemd mounts hugetlbfs on /dev/hugepages "
            "(dev-hugepages.mount) when the kernel has hugepages",
        )
    if not host.path(shm_dir).is_dir():
        return Check(
            "shm_dir",
            FAIL,
            expected,
            f"{on}, no {shm_dir}",
            "lowlat-tune creates the directory at boot (systemctl restart lowlat-tune)",
        )
    return Check("shm_dir", PASS, expected, f"{shm_dir} on {on}")


def checks(host: Host) -> list[Check]:
    return [
        check_hugepages(host),
        check_thp(host),
        check_thp_defrag(host),
        check_khugepaged(host),
        check_swap(host),
        check_memlock(host),
        check_shm_dir(host),
    ]
