"""Kernels over the control block (layout and meaning: ``contracts.segments``).

Every access is an acquire load or a release store: the stages spin on these words from other
cores, and a plain load in a spin loop would be hoisted out of it by LLVM.
"""

from __future__ import annotations

from contracts.segments import GO, STOP
from service.kernels.atomics import load_acquire, store_release
from service.kernels.jit import kernel


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
