"""The shared-memory segments every process agrees on: header size, kinds, control words.

A segment is a file mapped ``MAP_SHARED`` (``service.runtime.shm``). It starts with a header of
``HEADER_BYTES`` (magic, header version, kind, owner, size, creation time, the hash of its
layout and a few kind-specific parameters); what follows depends on its kind:

- ``RING``: head and tail on lines of their own, then the records (``service.kernels.ring``);
- ``STATS``: the stats block, ``contracts.stats_layout.STATS_WORDS`` int64 words;
- ``CONTROL``: the control block below, one word per line;
- ``BENCH`` and ``JITTER``: the benchmark's and the hiccup probe's scratch words.

The control block carries the supervisor's commands to the stages and the stages' drain
handshake. Each word has a line to itself (one writer, spinning readers) and is accessed only
with acquire/release atomics. ``GO`` starts every stage at once after all have warmed up;
``STOP`` asks the feed to stop producing; each stage sets its ``DONE`` word once it has drained
what it can still receive, which lets the next stage finish (``service.kernels.stages``).
``KILL_SWITCH`` is set by an operator (``trading-service kill-switch on``): while it is on the
engine rejects every order.
"""

from __future__ import annotations

import hashlib
from types import ModuleType

from contracts import stats_layout
from contracts.constants import LINE_WORDS

HEADER_BYTES = 128  # every segment's header; its data starts here

# The kind word of the header: an attacher refuses a segment of another kind.
KIND_RING = 1
KIND_STATS = 2
KIND_CONTROL = 3
KIND_BENCH = 9
KIND_JITTER = 10

# Control block words (int64 offsets into the block that starts at HEADER_BYTES)
GO, STOP, KILL_SWITCH, FEED_DONE, ENGINE_DONE, GATEWAY_DONE = (i * LINE_WORDS for i in range(6))
DONE = (FEED_DONE, ENGINE_DONE, GATEWAY_DONE)  # indexed like contracts.stages.STAGES
CONTROL_WORDS = 6 * LINE_WORDS


def layout_hash(*facts: object) -> int:
    """A signed 64-bit hash of a layout's defining facts (offsets, sizes, record types), as
    written in every segment's header: a reader built from another layout refuses the segment
    instead of serving its words as numbers."""
    digest = hashlib.blake2b(repr(facts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def module_facts(module: ModuleType) -> tuple[tuple[str, object], ...]:
    """Every upper-case constant of ``module`` by name: its layout as the code defines it."""
    return tuple(sorted((name, value) for name, value in vars(module).items() if name.isupper()))


# The layout hash of each block kind, derived from the definitions above and in stats_layout
# (a ring's comes from its record type: ``service.runtime.segments.ring_layout``).
KIND_LAYOUTS = {
    KIND_STATS: layout_hash("stats", module_facts(stats_layout)),
    KIND_CONTROL: layout_hash("control", GO, STOP, KILL_SWITCH, DONE, CONTROL_WORDS),
}


def kind_layout(kind: int) -> int:
    """The layout hash of a segment ``kind`` that has one fixed layout."""
    return KIND_LAYOUTS.get(kind) or layout_hash("kind", kind)
