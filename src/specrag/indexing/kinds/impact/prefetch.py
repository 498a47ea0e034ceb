"""``prefetch(array, i)``: a software prefetch of ``array[i]`` inside numba kernels.

Block-Max Pruning scores blocks in bound order, so each block's postings are a cache miss
that the hardware prefetcher cannot predict; the kernel knows the next block while it
scores the current one and asks for its memory early (retrieval/bmp.py). This is LLVM's
``llvm.prefetch`` (a hint: it never faults, even for an address past the array), which
numba does not expose.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _emit_prefetch(context, builder, aryty, ary, indices, index_types):
    array = context.make_array(aryty)(context, builder, ary)
    indices = [
        context.cast(builder, i, ty, types.intp) for i, ty in zip(indices, index_types, strict=True)
    ]
    ptr = cgutils.get_item_pointer(context, builder, aryty, array, indices)
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch"
    )
    # read access, keep in all cache levels, data cache
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
    return context.get_dummy_value()


@intrinsic
def prefetch(typingctx, arr, i):
    """Prefetch ``arr[i]`` (1-d)."""

    def codegen(context, builder, sig, args):
        return _emit_prefetch(context, builder, sig.args[0], args[0], args[1:], sig.args[1:])

    return types.void(arr, i), codegen


@intrinsic
def prefetch2(typingctx, arr, i, j):
    """Prefetch ``arr[i, j]`` (2-d)."""

    def codegen(context, builder, sig, args):
        return _emit_prefetch(context, builder, sig.args[0], args[0], args[1:], sig.args[1:])

    return types.void(arr, i, j), codegen
