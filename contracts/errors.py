"""The one error type every lowlat entry point turns into one line and an exit status.

A ``LowlatError``'s message says what is wrong, where, and what would be right; the entry
point's single top-level handler prints it (never a traceback) and exits with ``exit_code``:
2 for a usage or input mistake, 1 for something that cannot run now (a segment in use, a stage
that died). Each layer's errors (config, model, recording, segments, bench) subclass it, so no
call site needs a try/except of its own.
"""

from __future__ import annotations

from contracts.constants import EXIT_FAILED, EXIT_USAGE


class LowlatError(Exception):
    """A mistake the user can fix, or a state they can act on; printed as one line."""

    exit_code = EXIT_USAGE


class CannotRunNow(LowlatError):
    """The input is fine but the machine is not ready for it (in use, busy, gone)."""

    exit_code = EXIT_FAILED
