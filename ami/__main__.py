"""``python -m ami``: render the host tuning from a profile and apply it under a root.

    python -m ami apply --root / [--profile FILE] [--vcpus N] [--os OS] [--dry-run]
    python -m ami render [--profile FILE] [--vcpus N] [--os OS] PATH

``apply`` prints one line per file (created, changed, unchanged) and a summary; with
``--dry-run`` it writes nothing and shows a diff for each file it would change. ``render``
prints one rendered file.

Every bad input (arguments, a profile that is missing, a directory, unreadable, not UTF-8, not
TOML or not a profile, a root that is no directory or not writable or full, a path that is not
rendered) is a ``LowlatError`` (``InputError``, ``ProfileError``): one line on stderr, exit
status 2, no traceback, and nothing written under --root. A write that fails all the same is
one line and exit status 1 (``CannotRunNow``), and leaves --root as it was (ami.apply).
``main`` is the one place that prints them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path

from ami.apply import CHANGED, UNCHANGED, InputError, apply, summary
from ami.render import render
from contracts.constants import EXIT_OK
from contracts.errors import CannotRunNow, LowlatError
from contracts.profile import HOST_OSES, MAX_VCPUS, load_profile, one_line, shown

PROG = "python -m ami"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is an InputError (one line), not usage text and exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see {self.prog} --help)", prog=self.prog)


def _vcpus(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()) or not 2 <= int(text) <= MAX_VCPUS:
        raise argparse.ArgumentTypeError(
            f"{shown(text)}: use a whole number from 2 to {MAX_VCPUS} (a tuned host has one "
            "housekeeping CPU and at least one isolated CPU)"
        )
    return int(text)


def _root(text: str) -> Path:
    if not text:  # Path("") is ".", which nobody means by it
        raise argparse.ArgumentTypeError("'': give the directory to write under, e.g. --root /")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--profile", type=Path, help="tuning profile (TOML); default: built-in")
        p.add_argument(
            "--vcpus",
            type=_vcpus,
            default=os.cpu_count() or 1,
            help="vCPUs of the target host, unless the profile says (default: this machine's)",
        )
        p.add_argument(
            "--os",
            choices=HOST_OSES,
            help="host OS to render for, over the profile's os (default: the profile's)",
        )
        return p

    p = add("apply", "write every rendered file under ROOT, leaving matching files alone")
    p.add_argument("--root", type=_root, required=True, help='filesystem root ("/" on the image)')
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")

    p = add("render", "print one rendered file")
    p.add_argument("path", help="its path on the host, e.g. /etc/lowlat/kernel-args")
    return parser


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile, args.vcpus)
    if args.os:
        profile = dataclasses.replace(profile, os=args.os)
    files = render(profile)
    if args.command == "render":
        if args.path not in files:
            raise InputError(f"{shown(args.path)} is not rendered; one of: {', '.join(files)}")
        sys.stdout.write(files[args.path])
        return EXIT_OK

    try:
        changes = apply(files, args.root, dry_run=args.dry_run)
    except OSError as exc:  # not the input's fault (a disk that filled up meanwhile, EIO)
        where = exc.filename or args.root
        done = (getattr(exc, "__notes__", None) or ["nothing was changed"])[0]
        raise CannotRunNow(f"{where}: {exc.strerror or exc}; {done}") from None
    for change in changes:
        action = change.action
        if args.dry_run and action != UNCHANGED:
            action = f"would be {action}"
        print(f"{action:<20} {change.path}")
        if args.dry_run and change.action == CHANGED:
            sys.stdout.write(change.diff)
    print(summary(changes, dry_run=args.dry_run))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run one command. The one handler: a LowlatError is one line on stderr and its exit
    status (2 for a bad input, 1 for a write that failed all the same)."""
    prog = PROG
    try:
        args = build_parser().parse_args(argv)
        prog = f"{PROG} {args.command}"
        return run(args)
    except LowlatError as exc:
        print(one_line(f"{getattr(exc, 'prog', None) or prog}: {exc}"), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
