"""``python -m lab``: boot a real arm64 lowlat host on this machine and run the product against it.

    python -m lab                      # every step; lab-results/summary.json and summary.txt
    python -m lab --steps boot,deploy,check_host,rollback,prometheus   # a named subset (CI)
    python -m lab --keep               # keep the host running afterwards, until Ctrl-C
    python -m lab --json               # the summary on stdout too

Steps, in order (each one's entry in the summary): ``image`` (build or reuse the cached Debian 12
arm64 image), ``boot`` (the CDK app's user data for hostOs=debian12 tunes the host and reboots it
once into the profile's kernel arguments), ``deploy`` (``fab deploy``), ``check_host`` (``fab
check-host``), ``prometheus`` (a real Prometheus here scrapes ``/metrics``), ``restart`` (``kill
-9`` of the engine; systemd restarts it), ``rollback`` (a release whose engine cannot start is
rolled back by itself; then ``fab rollback``), ``ops`` (``fab status``, ``fab logs``), ``reboot``,
``ring_stress`` (the cross-process ring on the host's isolated CPU), ``bench`` (``fab bench``).

Exit status 0 when every step ran passed, 1 when one failed, 2 for bad options. The serial
console is kept in ``lab-results/console.log``. Ctrl-C stops QEMU and frees its ports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.constants import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from lab.run import STEPS, Lab


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps to run")
    parser.add_argument("--results", type=Path, default=Path("lab-results"), help="output dir")
    parser.add_argument("--keep", action="store_true", help="leave the host running at the end")
    parser.add_argument("--json", action="store_true", help="print summary.json on stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        print(
            f"python -m lab: --steps {args.steps!r}: unknown step(s) {', '.join(unknown) or '-'}; "
            f"known, in order: {', '.join(STEPS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        args.results.mkdir(parents=True, exist_ok=True)
        probe = args.results / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        print(f"python -m lab: --results {args.results}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    lab = Lab(args.results, steps, keep=args.keep)
    summary = lab.run()
    if args.json:
        import json

        print(json.dumps(summary, indent=1))
    return EXIT_OK if summary["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
