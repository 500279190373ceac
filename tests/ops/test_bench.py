"""``fab bench`` end to end: a real ``fab`` process, a real sshd on 127.0.0.1, the real service.

The benchmarked "host" is this machine reached over SSH, with its install under a throwaway
root (Fabric config ``lowlat.root``). The fixture builds what ``fab deploy`` leaves behind
without running it (so these tests do not depend on the release side): the installed profile
and ``service.toml`` rendered by ``python -m ami apply``, and ``<prefix>/current`` whose venv's
``trading-service`` and ``python`` are links to this checkout's venv.

Stand-ins, and only these: ``lowlat.systemctl`` is ``fake-systemctl``, a script that records
its arguments and says the engine unit is active (no systemd runs as PID 1 here), so the
bench's stop-the-engine-and-start-it-again path is exercised and checked; ``lowlat.sudo`` is
off (the test user is the service user). check-host, the jitter probe, the runs, the sampling
of ``/latest``, the report and the CloudWatch publish (to moto's server) are the real code.

Each rate runs 2 s. On a machine shared with other test runs, run these under
``flock /tmp/lowlat-spin.lock`` (one busy-polling run at a time).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ops.report import FILES, PIXELS, fmt_rate, fmt_us
from tests.support.bench_host import FAB, LOOSE_SLO, TIGHT_SLO, BenchHost, fab
from tests.support.paths import REPO

HOST = "lowlat-loopback"


@pytest.fixture
def bench_host(tmp_path, request):
    host = BenchHost(tmp_path, getattr(request, "param", LOOSE_SLO))
    yield host
    host.cleanup()


def png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return image.shape[1], image.shape[0]


def check_report(out: Path) -> dict:
    for name in FILES:
        assert (out / name).is_file(), (
            f"{name} missing from {sorted(p.name for p in out.iterdir())}"
        )
    for name in FILES:
        if name.endswith(".png"):
            assert png_size(out / name) == PIXELS, name
    doc = json.loads((out / "bench.json").read_text())
    summary = (out / "summary.md").read_text()
    for label, run in doc["runs"].items():
        row = next(line for line in summary.splitlines() if f"({label})" in line)
        assert fmt_rate(run["offered_rate"]) in row
        assert fmt_rate(run["achieved_rate"]) in row
        for key in ("p50", "p99", "p999", "max"):
            assert fmt_us(run["latency_ns"][key]) in row, (key, row)
    return doc


def test_bench_loose_slo_passes_with_every_report_file(bench_host, ssh_server, tmp_path):
    out = tmp_path / "report"
    result = fab(
        bench_host, ssh_server, "bench", "--host", HOST, "--duration", "2",
        "--rates", "100k,500k", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = check_report(out / HOST)
    assert list(doc["runs"]) == ["100k", "500k"]
    # what systemd-detect-virt says here; this machine's CPU is not emulated
    virt = subprocess.run(["systemd-detect-virt", "--vm"], capture_output=True, text=True)
    assert doc["virtualization"] == (virt.stdout.strip() or "unknown")
    assert doc["emulated"] is False and "EMULATED" not in result.stdout
    for label, rate in (("100k", 100_000), ("500k", 500_000)):
        run = doc["runs"][label]
        assert run["offered_rate"] == rate
        assert run["latency_ns"]["count"] > 0
        assert run["achieved_rate"] > 0
        # /latest was sampled every second while the stages ran: the throughput timeline
        assert run["timeline"], "no /latest samples"
        assert run["verdict"]["pass"]
        assert run["processes"][0]["cpu"] in [int(c) for c in doc["profile"]["isolated"].split(",")]
    assert doc["jitter"]["cpus"], doc["jitter"]
    # this machine is not a tuned host: check-host fails and the bench says so loudly
    assert doc["check_host"]["ok"] is False
    assert "HOST TUNING FAILS" in result.stdout
    # the stand-in engine was stopped for the bench and started again after it
    assert bench_host.systemctl_calls() == [
        "is-active --quiet lowlat-engine.service",
        "stop lowlat-engine.service",
        "start lowlat-engine.service",
    ]
    assert "STOPPING lowlat-engine.service" in result.stdout
    last = json.loads((bench_host.root / "opt/lowlat/bench/last.json").read_text())
    assert last["ok"] is True and set(last["rates"]) == {"100k", "500k"}
    assert last["rates"]["100k"]["p99_ns"] == doc["runs"]["100k"]["latency_ns"]["p99"]
    # nothing left behind on the host: no bench segments, no work directories
    assert not list(bench_host.shm_dir.iterdir())


@pytest.mark.parametrize("bench_host", [TIGHT_SLO], indirect=True, ids=["tight-slo"])
def test_bench_missed_slo_exits_nonzero_and_publishes(
    bench_host, ssh_server, moto_server, tmp_path
):
    import boto3

    from ami.cloudwatch import BENCH_DIMENSIONS, BENCH_METRICS, NAMESPACE

    moto_server.reset()
    out = tmp_path / "report"
    result = fab(
        bench_host, ssh_server, "bench", "--host", HOST, "--duration", "2",
        "--rates", "250k", "--out", str(out), "--publish", env=moto_server.env,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SLO missed at 250k" in result.stderr
    doc = check_report(out / HOST)
    assert doc["slo_missed"] is True
    assert "MISS" in (out / HOST / "summary.md").read_text()
    assert bench_host.systemctl_calls()[-1] == "start lowlat-engine.service"

    cloudwatch = boto3.client("cloudwatch", **_moto_kwargs(moto_server))
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in listed} == set(BENCH_METRICS)
    for metric in listed:
        dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        assert tuple(dims) == BENCH_DIMENSIONS or set(dims) == set(BENCH_DIMENSIONS)
        assert dims == {"InstanceId": doc["instance_id"], "OfferedRate": "250k"}
    values = _get(cloudwatch, doc, "250k")
    run = doc["runs"]["250k"]
    assert values["bench_tick_to_order_p99_seconds"] == pytest.approx(
        run["latency_ns"]["p99"] / 1e9
    )
    assert values["bench_achieved_rate"] == pytest.approx(run["achieved_rate"])
    assert values["bench_slo_missed"] == 1.0


def _moto_kwargs(moto_server) -> dict:
    return {
        "endpoint_url": moto_server.url,
        "region_name": moto_server.REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


def _get(cloudwatch, doc: dict, label: str) -> dict[str, float]:
    """Each BENCH_METRICS value for one host and rate, through get_metric_data."""
    import datetime as dt

    from ami.cloudwatch import BENCH_METRICS, NAMESPACE

    when = dt.datetime.fromisoformat(doc["finished_at"])
    queries = [
        {
            "Id": f"m{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [
                        {"Name": "InstanceId", "Value": doc["instance_id"]},
                        {"Name": "OfferedRate", "Value": label},
                    ],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        for i, name in enumerate(BENCH_METRICS)
    ]
    response = cloudwatch.get_metric_data(
        MetricDataQueries=queries,
        StartTime=when - dt.timedelta(minutes=5),
        EndTime=when + dt.timedelta(minutes=5),
    )
    by_id = {r["Id"]: r["Values"] for r in response["MetricDataResults"]}
    values = {name: by_id[f"m{i}"] for i, name in enumerate(BENCH_METRICS)}
    assert all(len(v) == 1 for v in values.values()), values
    return {name: v[0] for name, v in values.items()}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--rates", "fast"), "'fast'"),
        (("--rates", "100k,0"), "'0'"),
        (("--rates", "1m,2x"), "'2x'"),
        (("--duration", "0"), "--duration"),
    ],
)
def test_bad_arguments_one_line_exit_2_without_connecting(bench_host, ssh_server, args, named):
    # an unreachable host: the task must refuse before it tries to connect
    result = fab(
        bench_host, ssh_server, "bench", "--host", "no-such-host.invalid", *args, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fab bench: ") and named in lines[0]
    if args[0] == "--rates":
        assert "100k, 1m, 2.5m or 250000" in lines[0]
    assert "Traceback" not in result.stderr
    assert bench_host.systemctl_calls() == []


def test_ctrl_c_stops_the_run_and_starts_the_engine_again(bench_host, ssh_server, tmp_path):
    """An operator's Ctrl-C mid-run: the bench's processes on the host drain and end, and only
    then is the engine started again (never two spinners on one core)."""
    import signal
    import time

    command = [str(FAB), "--config", str(bench_host.fab_config), "-S", str(ssh_server.ssh_config)]
    process = subprocess.Popen(
        [*command, "bench", "--host", HOST, "--duration", "60", "--rates", "100k"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "service at 100,000 msgs/s" in line:
                break
        time.sleep(8)  # the run is warming up or measuring
        assert process.poll() is None, "".join(seen)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    seen.append(output)
    assert process.returncode != 0
    assert bench_host.systemctl_calls()[-1] == "start lowlat-engine.service", "".join(seen)
    # no process of this bench is left: nothing runs with the bench config any more
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(bench_host.root) not in ps
    assert "lowlat-bench-in." not in ps
    assert not list(bench_host.shm_dir.iterdir())


def test_publish_without_region_is_refused_before_connecting(bench_host, ssh_server, tmp_path):
    env = {
        "AWS_DEFAULT_REGION": "",
        "AWS_REGION": "",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = fab(bench_host, ssh_server, "bench", "--host", HOST, "--publish", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "fab bench: --publish: no AWS region: set AWS_DEFAULT_REGION or a default region "
        "(aws configure)"
    ]
    assert bench_host.systemctl_calls() == []


def test_a_host_without_its_profile_is_refused_before_anything_runs(bench_host, ssh_server):
    (bench_host.root / "etc/lowlat/profile.toml").unlink()
    result = fab(bench_host, ssh_server, "bench", "--host", "lowlat-loopback", "--duration", "1")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    (line,) = [row for row in out.splitlines() if "bench: FAILED" in row]
    assert "profile.toml not found: the host is not a lowlat image" in line
    assert bench_host.systemctl_calls() == []  # the engine was never touched
