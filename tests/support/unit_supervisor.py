"""A TEST STAND-IN FOR SYSTEMD: runs the lowlat units' own ExecStart lines where no systemd runs.

This machine (a container) has no systemd as PID 1, so ``systemctl restart`` cannot work here.
The deploy tests set ``lowlat.systemctl`` to this script (through
tests/support/bin/lowlat-test-systemctl) and everything else in ``fab deploy`` stays the real
path: the real units rendered by
``python -m ami apply`` into the throwaway root, the real release venv, the real
``trading-service``. It implements just what the Fabric tasks call:

    unit_supervisor.py --root ROOT daemon-reload
    unit_supervisor.py --root ROOT start|stop|restart UNIT...
    unit_supervisor.py --root ROOT is-active|status UNIT...
    unit_supervisor.py --root ROOT enable|disable [--now] UNIT...; is-enabled UNIT...

``start`` reads the INSTALLED unit file ``ROOT/etc/systemd/system/UNIT`` and takes from it:

- ``ExecStart=``: the command, with every absolute path under /opt/, /etc/ and /var/ rebased
  into ROOT (``/opt/lowlat/current/...`` -> ``ROOT/opt/lowlat/current/...``, ``/etc/lowlat/...``
  -> ``ROOT/etc/lowlat/...``), since the test installs there instead of into the real /;
- ``CPUAffinity=``: applied with ``os.sched_setaffinity`` before exec (the service checks that
  its configured cores are ones it may use, as under systemd);
- ``StandardOutput=append:``/``StandardError=append:``: output appended to that file (rebased);
- ``Environment=``, ``CacheDirectory=`` (sets ``CACHE_DIRECTORY``, as systemd does, and creates
  it), ``LogsDirectory=``, ``WorkingDirectory=``, ``TimeoutStopSec=``.

Everything else (User=, the sandbox, Restart=, resource limits) is ignored: this is not a
service manager, only enough of one to start the real service from its real unit. Each unit
runs under a small keeper process (``_keep``) that waits for it and records how it ended, so
``is-active`` can say ``failed`` like systemd does. ``stop`` sends SIGTERM to the service's
process group (KillMode=control-group), waits TimeoutStopSec, then SIGKILLs the group.

State lives in ``ROOT/run/lowlat-test-supervisor/``: ``UNIT.pid`` (the service's pid, which
is also its process group), ``UNIT.state`` (active, inactive or failed), ``calls.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REBASED_PREFIXES = ("/opt/", "/etc/", "/var/")
DEFAULT_STOP_TIMEOUT_S = 90.0  # systemd's DefaultTimeoutStopSec


def rebase(root: Path, value: str) -> str:
    """An absolute host path under /opt, /etc or /var, moved into ``root``; others as they are."""
    if value.startswith(REBASED_PREFIXES):
        return str(root / value.lstrip("/"))
    return value


def parse_cpulist(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.replace(" ", ",").split(","):
        if part:
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def read_unit(root: Path, unit: str) -> dict[str, list[str]]:
    """The [Service] settings of the installed unit file (key -> every value, in order)."""
    path = root / "etc/systemd/system" / unit
    if not path.exists():
        raise SystemExit(f"Unit {unit} not found (no {path}).")
    settings: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min)?", text.strip())
    if not match:
        return DEFAULT_STOP_TIMEOUT_S
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "min" else value


class Supervisor:
    def __init__(self, root: Path):
        self.root = root
        self.state_dir = root / "run/lowlat-test-supervisor"
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _pid_file(self, unit: str) -> Path:
        return self.state_dir / f"{unit}.pid"

    def _state_file(self, unit: str) -> Path:
        return self.state_dir / f"{unit}.state"

    def record(self, *words: str) -> None:
        with open(self.state_dir / "calls.log", "a") as f:
            f.write(" ".join(words) + "\n")

    def pid(self, unit: str) -> int | None:
        try:
            pid = int(self._pid_file(unit).read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def state(self, unit: str) -> str:
        try:
            return self._state_file(unit).read_text().split()[0]
        except (FileNotFoundError, IndexError):
            return "inactive"

    # ------------------------------------------------------------------------------ commands

    def start(self, unit: str) -> None:
        if self.pid(unit) is not None and self.state(unit) == "active":
            return
        read_unit(self.root, unit)  # fail here, with systemctl's message, if it is not there
        self._state_file(unit).write_text("activating\n")
        self._pid_file(unit).unlink(missing_ok=True)
        # The keeper is detached (own session) so it outlives this command and the SSH session.
        subprocess.Popen(
            [sys.executable, __file__, "--root", str(self.root), "_keep", unit],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # Type=exec: back once the command is running
            if self._pid_file(unit).exists() or self.state(unit) != "activating":
                return
            time.sleep(0.05)
        raise SystemExit(f"Job for {unit} failed: the keeper did not start it within 10 s.")

    def keep(self, unit: str) -> int:
        """Start the unit's ExecStart and wait for it; record how it ended."""
        settings = read_unit(self.root, unit)
        argv = [rebase(self.root, word) for word in shlex.split(settings["ExecStart"][-1])]
        env = dict(os.environ)
        for assignment in settings.get("Environment", []):
            for word in shlex.split(assignment):
                key, _, value = word.partition("=")
                env[key] = value
        for name in settings.get("CacheDirectory", []):
            cache = self.root / "var/cache" / name
            cache.mkdir(parents=True, exist_ok=True)
            env["CACHE_DIRECTORY"] = str(cache)
        for name in settings.get("LogsDirectory", []):
            (self.root / "var/log" / name).mkdir(parents=True, exist_ok=True)
        cwd = rebase(self.root, settings.get("WorkingDirectory", ["/"])[-1])
        output = settings.get("StandardOutput", ["append:/dev/null"])[-1]
        log_path = rebase(self.root, output.split(":", 1)[1]) if ":" in output else os.devnull
        cpus = parse_cpulist(settings.get("CPUAffinity", [""])[-1])

        def in_child() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(log_path, "ab") as log:
            try:
                child = subprocess.Popen(
                    argv,
                    cwd=cwd if Path(cwd).is_dir() else None,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    process_group=0,  # its own group: stop signals the whole "control group"
                    preexec_fn=in_child,
                )
            except OSError as exc:
                log.write(f"unit_supervisor: cannot start {argv[0]}: {exc}\n".encode())
                self._state_file(unit).write_text("failed 203\n")  # systemd's EXEC status
                return 1
        self._pid_file(unit).write_text(f"{child.pid}\n")
        self._state_file(unit).write_text("active\n")
        code = child.wait()
        stopping = self.state_dir / f"{unit}.stopping"
        if stopping.exists() or code == 0:
            self._state_file(unit).write_text(f"inactive {code}\n")
        else:
            self._state_file(unit).write_text(f"failed {code}\n")
        stopping.unlink(missing_ok=True)
        self._pid_file(unit).unlink(missing_ok=True)
        return 0

    def stop(self, unit: str) -> None:
        pid = self.pid(unit)
        if pid is None:
            if self.state(unit) == "active":
                self._state_file(unit).write_text("inactive\n")
            return
        settings = read_unit(self.root, unit)
        timeout = _seconds(settings.get("TimeoutStopSec", [str(DEFAULT_STOP_TIMEOUT_S)])[-1])
        (self.state_dir / f"{unit}.stopping").write_text("")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._group_alive(pid):
            time.sleep(0.1)
        if self._group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._pid_file(unit).exists():
            time.sleep(0.05)  # the keeper records the end

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _each(action):
    """A command that applies ``action(sup, unit)`` to each unit in turn."""

    def command(sup: Supervisor, units: list[str]) -> int:
        for unit in units:
            action(sup, unit)
        return 0

    return command


def _restart(sup: Supervisor, units: list[str]) -> int:
    for unit in units:
        sup.stop(unit)
    for unit in units:
        sup.start(unit)
    return 0


def _states(sup: Supervisor, units: list[str], verbose: bool) -> int:
    """``is-active`` (``verbose``: ``status``): one line per unit; 0 only if all are active."""
    states = []
    for unit in units:
        state = sup.state(unit)
        if state == "active" and sup.pid(unit) is None:
            state = "failed"  # the keeper itself died
        states.append(state)
        if verbose:
            print(f"{unit}: {state} (pid {sup.pid(unit) or '-'}; test unit_supervisor)")
        else:
            print(state)
    return 0 if all(s == "active" for s in states) else 3


def _enable(enable: bool) -> Callable[[Supervisor, list[str]], int]:
    """``enable``/``disable [--now]``: UNIT.enabled records what a boot would start (nothing
    boots here); ``--now`` starts or stops as well, as systemctl does."""

    def run(sup: Supervisor, units: list[str]) -> int:
        now = "--now" in units
        for unit in (u for u in units if u != "--now"):
            marker = sup.state_dir / f"{unit}.enabled"
            if enable:
                marker.write_text("enabled\n")
            else:
                marker.unlink(missing_ok=True)
            if now:
                (sup.start if enable else sup.stop)(unit)
        return 0

    return run


def _is_enabled(sup: Supervisor, units: list[str]) -> int:
    states = ["enabled" if (sup.state_dir / f"{u}.enabled").exists() else "disabled" for u in units]
    print("\n".join(states))
    return 0 if all(s == "enabled" for s in states) else 1


COMMANDS = {
    "daemon-reload": lambda sup, units: 0,  # unit files are read at every start
    "_keep": lambda sup, units: sup.keep(units[0]),
    "start": _each(Supervisor.start),
    "stop": _each(Supervisor.stop),
    "restart": _restart,
    "is-active": lambda sup, units: _states(sup, units, verbose=False),
    "status": lambda sup, units: _states(sup, units, verbose=True),
    "enable": _enable(True),
    "disable": _enable(False),
    "is-enabled": _is_enabled,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="unit_supervisor.py", description="test stand-in for systemctl (see docstring)"
    )
    parser.add_argument("--root", type=Path, required=True, help="the throwaway install root")
    parser.add_argument("command")
    parser.add_argument("units", nargs="*")
    parser.add_argument("--no-pager", action="store_true")
    parser.add_argument("--now", action="store_true", help="enable/disable: start/stop too")
    args = parser.parse_args(argv)
    if args.now:
        args.units.append("--now")
    sup = Supervisor(args.root.resolve())
    if args.command != "_keep":
        sup.record(args.command, *args.units)
    command = COMMANDS.get(args.command)
    if command is None:
        print(f"unit_supervisor.py: unknown command {args.command!r}", file=sys.stderr)
        return 2
    return command(sup, args.units)


if __name__ == "__main__":
    sys.exit(main())
