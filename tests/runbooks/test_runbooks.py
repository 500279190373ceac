"""The runbooks agree with the alarm catalog and name only things that exist.

``runbooks/<AlarmName>.md`` exists for every ``contracts.alarms.ALARMS`` entry and for nothing else,
with the sections Meaning, Impact, Diagnosis, Mitigation, Escalation, Verify recovery in that
order, a ```shell block in Mitigation, and its catalog widget named in Diagnosis.
``runbooks/README.md`` maps every alarm to its severity, runbook and widget, as the catalog does.
What a runbook may name, and how that is checked: ``tests.support.runbook_lint``. The tests at
the end feed each checker a bad sample to prove it can fail.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from contracts.alarms import ALARM_PREFIX, ALARMS
from tests.support.runbook_lint import (
    AWS,
    FAB,
    GENERAL,
    METRIC,
    PYTHON_AMI,
    ROOT,
    RUNBOOKS,
    SYSTEMD,
    TRADING_SERVICE,
    WIDGET_REF,
    AwsModels,
    alarm_file_problems,
    ami_parser,
    aws_problems,
    code_lines,
    fab_core_flags,
    fab_problems,
    fab_tasks,
    invocations,
    link_problems,
    metric_problems,
    readme_problems,
    runbook_files,
    structure_problems,
    subcommand_problems,
    trading_service_parser,
    unit_problems,
    widget_problems,
)

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tasks() -> dict[str, set[str]]:
    return fab_tasks()


@pytest.fixture(scope="module")
def core_flags() -> dict[str, bool]:
    return fab_core_flags()


@pytest.fixture(scope="module")
def aws_models() -> AwsModels:
    return AwsModels()


ALL = [p.name for p in runbook_files()]
ALARM_BY_NAME = {a.name: a for a in ALARMS}


def read(name: str) -> str:
    return (RUNBOOKS / name).read_text()


# ----------------------------------------------------------------------------- the runbooks


def test_every_alarm_has_a_runbook_and_every_runbook_an_alarm():
    assert alarm_file_problems() == []


def test_general_procedures_exist():
    missing = [g for g in GENERAL if not (RUNBOOKS / f"{g}.md").is_file()]
    assert missing == []


@pytest.mark.parametrize("alarm", ALARMS, ids=lambda a: a.name)
def test_alarm_runbook_structure(alarm):
    path = ROOT / alarm.runbook
    assert path.is_file(), f"{alarm.runbook} is missing"
    assert structure_problems(path.read_text(), alarm) == []


@pytest.mark.parametrize("name", ALL)
def test_widgets_are_catalog_titles(name):
    assert widget_problems(read(name)) == []


@pytest.mark.parametrize("name", ALL)
def test_metrics_exist(name):
    assert metric_problems(read(name)) == []


@pytest.mark.parametrize("name", ALL)
def test_fab_tasks_and_options_exist(name, tasks, core_flags):
    assert fab_problems(read(name), tasks, core_flags) == []


@pytest.mark.parametrize("name", ALL)
def test_trading_service_commands_exist(name):
    parser = trading_service_parser()
    assert subcommand_problems(read(name), TRADING_SERVICE, parser, "trading-service") == []


@pytest.mark.parametrize("name", ALL)
def test_ami_commands_exist(name):
    assert subcommand_problems(read(name), PYTHON_AMI, ami_parser(), "python -m ami") == []


@pytest.mark.parametrize("name", ALL)
def test_units_exist(name):
    assert unit_problems(read(name)) == []


@pytest.mark.parametrize("name", ALL)
def test_aws_commands_exist(name, aws_models):
    assert aws_problems(read(name), aws_models) == []


@pytest.mark.parametrize("name", ALL)
def test_links_resolve(name):
    assert link_problems(read(name)) == []


def test_readme_maps_every_alarm_to_runbook_and_widget():
    assert readme_problems(read("README.md")) == []


def test_the_checks_see_commands():
    """Guard against checkers that pass because they found nothing to check."""
    text = "\n".join(read(n) for n in ALL)
    assert len(code_lines(text)) >= 300
    assert len(invocations(text, FAB)) >= 20
    assert len(invocations(text, TRADING_SERVICE)) >= 10
    assert len(invocations(text, SYSTEMD)) >= 10
    assert len(invocations(text, AWS)) >= 20
    assert invocations(text, PYTHON_AMI)
    assert len(WIDGET_REF.findall(text)) >= len(ALARMS)
    assert len(METRIC.findall(text)) >= 20


def test_fab_tasks_parsed_from_source():
    tasks = fab_tasks()
    assert {"deploy", "rollback", "status", "logs", "check-host", "bench"} <= set(tasks)
    assert {"--host", "--hosts", "--stack", "--duration", "--rates", "--out", "--publish"} <= (
        tasks["bench"]
    )


def test_fab_tasks_agree_with_fabric():
    """The ast reading matches what Fabric itself loads, when fabfile.py imports."""
    try:
        import fabfile  # needs ops/, which may be in progress
    except Exception as exc:  # any import failure means: cannot compare here
        pytest.skip(f"fabfile.py does not import: {exc}")
    collection = fabfile.ns
    from_fabric = {}
    for name in collection.task_names:
        task = collection[name]
        params = [a.arg for a in ast.parse(_source(task.body)).body[0].args.args[1:]]
        from_fabric[name] = {"--" + p.replace("_", "-") for p in params} | {"--help"}
    assert fab_tasks() == from_fabric


def _source(func) -> str:
    return textwrap.dedent(inspect.getsource(func))


# ----------------------------------------------------------------------------- the checks fail


BAD_ALARM_PAGE = f"""# {ALARMS[0].name}

**Severity: {ALARMS[0].severity}.** {ALARMS[0].summary}

## Meaning
## Diagnosis
## Impact
## Mitigation
Restart it: `systemctl restart lowlat-engine`.
## Escalation
## Verify recovery
"""


def test_structure_check_fails_on_a_bad_page():
    problems = " ".join(structure_problems(BAD_ALARM_PAGE, ALARMS[0]))
    assert "sections are" in problems
    assert "no ```shell block" in problems
    assert "does not name its widget" in problems
    assert structure_problems(BAD_ALARM_PAGE.replace("# Lowlat", "# Nope"), ALARMS[0])


def test_alarm_file_check_fails_on_missing_and_extra(tmp_path):
    for alarm in ALARMS[1:]:
        (tmp_path / f"{alarm.name}.md").write_text("x")
    (tmp_path / f"{ALARM_PREFIX}NoSuchAlarm.md").write_text("x")
    problems = " ".join(alarm_file_problems(tmp_path))
    assert f"{ALARMS[0].name}.md is missing" in problems
    assert f"{ALARM_PREFIX}NoSuchAlarm.md has no catalog alarm" in problems


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ('Open **"CPU per core"**.', False),
        ('Open **"CPU usage"**.', True),
    ],
)
def test_widget_check(text, bad):
    assert bool(widget_problems(text)) is bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("`trading_up` is 0", False),
        ("`trading_tick_to_order_seconds_bucket`", False),
        ("`trading_tick_to_order_recent_seconds_count`", False),
        ("grep '^trading_stage_'", False),
        ("grep -E '^trading_(md_|stage_|sequence_gaps)'", False),
        ("`trading_engine_down`", True),
        ("`trading_orders_rejected`", True),  # a counter is exposed with _total
        ("grep '^trading_nothing_'", True),
        ("grep -E '^trading_(md_|nope)'", True),
        ("`cpu_usage_idle` and `ethtool_pps_allowance_exceeded`", False),
        ("`cpu_usage_total`", True),
    ],
)
def test_metric_check(text, bad):
    assert bool(metric_problems(text)) is bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("```shell\nfab status --host $H\n```", False),
        ("`fab bench --host H --rates 100k,1m --duration 60 --publish`", False),
        ("`fab check-host --host H`", False),
        ("`fab -S ~/.ssh/config status --host H`", False),
        ("`fab --list`", False),
        ("`fab --help deploy`", False),
        ("```shell\nfab restart --host $H\n```", True),
        ("1. Look:\n\n   ```shell\n   fab restart --host $H\n   ```\n", True),  # in a list item
        ("`fab check_host --host H`", True),  # the task is named check-host
        ("`fab deploy --host H --force`", True),
        ("`fab logs --host H --duration 5`", True),  # --duration belongs to bench
        ("`fab --nope status`", True),
    ],
)
def test_fab_check(text, bad, tasks, core_flags):
    assert bool(fab_problems(text, tasks, core_flags)) is bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("`/opt/lowlat/current/venv/bin/trading-service check-host --json`", False),
        ("`trading-service jitter --cpus 1-3 --duration 10`", False),
        (
            "`sudo -u lowlat trading-service kill-switch on --config /etc/lowlat/service.toml`",
            False,
        ),
        ("`trading-service --version`", False),
        ("`trading-service check-host --json; echo $?`", False),
        ("`trading-service check-host --json | jq .summary`", False),
        ("`trading-service restart`", True),
        ("`trading-service check-host --fix`", True),
        ("`trading-service top --json`", True),
    ],
)
def test_trading_service_check(text, bad):
    parser = trading_service_parser()
    assert bool(subcommand_problems(text, TRADING_SERVICE, parser, "trading-service")) is bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("`sudo python -m ami apply --root / --dry-run`", False),
        ("`/opt/x/bin/python3.11 -m ami render /etc/lowlat/kernel-args`", False),
        ("`python -m ami install --root /`", True),
        ("`python -m ami apply --force`", True),
    ],
)
def test_ami_check(text, bad):
    assert bool(subcommand_problems(text, PYTHON_AMI, ami_parser(), "python -m ami")) is bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("`journalctl -u lowlat-engine --since -15min`", False),
        ("`sudo systemctl reset-failed lowlat-engine`", False),
        ("`systemctl status lowlat-engine lowlat-telemetry.service irqbalance`", False),
        ("`journalctl --vacuum-size=200M`", False),
        ("`journalctl -u lowlat-trading --since -15min`", True),
        ("`sudo systemctl restart lowlat`", True),
        ("`systemctl status nginx`", True),
        ("the unit `lowlat-gateway.service`", True),
    ],
)
def test_unit_check(text, bad):
    assert bool(unit_problems(text)) is bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("`aws cloudwatch describe-alarms --alarm-name-prefix Lowlat --state-value ALARM`", False),
        ("`aws ec2 wait instance-stopped --instance-ids $I`", False),
        (
            "`aws ec2 modify-instance-attribute --instance-id $I --no-disable-api-termination`",
            False,
        ),
        (
            "```shell\naws cloudwatch get-metric-statistics --namespace Lowlat --metric-name "
            "trading_up --start-time $(date -u -d '-1 hour' +%FT%TZ) --period 60\n```",
            False,
        ),
        ("`aws cloudwatch describe-alarm --alarm-name-prefix Lowlat`", True),
        ("`aws cloudwatch describe-alarms --alarm-prefix Lowlat`", True),
        ("`aws ec2 wait instance-gone --instance-ids $I`", True),
        ("`aws imagebuilder start-image-pipeline-execution --pipeline-arn $ARN`", True),
        (
            "`aws cloudwatch get-metric-statistics --namespace Trading --metric-name trading_up`",
            True,
        ),
        (
            "`aws cloudwatch get-metric-statistics --namespace Lowlat --metric-name trading_down`",
            True,
        ),
    ],
)
def test_aws_check(text, bad, aws_models):
    assert bool(aws_problems(text, aws_models)) is bad


def test_readme_check_fails_on_a_wrong_table():
    good = read("README.md")
    first = ALARMS[0]
    assert readme_problems(good.replace(f"[{first.name}]({first.name}.md)", "[x](x.md)"))
    assert readme_problems(good.replace(f'**"{first.widget}"**', '**"Status checks"**', 1))
    assert readme_problems(good.replace("(triage.md)", "(first-response.md)"))


def test_link_check(tmp_path):
    (tmp_path / "a.md").write_text("x")
    assert link_problems("see [a](a.md)", tmp_path) == []
    assert link_problems("see [b](b.md)", tmp_path)
