"""Terminal output the Fabric tasks share: one console, per-host step lines, one progress display.

Tasks on a fleet run in threads; rich allows one live display at a time, so every progress bar
is a task of one shared ``Progress`` that starts with the first bar and stops with the last.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(highlight=False, soft_wrap=True)
err_console = Console(highlight=False, stderr=True, soft_wrap=True)  # failures: scripts read stdout
_lock = threading.Lock()
_progress: Progress | None = None
_bars = 0


class _Named(Protocol):
    """What this module needs of a Fabric connection (fabric ships no types)."""

    host: str


def host_label(conn: _Named) -> str:
    """How a host is named in output: what the operator typed (alias or address)."""
    return str(getattr(conn, "original_host", None) or conn.host)


def step(conn: _Named, text: str) -> None:
    """One line of what a task is doing on a host."""
    console.print(f"[bold cyan]{host_label(conn)}[/]  {text}")


def say(conn: _Named, text: str) -> None:
    """A step line of plain text: what it quotes (paths, "[service] shm_dir") is not markup."""
    step(conn, escape(text))


def warn(conn: _Named, text: str) -> None:
    """A line the operator must not miss."""
    console.print(f"[bold cyan]{host_label(conn)}[/]  [bold white on red] {text} [/]")


@contextlib.contextmanager
def progress_task(description: str, total: float) -> Iterator[Callable[[float], None]]:
    """A progress bar for ``total`` units of work; yields ``advance(n)``."""
    global _progress, _bars
    with _lock:
        if _progress is None:
            _progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            _progress.start()
        _bars += 1
        progress = _progress
        task_id = progress.add_task(description, total=total)

    def advance(n: float = 1) -> None:
        progress.advance(task_id, n)

    try:
        yield advance
    finally:
        with _lock:
            progress.update(task_id, completed=total)
            _bars -= 1
            if _bars == 0:
                progress.stop()
                _progress = None
