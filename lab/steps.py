"""The lab's steps against a booted host, each returning its part of ``summary.json``.

Every step is the product's own path: the user data the CDK app synthesizes, the real ``fab``
tasks over SSH, the real systemd on the host, a real Prometheus here. A step returns a dict with
``ok`` and what it measured; it raises ``StepError`` (one line) when it cannot go on.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from contracts.profile import TuningProfile, cpulist, load_profile
from lab.remote import Remote

REBOOT_MARKER = "/var/lib/lowlat/userdata-rebooted"

# check-host's checks that cannot pass on the lab's host, each with why; every one of them holds
# on a real c6g. Any other failure fails the step.
CANNOT_PASS_HERE = {
    "chrony_synced": "the Amazon Time Sync Service (169.254.169.123, the profile's only source) "
    "answers only inside EC2; QEMU's user networking has no route to it",
}


class StepError(Exception):
    """A step failed: one line saying what was expected and what was found."""


def installed_profile(remote: Remote, workdir) -> TuningProfile:
    text = remote.ssh("cat /etc/lowlat/profile.toml").stdout
    path = workdir / "profile.toml"
    path.write_text(text)
    vcpus = int(remote.ssh("nproc --all").stdout.strip() or 2)
    return load_profile(path, vcpus)


def wait_tuned(remote: Remote, timeout: float) -> dict[str, Any]:
    """The user data ran, wrote the kernel arguments and rebooted once: the running kernel has
    them. Connections drop during the reboot; they are retried until ``timeout``."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            r = remote.ssh(
                "cat /proc/cmdline; cat /sys/devices/system/cpu/isolated; "
                "cat /sys/devices/system/cpu/nohz_full; "
                "cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; "
                f"test -e {REBOOT_MARKER} && echo rebooted; "
                "cloud-init status 2>/dev/null | tail -1",
                timeout=60,
            )
        except Exception as exc:
            last = f"{type(exc).__name__}"
            time.sleep(5)
            continue
        lines = r.stdout.splitlines()
        if r.returncode in (0, 1) and len(lines) >= 4 and "nohz_full=" in lines[0]:
            return {
                "ok": True,
                "cmdline": lines[0],
                "isolated": lines[1],
                "nohz_full": lines[2],
                "hugepages": int(lines[3]) if lines[3].isdigit() else lines[3],
                "seconds": round(time.monotonic() - start, 1),
            }
        last = (lines[0] if lines else r.stderr.strip()[-200:]) or f"exit {r.returncode}"
        time.sleep(10)
    raise StepError(f"the host did not come back with the profile's kernel arguments: {last}")


def check_boot(result: dict[str, Any], profile: TuningProfile) -> dict[str, Any]:
    """The kernel after the reboot runs with the profile's isolcpus, nohz_full, rcu_nocbs and
    hugepages, read back from /proc/cmdline and sysfs."""
    cmdline = result["cmdline"].split()
    missing = [arg for arg in profile.kernel_args() if arg not in cmdline]
    isolated = cpulist(profile.isolated)
    problems = []
    if missing:
        problems.append(f"missing from /proc/cmdline: {' '.join(missing)}")
    if result["isolated"] != isolated:
        problems.append(f"isolated CPUs {result['isolated']!r}, the profile's {isolated!r}")
    if result["nohz_full"] != isolated:
        problems.append(f"nohz_full CPUs {result['nohz_full']!r}, the profile's {isolated!r}")
    if result["hugepages"] != profile.hugepages:
        problems.append(f"{result['hugepages']} hugepages, the profile's {profile.hugepages}")
    return {**result, "ok": not problems, "problems": problems}


def fab_result(name: str, result) -> dict[str, Any]:
    """A ``fab`` run as a summary entry: ok, seconds, its last lines."""
    tail = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-20:]
    return {"ok": result.returncode == 0, "exit": result.returncode, "output": tail}


def check_host_counts(remote: Remote) -> dict[str, Any]:
    """check-host's verdict on the host, from its JSON (what ``fab check-host`` prints)."""
    r = remote.sudo(
        "/opt/lowlat/current/venv/bin/trading-service check-host --json "
        "--profile /etc/lowlat/profile.toml",
        timeout=600,
    )
    try:
        doc = json.loads(r.stdout)
    except ValueError as exc:
        raise StepError(
            f"check-host gave no JSON (exit {r.returncode}): {r.stderr[-200:]}"
        ) from exc
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    na = [c for c in doc["checks"] if c["status"] == "not_applicable"]
    s = doc["summary"]
    return {
        "passed": s["passed"],
        "failed": s["failed"],
        "not_applicable": s["not_applicable"],
        "failed_names": [c["name"] for c in failed],
        "unexpected_failures": [c["name"] for c in failed if c["name"] not in CANNOT_PASS_HERE],
        "cannot_pass_here": {
            c["name"]: CANNOT_PASS_HERE[c["name"]] for c in failed if c["name"] in CANNOT_PASS_HERE
        },
        "failed_details": {c["name"]: f"{c['observed']}: {c.get('detail', '')}" for c in failed},
        "not_applicable_reasons": {c["name"]: c.get("detail", "") for c in na},
    }


def ready(remote: Remote, port: int = 8000) -> int:
    """/ready's status code on the host (0: no answer)."""
    r = remote.ssh(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/ready")
    code = r.stdout.strip()
    return int(code) if re.fullmatch(r"\d{3}", code) else 0


def wait_ready(remote: Remote, timeout: float) -> dict[str, Any]:
    """/ready answers 200 within ``timeout``."""
    start = time.monotonic()
    code = 0
    while time.monotonic() - start < timeout:
        code = ready(remote)
        if code == 200:
            return {"ok": True, "seconds": round(time.monotonic() - start, 1)}
        time.sleep(5)
    return {"ok": False, "last_code": code, "seconds": round(time.monotonic() - start, 1)}


def kill_engine_and_wait(remote: Remote, timeout: float) -> dict[str, Any]:
    """``kill -9`` of the engine: systemd starts it again, /ready is 200 again in time."""
    pid = remote.ssh("systemctl show -p MainPID --value lowlat-engine").stdout.strip()
    if not pid.isdigit() or pid == "0":
        raise StepError(f"the engine is not running (MainPID {pid!r})")
    remote.sudo(f"kill -9 {pid}")
    time.sleep(2)
    back = wait_ready(remote, timeout)
    new = remote.ssh("systemctl show -p MainPID,NRestarts --value lowlat-engine").stdout.split()
    restarted = bool(new) and new[0] not in (pid, "0")
    return {"ok": back["ok"] and restarted, "killed_pid": int(pid), "new_pid": new[:1],
            "restarts": new[1:2], "ready_after_s": back["seconds"]}  # fmt: skip


def prometheus(workdir, port: int, needed: list[str]) -> dict[str, Any]:
    """A real Prometheus here scrapes the host's /metrics through the forwarded port: trading_up
    is 1 and every metric an alarm reads is there."""
    import shutil
    import subprocess
    import urllib.parse
    import urllib.request

    from lab.vm import free_port

    if shutil.which("prometheus") is None:
        raise StepError("prometheus is not installed here (apt-get install prometheus)")
    web = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 2s, scrape_timeout: 2s}\nscrape_configs:\n"
        f"  - job_name: lowlat-lab\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def query(promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response)["data"]["result"])

    try:
        deadline = time.monotonic() + 120
        up: float | None = None
        while time.monotonic() < deadline and up != 1:
            time.sleep(3)
            try:
                result = query("trading_up")
            except OSError:
                continue
            up = float(result[0]["value"][1]) if result else None
        names = {r["metric"]["__name__"] for r in query('{__name__=~"trading_.+"}')}
        missing = sorted(n for n in needed if n not in names)
        return {"ok": up == 1 and not missing, "trading_up": up, "series_names": len(names),
                "alarm_metrics": len(needed), "missing": missing}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


RING_ITEMS = 1_000_000
RING_STRESS = (
    "import json, sys; from service.bench.measures import measure_ring_throughput as m; "
    "rate = m([0, 1], int(sys.argv[1]), 0); print(json.dumps({'items_per_s': rate}))"
)


def ring_stress(remote: Remote, ready_timeout: float) -> dict[str, Any]:
    """The shared-memory ring between two processes pinned to cpu0 and cpu1 (the c6g.large
    shape has one isolated CPU), 1M items: aarch64 code with its acquire/release instructions,
    executed. ``measure_ring_throughput`` checks order and checksum and raises otherwise. The
    engine is stopped meanwhile (its stage spins on cpu1) and started again after."""
    remote.sudo("systemctl stop lowlat-engine", timeout=120)
    try:
        venv = "/opt/lowlat/current/venv/bin/python"
        r = remote.sudo(
            f'cd /tmp && NUMBA_CACHE_DIR=/tmp/lowlat-lab-numba {venv} -c "{RING_STRESS}" '
            f"{RING_ITEMS}",
            timeout=1800,
        )
    finally:
        remote.sudo("systemctl start lowlat-engine", timeout=120)
    back = wait_ready(remote, ready_timeout)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "items": RING_ITEMS, "error": last, "ready_after": back}
    rate = json.loads(r.stdout.strip().splitlines()[-1])["items_per_s"]
    return {"ok": back["ok"], "items": RING_ITEMS, "items_per_s": round(rate),
            "order_and_checksum": "ok", "ready_after": back}  # fmt: skip


def bench(report: dict[str, Any] | None, fab_exit: int, output: list[str]) -> dict[str, Any]:
    """``fab bench``'s verdict under emulation: it ran to the end (every run measured, the engine
    started again, the report written) and says in its first line that the figures come from
    an emulated host. Its SLO verdict is recorded, not judged: emulated latencies are one to two
    orders of magnitude above a real host's."""
    if report is None:
        last = output[-1] if output else f"exit {fab_exit}"
        return {"ok": False, "fab_exit": fab_exit, "error": f"no bench.json written: {last}"}
    doc, first_line = report["doc"], report["first_line"]
    problems = list(doc.get("problems", []))
    if not doc.get("emulated"):
        problems.append(f"not recognised as emulated (virtualization {doc.get('virtualization')})")
    if "EMULATED HOST" not in first_line:
        problems.append(f"summary.md's first line does not say emulated: {first_line!r}")
    if doc.get("engine", {}).get("restarted") is False:
        problems.append("the engine did not start again after the bench")
    runs = {
        label: {
            "offered": run.get("offered_rate"),
            "achieved": run.get("achieved_rate"),
            "p50_ns": run.get("latency_ns", {}).get("p50"),
            "p99_ns": run.get("latency_ns", {}).get("p99"),
            "count": run.get("latency_ns", {}).get("count"),
        }
        for label, run in doc.get("runs", {}).items()
    }
    measured = all((run["count"] or 0) > 0 for run in runs.values()) and bool(runs)
    if not measured:
        problems.append("a run measured no message")
    return {"ok": not problems, "fab_exit": fab_exit, "first_line": first_line,
            "virtualization": doc.get("virtualization"), "slo_missed": doc.get("slo_missed"),
            "runs": runs, "problems": problems}  # fmt: skip
