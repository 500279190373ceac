"""An atomic read-modify-write for the arm64 codegen tests: the service itself needs none.

Every counter in lowlat has one writer, so production code only loads and stores; this
fetch-add exists to show what a real RMW compiles to on aarch64 next to them.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from service.kernels.atomics import _check_int64_array, _element_pointer


@intrinsic
def fetch_add_relaxed(typingctx, array, index, value):
    """Atomically add ``value`` to ``array[index]``; returns the previous value."""
    _check_int64_array(array, writes=True)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        val = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "monotonic")

    return types.int64(array, index, value), codegen
