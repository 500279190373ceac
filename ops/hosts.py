"""Which hosts a task acts on, how to reach them, and running a task on each.

A task names its hosts one of three ways: ``--host H``, ``--hosts a,b,c``, or ``--stack NAME``
(the ``Host<N>PublicDnsName`` outputs of a TradingHostStack, read through boto3's CloudFormation
``describe_stacks``; a host without a public name is reached by its instance id, which an
``~/.ssh/config`` block for ``i-*`` sends through SSM Session Manager). Fleets run in parallel,
one thread per host, and end with one line per host and a fleet summary.

SSH details (user, port, key, proxy) come from Fabric's usual sources: ``~/.ssh/config`` or
``fab -S FILE``, Fabric config files, ``fab -i KEY``. Connection failures become one line that
says which host and what to check, never a traceback.

``Settings`` are the ``lowlat:`` section of Fabric's config (defaults in ``DEFAULT_SETTINGS``):
where on the host things live (``root``), how to run privileged commands and systemd's tools.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

DEFAULT_SETTINGS: dict[str, str | bool | int | float] = {
    # The file system root the host paths (/opt/lowlat, /etc/lowlat, /etc/systemd/system) live
    # under: "/" on a real host, a throwaway directory in the tests.
    "root": "/",
    "sudo": True,  # run privileged commands (systemctl, writes under /opt and /etc) with sudo
    "systemctl": "systemctl",
    "journalctl": "journalctl",
    # the interpreter the release venv is made from; "auto": the one the host's OS ships, as its
    # installed profile names the OS (ami.hostos: python3.11 on AL2023, python3.12 on Ubuntu)
    "python": AUTO_PYTHON,
    "keep_releases": 5,
    "ready_timeout_s": 180,  # the engine JIT-compiles every kernel before it says ready
    "connect_timeout_s": 15,
    "wheelhouse_cache": "~/.cache/lowlat/wheelhouse",
}


class OpsError(Exception):
    """A failure the operator can act on: one line saying what, where and what would be right."""


@dataclass(frozen=True)
class Settings:
    """The ``lowlat:`` section of Fabric's config."""

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
    def from_config(cls, config: Config) -> Settings:
        # values as the YAML file gave them (invoke's config is untyped); checked below
        section: dict[str, Any] = dict(DEFAULT_SETTINGS)
        section.update(dict(config.get("lowlat", {}) or {}))
        unknown = set(section) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise OpsError(
                f"Fabric config lowlat: unknown setting(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(DEFAULT_SETTINGS)}"
            )
        settings = cls(**section)
        if not str(settings.root).startswith("/"):
            raise OpsError(f"Fabric config lowlat.root = {settings.root!r}: use an absolute path")
        if int(settings.keep_releases) < 2:
            raise OpsError(
                f"Fabric config lowlat.keep_releases = {settings.keep_releases}: keep at least 2 "
                "(the current release and the one to roll back to)"
            )
        return settings

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


# ------------------------------------------------------------------------------ targets


def _split_hosts(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise OpsError(f"--hosts {text!r}: use host names separated by commas, e.g. a,b,c")
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
        return [host]
    if hosts:
        return _split_hosts(hosts)
    assert stack is not None  # exactly one of the three was given
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


def for_each_host(
    c: Context,
    task_name: str,
    host: str | None,
    hosts: str | None,
    stack: str | None,
    fn: HostTask,
) -> dict[str, HostResult]:
    """Run ``fn(conn, settings)`` on every target host; exit non-zero when any fails.

    One host runs in this thread; a fleet runs one thread per host. Each host ends with one
    line (ok or FAILED and why); a fleet then prints a summary.
    """
    try:
        settings = Settings.from_config(c.config)
        names = resolve_targets(host, hosts, stack)
    except OpsError as exc:
        raise Exit(f"fab {task_name}: {exc}", code=EXIT_USAGE) from None

    if len(names) == 1:
        results = {names[0]: _run_one(c, task_name, names[0], settings, fn)}
    else:
        with ThreadPoolExecutor(max_workers=min(len(names), 32)) as pool:
            futures = {n: pool.submit(_run_one, c, task_name, n, settings, fn) for n in names}
            results = {n: f.result() for n, f in futures.items()}

    for name, result in results.items():
        if result.ok:
            console.print(
                f"[bold cyan]{name}[/]  {task_name}: [green]ok[/]  {escape(result.summary)}"
            )
        else:
            err_console.print(
                f"[bold cyan]{name}[/]  {task_name}: [bold red]FAILED[/]  {escape(result.summary)}"
            )
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
