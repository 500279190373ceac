"""The control block: the supervisor's commands to the stages and the stages' drain handshake.

Each word sits on its own 128-byte line (one writer, spinning readers) and is accessed only
with acquire/release atomics. ``GO`` starts every stage at once after all have warmed up;
``STOP`` asks the feed to stop producing; each stage sets its ``DONE`` word once it has drained
what it can still receive, which is what lets the next stage finish (see service.stages).
``KILL_SWITCH`` is set by an operator (``trading-service kill-switch on``): while it is on the
engine rejects every order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.atomics import load_acquire, store_release
from service.jit import kernel
from service.shm import Segment

SEGMENT_KIND_CONTROL = 3
CONTROL_OFFSET = 128
_LINE = 16

GO, STOP, KILL_SWITCH, FEED_DONE, ENGINE_DONE, GATEWAY_DONE = (i * _LINE for i in range(6))
DONE = (FEED_DONE, ENGINE_DONE, GATEWAY_DONE)  # indexed by service.stats_layout stage
CONTROL_WORDS = 6 * _LINE


def create_control(shm_dir: Path, name: str) -> tuple[Segment, np.ndarray]:
    segment = Segment.create(
        shm_dir, name, CONTROL_OFFSET + CONTROL_WORDS * 8, SEGMENT_KIND_CONTROL
    )
    return segment, segment.array(np.int64, CONTROL_OFFSET, CONTROL_WORDS)


def attach_control(shm_dir: Path, name: str, writable: bool = True) -> tuple[Segment, np.ndarray]:
    segment = Segment.attach(shm_dir, name, SEGMENT_KIND_CONTROL, writable)
    return segment, segment.array(np.int64, CONTROL_OFFSET, CONTROL_WORDS)


@kernel
def set_word(control, index, value):
    store_release(control, index, value)


@kernel
def get_word(control, index):
    return load_acquire(control, index)


@kernel
def wait_for_go(control):
    """Spin until GO (True) or STOP (False) is set."""
    while True:
        if load_acquire(control, GO) != 0:
            return True
        if load_acquire(control, STOP) != 0:
            return False
