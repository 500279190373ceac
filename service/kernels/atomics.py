"""Memory-ordering and clock primitives for numba kernels.

numba has no atomics API, so these are LLVM intrinsics written with llvmlite. They are the
only places in lowlat where cross-process memory ordering is decided:

- ``load_acquire(a, i)`` / ``store_release(a, i, v)``: int64 element ``a[i]`` with acquire /
  release semantics. On x86 both are plain moves; on Graviton (arm64) they become ``ldar`` /
  ``stlr``. Code must be correct because of these orderings, never because x86 is strongly
  ordered. Every load inside a spin loop must be one of these, or LLVM hoists it out of the
  loop and the spin never ends.
- ``load_relaxed`` / ``store_relaxed``: atomic but unordered (for seqlock payloads and counters
  read by another process: no tearing, no ordering).
- ``fence_acquire()`` / ``fence_release()``: standalone fences (the seqlock needs them).
- ``monotonic_ns()``: ``clock_gettime(CLOCK_MONOTONIC)`` called directly (vDSO, ~20 ns), the
  same clock in every process, so a stamp taken by one stage can be compared in another.
- ``bit_length(v)``: position of the highest set bit plus one (numba's ``leading_zeros``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import leading_zeros
from numba.extending import intrinsic, overload

# Make libc's clock_gettime resolvable by the JIT's dynamic linker (also for cached code).
llvm.load_library_permanently(ctypes.util.find_library("c"))

CLOCK_MONOTONIC = 1  # the same value on x86_64 and aarch64 Linux

_I64 = ir.IntType(64)


def _element_pointer(context, builder, array_type, array, index):
    array_struct = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array_struct, [index])


def _check_int64_array(array, writes: bool = False):
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        raise TypeError(f"atomic access needs an int64 array, got {array}")
    if writes and not array.mutable:
        # numba's own a[i] = v refuses too; writing a read-only mapping would crash the process
        raise TypeError(f"atomic store into a read-only array ({array})")


def _atomic_load(ordering):
    @intrinsic
    def load(typingctx, array, index):
        _check_int64_array(array)

        def codegen(context, builder, signature, args):
            ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
            return builder.load_atomic(ptr, ordering, 8)

        return types.int64(array, index), codegen

    return load


def _atomic_store(ordering):
    @intrinsic
    def store(typingctx, array, index, value):
        _check_int64_array(array, writes=True)

        def codegen(context, builder, signature, args):
            ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
            val = context.cast(builder, args[2], signature.args[2], types.int64)
            builder.store_atomic(val, ptr, ordering, 8)
            return context.get_dummy_value()

        return types.void(array, index, value), codegen

    return store


load_acquire = _atomic_load("acquire")
load_relaxed = _atomic_load("monotonic")
store_release = _atomic_store("release")
store_relaxed = _atomic_store("monotonic")


def _fence(ordering):
    @intrinsic
    def fence(typingctx):
        def codegen(context, builder, signature, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


fence_acquire = _fence("acquire")
fence_release = _fence("release")


@intrinsic
def monotonic_ns(typingctx):
    """Nanoseconds of CLOCK_MONOTONIC, without leaving native code."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        timespec = ir.LiteralStructType([_I64, _I64])
        fnty = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        clock_gettime = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, timespec)
        builder.call(clock_gettime, [ir.Constant(i32, CLOCK_MONOTONIC), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(_I64, 1_000_000_000)), nsec)

    return types.int64(), codegen


def bit_length(value):
    """Number of bits needed to represent a non-negative int64 (0 for 0)."""
    return int(value).bit_length()


@overload(bit_length, jit_options={"cache": True})  # type: ignore[typeddict-unknown-key]
def _bit_length_native(value):
    return lambda value: 64 - leading_zeros(np.int64(value))
