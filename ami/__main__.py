"""``python -m ami``: render the host tuning from a profile and apply it under a root.

    python -m ami apply --root / [--profile FILE] [--vcpus N] [--os OS] [--dry-run]
    python -m ami render [--profile FILE] [--vcpus N] [--os OS] PATH

``apply`` prints one line per file (created, changed, unchanged) and a summary; with
``--dry-run`` it writes nothing and shows a diff for each file it would change. ``render``
prints one rendered file. A bad profile is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ami.apply import CHANGED, UNCHANGED, apply, summary
from ami.render import render
from contracts.constants import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from contracts.profile import HOST_OSES, ProfileError, load_profile


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ami", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--profile", type=Path, help="tuning profile (TOML); default: built-in")
        p.add_argument(
            "--vcpus",
            type=_positive_int,
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
    p.add_argument("--root", type=Path, required=True, help='filesystem root ("/" on the image)')
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")

    p = add("render", "print one rendered file")
    p.add_argument("path", help="its path on the host, e.g. /etc/lowlat/kernel-args")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = f"python -m ami {args.command}"
    try:
        profile = load_profile(args.profile, args.vcpus)
        if args.os:
            profile = dataclasses.replace(profile, os=args.os)
        files = render(profile)
    except ProfileError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if args.command == "render":
        if args.path not in files:
            print(
                f"{prog}: {args.path} is not rendered; one of: {', '.join(files)}", file=sys.stderr
            )
            return EXIT_USAGE
        sys.stdout.write(files[args.path])
        return EXIT_OK

    try:
        changes = apply(files, args.root, dry_run=args.dry_run)
    except OSError as exc:
        print(f"{prog}: {exc.filename or args.root}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    for change in changes:
        action = change.action
        if args.dry_run and action != UNCHANGED:
            action = f"would be {action}"
        print(f"{action:<20} {change.path}")
        if args.dry_run and change.action == CHANGED:
            sys.stdout.write(change.diff)
    print(summary(changes, dry_run=args.dry_run))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
