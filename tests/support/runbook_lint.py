"""The runbook linter: what a runbook may name, and the checks that find what it must not.

Every runbook (alarm pages and general procedures) may only name:

- dashboard widgets from ``contracts.alarms.WIDGETS``. Convention: a widget is written in bold
  quotes, ``**"CPU per core"**``; every bold-quoted string is checked;
- ``trading_*`` metrics that ``/metrics`` exports (with the ``_bucket``/``_count``/``_sum``
  samples of histograms and summaries; a name ending in ``_`` is a prefix, as in ``grep``), and
  host metrics that ``ami.cloudwatch`` has the agent publish;
- ``fab`` tasks and their options as ``fabfile.py`` declares them (read with ``ast``, so the
  linter needs neither ``ops/`` nor an SSH library), after Fabric's own core flags;
- ``trading-service`` and ``python -m ami`` subcommands and options, from their argparse parsers;
- ``systemctl``/``journalctl`` units from ``ami.units`` (plus a few OS units, listed below);
- ``aws`` commands and flags that botocore's API models know.

Commands are looked for in code only: fenced blocks and inline code spans. Each checker returns
a list of problems; ``tests/runbooks/test_runbooks.py`` runs them over every runbook and feeds
each one a bad sample to prove it can fail.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import re
from pathlib import Path

import pytest

from ami import cloudwatch as CW
from ami import units as U
from contracts import metric_names as N
from contracts.alarms import ALARM_PREFIX, ALARMS, WIDGET_TITLES
from tests.support.names import EXPORTED_NAMES
from tests.support.paths import REPO

ROOT = REPO
RUNBOOKS = ROOT / "runbooks"
FABFILE = ROOT / "fabfile.py"

SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation", "Escalation", "Verify recovery")
GENERAL = (
    "triage",
    "reaching-hosts",
    "deploy-and-rollback",
    "rebuild-tuned-image",
    "replace-host",
    "benchmark-regression",
)
# Units of the OS and its agents a runbook may ask about besides lowlat's own.
OS_UNITS = {"amazon-cloudwatch-agent", "amazon-ssm-agent", "irqbalance", "sshd"}
# Options of the aws CLI itself, valid after any command.
AWS_GLOBAL_OPTIONS = {
    "--region",
    "--output",
    "--query",
    "--profile",
    "--no-cli-pager",
    "--endpoint-url",
    "--debug",
    "--no-paginate",
    "--max-items",
    "--starting-token",
    "--page-size",
    "--cli-input-json",
    "--generate-cli-skeleton",
}

WIDGET_REF = re.compile(r'\*\*"([^"\n]+)"\*\*')
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
SUBSTITUTION = re.compile(r"\$\([^()]*\)")  # $(date ...): its own command, not ours
SEPARATORS = re.compile(r"\|\|?|&&|;|\s[#<>]|\s\d>")  # where a command ends
METRIC = re.compile(r"\btrading_[a-z0-9_]+")
METRIC_ALTERNATION = re.compile(r"\btrading_\(([a-z0-9_|]+)\)")
HOST_METRIC = re.compile(r"\b(?:cpu|mem|swap|disk|ethtool)_[a-z_]+\b")
LOWLAT_UNIT = re.compile(r"\blowlat-[a-z]+\.service\b")
LINK = re.compile(r"\]\(([^)#\s]+\.md)\)")


def program(name: str) -> re.Pattern:
    """Where ``name`` starts a command: at the start, after a space, quote or a path's ``/``."""
    return re.compile(rf"(?:^|(?<=[\s\"'(/]))(?:{name})(?=\s|$)")


FAB = program("fab")
TRADING_SERVICE = program("trading-service")
PYTHON_AMI = program(r"python[\d.]*\s+-m\s+ami")
SYSTEMD = program("systemctl|journalctl")
AWS = program("aws")


# ----------------------------------------------------------------------------- reading


def runbook_files() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.md"))


def code_lines(text: str) -> list[str]:
    """Every line of code: fenced blocks (continuations joined) and inline code spans."""
    lines = []
    for block in FENCE.findall(text):
        lines.extend(block.replace("\\\n", " ").splitlines())
    lines.extend(INLINE_CODE.findall(FENCE.sub("", text)))
    return lines


def invocations(text: str, pattern: re.Pattern) -> list[tuple[str, list[str]]]:
    """(the command as written, its argument tokens) for each command ``pattern`` starts."""
    found = []
    for line in code_lines(text):
        line = SUBSTITUTION.sub("X", line)
        for match in pattern.finditer(line):
            rest = SEPARATORS.split(line[match.end() :] + " ", maxsplit=1)[0]
            tokens = [t.strip("'\"") for t in rest.split()]
            found.append((line[match.start() :].strip(), [t for t in tokens if t]))
    return found


def sections(text: str) -> dict[str, str]:
    """``## Heading`` -> the text under it, in file order."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def option_name(token: str) -> str:
    return token.split("=", 1)[0]


# ----------------------------------------------------------------------------- what exists


def fab_tasks(source: str | None = None) -> dict[str, set[str]]:
    """Task name -> its ``--options``, from ``fabfile.py``'s ``@task`` functions (ast only)."""
    tree = ast.parse(source if source is not None else FABFILE.read_text())
    tasks = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            func = deco.func if isinstance(deco, ast.Call) else deco
            ident = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if ident != "task":
                continue
            name = node.name.replace("_", "-")  # invoke dashes underscores by default
            if isinstance(deco, ast.Call):
                for kw in deco.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        name = kw.value.value
            params = [a.arg for a in node.args.args[1:] + node.args.kwonlyargs]
            tasks[name] = {"--" + p.replace("_", "-") for p in params} | {"--help"}
    return tasks


def fab_core_flags() -> dict[str, bool]:
    """Fabric's own flags (before the task) -> whether the next token is their value."""
    from fabric.main import make_program

    flags = {}
    for arg in make_program().core_args():
        takes_value = arg.takes_value and not arg.optional
        for name in arg.names:
            flags[("-" if len(name) == 1 else "--") + name] = takes_value
    return flags


def subcommands(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """An argparse parser's subcommands -> their option strings."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: set(sub._option_string_actions) for name, sub in action.choices.items()}


def trading_service_parser() -> argparse.ArgumentParser:
    from service.cli import build_parser

    return build_parser()


def ami_parser() -> argparse.ArgumentParser:
    from ami.__main__ import build_parser

    return build_parser()


def known_units() -> set[str]:
    """The unit names ``ami.units`` defines, without ``.service``."""
    names = {v for k, v in vars(U).items() if k.endswith("_UNIT") and isinstance(v, str)}
    return {n.removesuffix(".service") for n in names}


def metric_names() -> set[str]:
    """Every ``trading_`` name a runbook may write: families and their samples."""
    names = set(EXPORTED_NAMES)
    for spec in N.FAMILIES:
        if spec.kind == "histogram":
            names |= {spec.name + s for s in ("_bucket", "_count", "_sum")}
        elif spec.kind == "summary":
            names |= {spec.name + s for s in ("_count", "_sum")}
    return names


def host_metric_names() -> set[str]:
    """The CloudWatch names of what the agent publishes, and what ``fab bench`` publishes."""
    measurements = {
        "cpu": CW.CPU_MEASUREMENTS,
        "mem": CW.MEM_MEASUREMENTS,
        "swap": CW.SWAP_MEASUREMENTS,
        "disk": CW.DISK_MEASUREMENTS,
        "ethtool": CW.ENA_ALLOWANCE_COUNTERS,
    }
    names = {CW.host_metric(p, m) for p, ms in measurements.items() for m in ms}
    return names | set(CW.BENCH_METRICS)


# ----------------------------------------------------------------------------- checkers


def alarm_file_problems(directory: Path = RUNBOOKS) -> list[str]:
    """A runbook per alarm, and no alarm-named runbook without an alarm."""
    expected = {a.name for a in ALARMS}
    present = {p.stem for p in directory.glob(f"{ALARM_PREFIX}*.md")}
    problems = [
        f"runbooks/{n}.md is missing (catalog alarm {n})" for n in sorted(expected - present)
    ]
    problems += [
        f"runbooks/{n}.md has no catalog alarm (contracts/alarms.py ALARMS)"
        for n in sorted(present - expected)
    ]
    return problems


def structure_problems(text: str, alarm) -> list[str]:
    """Title, severity, summary, the sections in order, shell in Mitigation, the widget."""
    problems = []
    lines = text.splitlines()
    if not lines or lines[0].strip() != f"# {alarm.name}":
        problems.append(f"the first line must be '# {alarm.name}'")
    head = text.split("\n## ", 1)[0]
    if f"**Severity: {alarm.severity}.**" not in head:
        problems.append(f"no '**Severity: {alarm.severity}.**' before the first section")
    if alarm.summary not in head:
        problems.append(f"the catalog summary {alarm.summary!r} is not before the first section")
    found = sections(text)
    if tuple(found) != SECTIONS:
        problems.append(f"sections are {list(found)}; want {list(SECTIONS)} in this order")
    if "```shell\n" not in found.get("Mitigation", ""):
        problems.append("Mitigation has no ```shell block")
    if f'**"{alarm.widget}"**' not in found.get("Diagnosis", ""):
        problems.append(f'Diagnosis does not name its widget **"{alarm.widget}"**')
    return problems


def widget_problems(text: str) -> list[str]:
    return [
        f'widget **"{title}"** is not a catalog WIDGETS title'
        for title in WIDGET_REF.findall(text)
        if title not in WIDGET_TITLES
    ]


def metric_problems(text: str) -> list[str]:
    trading, host = metric_names(), host_metric_names()

    def known(name: str) -> bool:
        if name.endswith("_"):  # a prefix, as in grep '^trading_host_'
            return any(n.startswith(name) for n in trading)
        return name in trading

    names = METRIC.findall(text)
    problems = [
        f"metric {n} is not exported by service.telemetry.exposition" for n in names if not known(n)
    ]
    for group in METRIC_ALTERNATION.findall(text):  # grep -E '^trading_(md_|stage_up)': prefixes
        problems += [
            f"no metric exported by service.telemetry.exposition starts with trading_{alt}"
            for alt in group.split("|")
            if not any(n.startswith(f"trading_{alt}") for n in trading)
        ]
    problems += [
        f"metric {n} is not one the CloudWatch agent or fab bench publishes (ami.cloudwatch)"
        for n in HOST_METRIC.findall(text)
        if n not in host
    ]
    return problems


def fab_problems(text: str, tasks: dict[str, set[str]], core: dict[str, bool]) -> list[str]:
    problems = []
    for command, tokens in invocations(text, FAB):
        i = 0
        while i < len(tokens) and tokens[i].startswith("-"):  # fab's own flags
            flag = option_name(tokens[i])
            if flag not in core:
                problems.append(f"`{command}`: fab has no flag {flag}")
            i += 2 if core.get(flag) and "=" not in tokens[i] else 1
        if i == len(tokens):
            continue  # `fab --list`, or `fab` in a sentence
        task, options = tokens[i], tokens[i + 1 :]
        if task not in tasks:
            problems.append(f"`{command}`: no fab task {task!r} (tasks: {sorted(tasks)})")
            continue
        for token in options:
            if token.startswith("-") and option_name(token) not in tasks[task]:
                problems.append(f"`{command}`: fab {task} has no option {option_name(token)}")
    return problems


def subcommand_problems(
    text: str, pattern: re.Pattern, parser: argparse.ArgumentParser, what: str
) -> list[str]:
    subs = subcommands(parser)
    top = set(parser._option_string_actions)
    problems = []
    for command, tokens in invocations(text, pattern):
        if not tokens:
            continue  # the program's name in a sentence
        if tokens[0].startswith("-"):
            if option_name(tokens[0]) not in top:
                problems.append(f"`{command}`: {what} has no option {tokens[0]}")
            continue
        sub, options = tokens[0], tokens[1:]
        if sub not in subs:
            problems.append(f"`{command}`: {what} has no subcommand {sub!r}")
            continue
        for token in options:
            if token.startswith("-") and option_name(token) not in subs[sub]:
                problems.append(f"`{command}`: {what} {sub} has no option {option_name(token)}")
    return problems


def unit_problems(text: str) -> list[str]:
    ours, allowed = known_units(), known_units() | OS_UNITS
    problems = [
        f"unit {u} is not one of ami.units ({sorted(ours)})"
        for u in LOWLAT_UNIT.findall(text)
        if u.removesuffix(".service") not in ours
    ]
    for command, tokens in invocations(text, SYSTEMD):
        named = []
        if command.startswith("journalctl"):
            named = [b for a, b in itertools.pairwise(tokens) if a in ("-u", "--unit")]
            named += [t.split("=", 1)[1] for t in tokens if t.startswith("--unit=")]
        else:
            words = [t for t in tokens if not t.startswith("-")]
            named = words[1:]  # after the verb
        problems += [
            f"`{command}`: unit {u} is not one of ami.units or {sorted(OS_UNITS)}"
            for u in named
            if u.removesuffix(".service") not in allowed
        ]
    return problems


class AwsModels:
    """The aws CLI's commands and flags, from botocore's service models (no network)."""

    def __init__(self):
        botocore = pytest.importorskip("botocore.session")
        from botocore import xform_name

        self._session = botocore.get_session()
        self._xform = xform_name
        self._services = set(self._session.get_available_services())

    def _flags(self, service: str, operation) -> set[str]:
        shape = operation.input_shape
        members = shape.members if shape is not None else {}
        flags = set()
        for name, member in members.items():
            flag = "--" + self._xform(name, "-")
            flags.add(flag)
            if member.type_name in ("boolean", "structure"):
                flags.add("--no-" + flag[2:])
        return flags | AWS_GLOBAL_OPTIONS

    def problems(self, command: str, tokens: list[str]) -> list[str]:
        words = [t for t in tokens if not t.startswith("-")]
        if len(words) < 2:
            return [f"`{command}`: want `aws <service> <operation>`"]
        service, operation = words[0], words[1]
        if service not in self._services:
            return [f"`{command}`: botocore knows no service {service!r}"]
        model = self._session.get_service_model(service)
        by_cli = {self._xform(op, "-"): op for op in model.operation_names}
        if operation == "wait" and len(words) > 2:
            waiters = self._session.get_waiter_model(service)
            by_waiter = {self._xform(w, "-"): w for w in waiters.waiter_names}
            if words[2] not in by_waiter:
                return [f"`{command}`: aws {service} wait has no waiter {words[2]!r}"]
            op = waiters.get_waiter(by_waiter[words[2]]).operation
        elif operation in by_cli:
            op = by_cli[operation]
        else:
            return [f"`{command}`: aws {service} has no command {operation!r}"]
        flags = self._flags(service, model.operation_model(op))
        return [
            f"`{command}`: aws {service} {operation} has no option {option_name(t)}"
            for t in tokens
            if t.startswith("--") and option_name(t) not in flags
        ]


def aws_problems(text: str, models: AwsModels) -> list[str]:
    problems = []
    for command, tokens in invocations(text, AWS):
        if not tokens:
            continue  # `aws` in a sentence
        problems += models.problems(command, tokens)
        if "--namespace" in tokens:
            namespace = tokens[tokens.index("--namespace") + 1]
            if namespace != CW.NAMESPACE:
                problems.append(f"`{command}`: the namespace is {CW.NAMESPACE}, not {namespace}")
        if "--metric-name" in tokens:
            name = tokens[tokens.index("--metric-name") + 1]
            if name not in metric_names() | host_metric_names():
                problems.append(f"`{command}`: no metric {name} is published")
    return problems


def link_problems(text: str, directory: Path = RUNBOOKS) -> list[str]:
    return [f"link to {t} has no file" for t in LINK.findall(text) if not (directory / t).is_file()]


README_ROW = re.compile(
    r"^\|\s*\[([^\]]+)\]\(([^)]+)\)\s*\|\s*(\w+)\s*\|\s*\*\*\"([^\"]+)\"\*\*\s*\|", re.MULTILINE
)


def readme_problems(text: str) -> list[str]:
    """The README's table has every alarm with its runbook, severity and widget; and it links
    every general procedure."""
    rows = {m[0]: m[1:] for m in README_ROW.findall(text)}
    problems = []
    for alarm in ALARMS:
        want = (f"{alarm.name}.md", alarm.severity, alarm.widget)
        if alarm.name not in rows:
            problems.append(f"README table has no row for {alarm.name}")
        elif rows[alarm.name] != want:
            problems.append(f"README row {alarm.name}: {rows[alarm.name]}, catalog says {want}")
    names = {a.name for a in ALARMS}
    problems += [f"README table row {n} is not a catalog alarm" for n in rows if n not in names]
    problems += [f"README does not link {g}.md" for g in GENERAL if f"]({g}.md)" not in text]
    return problems
