"""Which hosts a task acts on, how to reach them, and running a task on each.

A task names its hosts one of three ways: ``--host H``, ``--hosts a,b,c``, or ``--stack NAME``
(the ``Host<N>PublicDnsName`` outputs of a TradingHostStack, read through boto3's CloudFormation
``describe_stacks``; a host without a public name is reached by its instance id, which an
``~/.ssh/config`` block for ``i-*`` sends through SSM Session Manager). Fleets run in parallel,
one thread per host, and end with one line per host and a fleet summary.

SSH details (user, port, key, proxy) come from Fabric's usual sources: ``~/.ssh/config`` or
``fab -S FILE``, Fabric config files, ``fab -i KEY``. Connection failures become one line that
says which host and what to check, never a traceback.

``Settings`` are the ``lowlat:`` section of Fabric's config: where on the host things live
(``root``), how to run privileged commands and systemd's tools. ``SETTINGS`` is the one table
of them: each key's default (``DEFAULT_SETTINGS``), meaning and what it accepts (a real YAML
bool, a finite number in range, a whole number, a non-blank line...). ``Settings.from_config``
checks a config against it and refuses the first bad value in one line: ``Fabric config
lowlat.<key> = <value>: <what is allowed>``.

Bad input is an ``OpsError``; ``refusing_bad_input`` is the one handler fabfile.py puts around
every task: one line on stderr and exit status 2 (EXIT_USAGE). What fails on a host is that
host's FAILED line instead, and exit status 1 (EXIT_FAILED).
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from invoke.config import DataProxy
from invoke.exceptions import Exit
from rich.markup import escape  # summaries quote config like "[service] shm_dir": not markup

from contracts.constants import EXIT_FAILED, EXIT_USAGE
from ops.ui import console, err_console

if TYPE_CHECKING:
    from invoke.config import Config
    from invoke.context import Context

AUTO_PYTHON = "auto"

# fabric ships no types: to mypy its Connection is Any; the alias names it for the reader.
Connection = Any

Value = str | bool | int | float  # what a setting holds once checked
# ASCII control characters: a value with one would end a shell command line or a log line
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PYTHON = re.compile(r"(?:/(?:[A-Za-z0-9._+-]+/)*)?(?:python|pypy)[0-9]*(?:\.[0-9]+)*")


class OpsError(Exception):
    """A failure the operator can act on: one line saying what, where and what would be right."""


@dataclass(frozen=True)
class Setting:
    """One key of the ``lowlat:`` section: its default, what it is for, and what it accepts."""

    default: Value
    meaning: str
    allowed: str  # what the refusal of a bad value says would be right
    accept: Callable[[object], Value | None]  # the value as Settings holds it; None: refused


def _a_bool(value: object) -> Value | None:
    # a real YAML bool only: 'no' in quotes is a string, and a string is always "true"
    return value if isinstance(value, bool) else None


def _a_line(value: object) -> Value | None:
    """Text that is not blank and has no control character (no newline in a shell command)."""
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
        return None
    return value


def _an_absolute_path(value: object) -> Value | None:
    text = _a_line(value)
    return text if isinstance(text, str) and text.startswith("/") else None


def _a_python(value: object) -> Value | None:
    if value == AUTO_PYTHON:
        return AUTO_PYTHON
    return value if isinstance(value, str) and _PYTHON.fullmatch(value) else None


def _seconds(high: float) -> Callable[[object], Value | None]:
    """A finite number of seconds in (0, high]; an int or a float, never a bool."""

    def accept(value: object) -> Value | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        # int against float compares exactly: no float() of a huge int (OverflowError) first
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return float(value) if 0 < value <= high else None

    return accept


def _whole(low: int, high: int) -> Callable[[object], Value | None]:
    """A whole number in [low, high]: an int, or a float with nothing after the point; not a
    bool (YAML's true is not 1 here)."""

    def accept(value: object) -> Value | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return None
        return int(value) if low <= value <= high else None

    return accept


MAX_READY_TIMEOUT_S = 86_400.0  # a day: the lab's emulated host needs 1500 s
MAX_CONNECT_TIMEOUT_S = 3_600.0
MAX_KEEP_RELEASES = 1_000

# The ``lowlat:`` section of Fabric's config: every key, its default, what it is for and what
# it accepts. Settings.from_config checks a config against this table and nothing else.
SETTINGS: dict[str, Setting] = {
    "root": Setting(
        "/",
        "the file system root the host paths (/opt/lowlat, /etc/lowlat, /etc/systemd/system) "
        'live under: "/" on a real host, a throwaway directory in the tests',
        'an absolute path on the host, e.g. "/"',
        _an_absolute_path,
    ),
    "sudo": Setting(
        True,
        "run privileged commands (systemctl, writes under /opt and /etc) with sudo",
        "true or false, unquoted (a YAML boolean; a quoted 'no' is a string)",
        _a_bool,
    ),
    "systemctl": Setting(
        "systemctl",
        "the command that runs systemd's systemctl on the host",
        "a command on one line, e.g. systemctl",
        _a_line,
    ),
    "journalctl": Setting(
        "journalctl",
        "the command that runs systemd's journalctl on the host",
        "a command on one line, e.g. journalctl",
        _a_line,
    ),
    "python": Setting(
        AUTO_PYTHON,
        'the interpreter the release venv is made from; "auto": the one the host\'s OS ships, '
        "as its installed profile names the OS (ami.hostos: python3.11 on AL2023, python3.12 "
        "on Ubuntu)",
        f"\"{AUTO_PYTHON}\" (the Python of the host's OS) or an interpreter's name or absolute "
        "path, e.g. python3.11 or /usr/bin/python3.12",
        _a_python,
    ),
    "keep_releases": Setting(
        5,
        "how many releases a host keeps (never the current one or the one before it)",
        "a whole number, at least 2 (the current release and the one to roll back to) and "
        f"at most {MAX_KEEP_RELEASES}",
        _whole(2, MAX_KEEP_RELEASES),
    ),
    "ready_timeout_s": Setting(
        180,
        "how long a deploy waits for /ready (the engine JIT-compiles every kernel first)",
        f"a number of seconds > 0 and <= {MAX_READY_TIMEOUT_S:g}, e.g. 180",
        _seconds(MAX_READY_TIMEOUT_S),
    ),
    "connect_timeout_s": Setting(
        15,
        "how long to wait for a host's SSH server to answer",
        f"a number of seconds > 0 and <= {MAX_CONNECT_TIMEOUT_S:g}, e.g. 15",
        _seconds(MAX_CONNECT_TIMEOUT_S),
    ),
    "wheelhouse_cache": Setting(
        "~/.cache/lowlat/wheelhouse",
        "where this machine caches built wheels and the hosts' wheelhouses",
        "a local directory path on one line, e.g. ~/.cache/lowlat/wheelhouse",
        _a_line,
    ),
}
DEFAULT_SETTINGS: dict[str, Value] = {key: s.default for key, s in SETTINGS.items()}


def show_value(value: object, limit: int = 160) -> str:
    """A config value as a refusal quotes it: YAML's spelling of null and booleans, Python's
    repr otherwise (a string in quotes, its newlines escaped), one line, at most ``limit``."""
    text = _show(value, depth=0)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: object, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"{'-' if value < 0 else ''}a {value.bit_length()}-bit integer"  # str() may fail
    if isinstance(value, str | int | float):
        return repr(value)
    if depth >= 2:
        return "…"
    if isinstance(value, Mapping):
        pairs = [
            f"{_show(k, depth + 1)}: {_show(v, depth + 1)}" for k, v in list(value.items())[:4]
        ]
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v, depth + 1) for v in list(value)[:4]) + "]"
    return f"a {type(value).__name__}"


def key_text(key: object) -> str:
    """A key of the section as a refusal names it: as written when it is a plain name."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
        return key
    return show_value(key)


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with "; " (an error a library wrapped)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) if len(lines) != 1 else lines[0]


def _check_runtime_file(config: object) -> None:
    """``fab --config FILE`` with no such FILE: invoke goes on without it, and a task would run
    with the defaults (root "/", sudo) that FILE was meant to change."""
    path = getattr(config, "_runtime_path", None)
    if path is not None and getattr(config, "_runtime_found", None) is not True:
        raise OpsError(
            f"--config {path}: no such file: give the path of a Fabric config file (.yaml, "
            ".yml, .json or .py)"
        )


def _section(config: Config | Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``lowlat:`` section of ``config``, its keys all known ones; an OpsError if not."""
    _check_runtime_file(config)
    for name in SETTINGS:
        # "lowlat:" and then its settings not indented: YAML makes them top-level keys, which
        # Fabric ignores (sudo is Fabric's own key: a sudo: false there fails to merge)
        if name != "sudo" and name in config:
            raise OpsError(
                f"Fabric config {name} = {show_value(config[name])}: a lowlat setting outside "
                "the lowlat: section; indent it under lowlat:"
            )
    given = config.get("lowlat", {})
    if not isinstance(given, Mapping | DataProxy):
        raise OpsError(
            f"Fabric config lowlat = {show_value(given)}: a mapping of settings, each on its "
            f"own indented line under lowlat:; known: {', '.join(SETTINGS)}"
        )
    section = cast("Mapping[Any, Any]", given)  # YAML's keys need not be strings
    for key in section:
        if key not in SETTINGS:
            close = difflib.get_close_matches(
                key[:100] if isinstance(key, str) else "", SETTINGS, 1
            )
            hint = f"did you mean {close[0]}? " if close else ""
            raise OpsError(
                f"Fabric config lowlat.{key_text(key)} = {show_value(section[key])}: unknown "
                f"setting; {hint}known: {', '.join(SETTINGS)}"
            )
    return section


@dataclass(frozen=True)
class Settings:
    """The ``lowlat:`` section of Fabric's config, checked (``SETTINGS`` says what each is)."""

    root: str
    sudo: bool
    systemctl: str
    journalctl: str
    python: str
    keep_releases: int
    ready_timeout_s: float
    connect_timeout_s: float
    wheelhouse_cache: str

    @classmethod
    def from_config(cls, config: Config | Mapping[str, Any]) -> Settings:
        """The settings of ``config``'s ``lowlat:`` section over ``DEFAULT_SETTINGS``, each value
        checked against ``SETTINGS``; an OpsError naming the first bad key, what it was given
        and what it accepts. Values are as the YAML file gave them: invoke's config is untyped.
        """
        section = _section(config)
        values: dict[str, Any] = {}
        for key, setting in SETTINGS.items():
            given = section.get(key, setting.default)
            value = setting.accept(given)
            if value is None:
                raise OpsError(
                    f"Fabric config lowlat.{key} = {show_value(given)}: {setting.allowed}"
                )
            values[key] = value
        return cls(**values)

    def path(self, host_path: str) -> str:
        """``host_path`` (absolute, as on a real host) under ``root``."""
        if self.root in ("", "/"):
            return host_path
        return f"{self.root.rstrip('/')}/{host_path.lstrip('/')}"

    def privileged(self, command: str) -> str:
        """``command`` as it must run to change the system: with sudo unless told otherwise."""
        # -n: a host that wants a password fails at once, with sudo's own message, not a hang
        return f"sudo -n {command}" if self.sudo else command


@dataclass
class HostResult:
    """What a task did on one host: whether it succeeded and one line to say so."""

    ok: bool
    summary: str
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class StackHost:
    """One host of a TradingHostStack, from its outputs."""

    label: str  # host1, host2, ...
    instance_id: str
    address: str  # public DNS name, or the instance id when it has none (reach it through SSM)


# ------------------------------------------------------------------------- local outputs

MIB = 2**20


def mib(size: int) -> str:
    return f"{size / MIB:,.0f} MiB" if size >= MIB else f"{size / MIB:.1f} MiB"


def check_writable_dir(what: str, path: str | Path, need_bytes: int = 0) -> Path:
    """``path`` (``~`` expanded) as a directory this process can write ``need_bytes`` into, now:
    an existing directory, or one it can create; checked before any host is reached, so an
    output that cannot be written fails first, not after the work. Creates nothing. An
    OpsError naming ``what`` (the flag or setting), the path and what is wrong."""
    target = Path(os.path.expanduser(str(path)))
    where = f"{what} {target}"
    try:
        existing = target
        # the nearest part that exists: what the directory would be made in
        while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            part = "it" if existing == target else str(existing)
            raise OpsError(f"{where}: {part} is not a directory; give a directory")
        fd, probe = tempfile.mkstemp(prefix=".lowlat-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OpsError(
            f"{where}: cannot write in {existing} ({reason}); give a directory you can write to"
        ) from None
    if free < need_bytes:
        raise OpsError(
            f"{where}: {mib(free)} free on {existing}, {mib(need_bytes)} needed; free some "
            "space or give another directory"
        )
    return target


# ------------------------------------------------------------------------------ targets


# A host as Fabric takes it: [user@]host[:port], the host a DNS name, an address, an
# ~/.ssh/config alias or an EC2 instance id (an IPv6 address has no :port: give Port in
# ~/.ssh/config). Nothing else: no spaces, no commas, never an option.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9_.-]{1,32})?")
_LOGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# a CloudFormation stack's name, or its ARN
_STACK = re.compile(
    r"[A-Za-z][A-Za-z0-9-]{0,127}|arn:aws[a-z-]*:cloudformation:[a-z0-9-]+:\d{12}:stack/[A-Za-z]"
    r"[A-Za-z0-9-]{0,127}/[A-Za-z0-9-]+"
)
HOST_FORMS = "a host name, address or ~/.ssh/config alias, optionally user@host:port"


def _is_host(text: str) -> bool:
    login, at, address = text.rpartition("@")
    if at and not _LOGIN.fullmatch(login):
        return False
    if address.count(":") > 1:  # IPv6: Fabric cannot tell a port from the address
        return bool(_IPV6.fullmatch(address))
    name, colon, port = address.partition(":")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port[:6]) < 65536):
        return False
    return bool(_HOST_NAME.fullmatch(name))


def _check_host(flag: str, text: str) -> str:
    if not _is_host(text):
        raise OpsError(f"{flag} {show_value(text)}: not a host; use {HOST_FORMS}")
    return text


def _split_hosts(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise OpsError(
            f"--hosts {show_value(text)}: use host names separated by commas, e.g. a,b,c"
        )
    for name in names:
        if not _is_host(name):
            raise OpsError(
                f"--hosts {show_value(text)}: {show_value(name)} is not a host; use {HOST_FORMS}, "
                "separated by commas"
            )
    return list(dict.fromkeys(names))


def stack_hosts(stack: str) -> list[StackHost]:
    """The hosts a CloudFormation stack's outputs name (``Host<N>InstanceId``/``PublicDnsName``)."""
    # only --stack needs them; keep `fab --list` fast. boto3 ships no types (no stubs here)
    import boto3
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
    )

    try:
        # a session of its own: the default one is not thread-safe and caches credentials
        response = boto3.session.Session().client("cloudformation").describe_stacks(StackName=stack)
    except NoRegionError:
        raise OpsError(
            f"--stack {stack}: no AWS region: set AWS_DEFAULT_REGION (or aws configure)"
        ) from None
    except NoCredentialsError:
        raise OpsError(
            f"--stack {stack}: no AWS credentials: configure them (aws configure, AWS_PROFILE)"
        ) from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise OpsError(f"--stack {stack}: {message}") from None
    except BotoCoreError as exc:
        raise OpsError(f"--stack {stack}: {exc}") from None
    outputs = {
        o["OutputKey"]: o.get("OutputValue", "") for o in response["Stacks"][0].get("Outputs", [])
    }
    hosts = []
    for key in sorted(outputs, key=lambda k: (len(k), k)):
        match = re.fullmatch(r"Host(\d+)InstanceId", key)
        if not match:
            continue
        n = match.group(1)
        instance_id = outputs[key]
        address = outputs.get(f"Host{n}PublicDnsName") or instance_id
        hosts.append(StackHost(f"host{n}", instance_id, address))
    if not hosts:
        raise OpsError(
            f"--stack {stack}: its outputs name no hosts (no Host<N>InstanceId output): "
            "is it a lowlat TradingHostStack?"
        )
    return hosts


def resolve_targets(host: str | None, hosts: str | None, stack: str | None) -> list[str]:
    """The hosts to act on, from exactly one of ``--host``, ``--hosts`` and ``--stack``."""
    given = [
        name for name, value in (("--host", host), ("--hosts", hosts), ("--stack", stack)) if value
    ]
    if len(given) != 1:
        raise OpsError(
            ("give one of " if not given else f"{' and '.join(given)} together: give only one of ")
            + "--host H, --hosts a,b,c or --stack NAME"
        )
    if host:
        if "," in host:
            raise OpsError(f"--host {show_value(host)}: one host; give several with --hosts a,b,c")
        return [_check_host("--host", host.strip())]
    if hosts:
        return _split_hosts(hosts)
    assert stack is not None  # exactly one of the three was given
    if not _STACK.fullmatch(stack):
        raise OpsError(
            f"--stack {show_value(stack)}: not a CloudFormation stack name (a letter, then "
            "letters, digits and dashes, at most 128) or stack ARN"
        )
    return [h.address for h in stack_hosts(stack)]


# ---------------------------------------------------------------------------- connecting


def _connection_error(name: str, conn: Connection, exc: BaseException) -> OpsError:
    """One line for why ``name`` could not be reached, saying what to check."""
    import paramiko

    where = f"{conn.user}@{conn.host}:{conn.port}"
    if isinstance(exc, socket.gaierror):
        return OpsError(f"cannot resolve {conn.host!r}: check the host name or ~/.ssh/config")
    if isinstance(
        exc, paramiko.AuthenticationException | paramiko.ssh_exception.PasswordRequiredException
    ):
        return OpsError(
            f"SSH authentication failed for {where}: check the user and key "
            "(fab -i KEY, IdentityFile in ~/.ssh/config)"
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return OpsError(
            f"{where} refused the SSH connection: is sshd running, the port right and port "
            "22 open to you (allowedCidrs)? Or go through SSM: runbooks/reaching-hosts.md"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return OpsError(f"{where} did not answer SSH in time: check the network path and port")
    if isinstance(exc, paramiko.SSHException | OSError):
        return OpsError(f"SSH to {where} failed: {exc}")
    return OpsError(f"SSH to {where} failed: {type(exc).__name__}: {exc}")


def connect(c: Context, name: str, settings: Settings) -> Connection:
    """An open Fabric connection to ``name``, with the task's config (SSH config, keys)."""
    from fabric import Connection

    conn = Connection(name, config=c.config, connect_timeout=settings.connect_timeout_s)
    try:
        conn.open()
    except Exception as exc:  # paramiko and socket raise many kinds; each becomes one line
        raise _connection_error(name, conn, exc) from None
    return conn


# ----------------------------------------------------------------------------- running


HostTask = Callable[[Connection, Settings], HostResult]  # what a task does on one host


def _run_one(c: Context, task_name: str, name: str, settings: Settings, fn: HostTask) -> HostResult:
    try:
        conn = connect(c, name, settings)
    except OpsError as exc:
        return HostResult(False, str(exc))
    try:
        return fn(conn, settings)
    except OpsError as exc:
        return HostResult(False, str(exc))
    except Exception as exc:  # a remote command failing unexpectedly: say which, keep going
        from invoke.exceptions import UnexpectedExit

        if isinstance(exc, UnexpectedExit):
            result = exc.result
            tail = (result.stderr or result.stdout or "").strip().splitlines()[-1:]
            return HostResult(
                False,
                f"`{result.command}` exited {result.exited}" + (f": {tail[0]}" if tail else ""),
            )
        return HostResult(False, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def refusing_bad_input(name: str, body: Callable[..., object]) -> Callable[..., object]:
    """``body`` (a fab task's function) with the one handler of bad input: an OpsError that
    escapes it (a setting, a flag, an output path: checked before any host is reached; a
    host's own failures end in its FAILED line and exit 1 instead) becomes one line
    "``name``: what, where, what would be right" on stderr and exit status 2 (EXIT_USAGE),
    with no traceback. fabfile.py wraps every task it declares with it."""

    @functools.wraps(body)
    def task_body(*args: object, **kwargs: object) -> object:
        try:
            return body(*args, **kwargs)
        except OpsError as exc:
            raise Exit(f"{name}: {one_line(str(exc))}", code=EXIT_USAGE) from None

    return task_body


def for_each_host(
    c: Context,
    task_name: str,
    host: str | None,
    hosts: str | None,
    stack: str | None,
    fn: HostTask,
) -> dict[str, HostResult]:
    """Run ``fn(conn, settings)`` on every target host; exit 1 (EXIT_FAILED) when any fails.

    The settings and the targets are checked first, before any host is reached: an OpsError
    about them goes to the caller (the fab task's handler makes it one line and exit 2). One
    host runs in this thread; a fleet runs one thread per host. Each host ends with one line
    (ok or FAILED and why); a fleet then prints a summary.
    """
    settings = Settings.from_config(c.config)
    names = resolve_targets(host, hosts, stack)

    if len(names) == 1:
        results = {names[0]: _run_one(c, task_name, names[0], settings, fn)}
    else:
        with ThreadPoolExecutor(max_workers=min(len(names), 32)) as pool:
            futures = {n: pool.submit(_run_one, c, task_name, n, settings, fn) for n in names}
            results = {n: f.result() for n, f in futures.items()}

    for name, result in results.items():
        summary = escape(one_line(result.summary))
        if result.ok:
            console.print(f"[bold cyan]{name}[/]  {task_name}: [green]ok[/]  {summary}")
        else:
            err_console.print(f"[bold cyan]{name}[/]  {task_name}: [bold red]FAILED[/]  {summary}")
    failed = [name for name, result in results.items() if not result.ok]
    if len(names) > 1:
        console.print(
            f"fleet: {task_name} ok on {len(names) - len(failed)} of {len(names)} hosts"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    if failed:
        raise Exit(code=EXIT_FAILED)
    return results


def local_user() -> str:
    """Who runs the task (recorded with each release)."""
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
