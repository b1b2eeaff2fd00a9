"""XLA FFI handlers of the fused table kernel (:mod:`dpcore.backends.table_kernel`): Numba ``cfunc`` functions that
read XLA's C call frame (jaxlib's ``xla/ffi/api/c_api.h``, API 0.x: the struct layouts below), answer XLA's
metadata query and run the same compiled loops as NumPy's kernel on the buffers.  Imported only where numba is
installed (by :mod:`dpcore.backends.table_kernel_jax`); everything is at module level so that numba's on-disk
cache finds the machine code again (a closure's intrinsics differ from run to run: ~6 s of compiling a process).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import table_kernel
from .xla_ffi_abi import API_MAJOR, API_MINOR, EXTENSION_METADATA, F64, STAGE_EXECUTE

# XLA FFI C API (jaxlib's xla/ffi/api/c_api.h, checked by xla_ffi_abi.abi_mismatch), as 8-byte words
# XLA_FFI_CallFrame: struct_size, extension_start, api, ctx, stage (int32), then XLA_FFI_Args (struct_size,
# extension_start, size, types, args) at word 5 and XLA_FFI_Rets at word 10
_ARGS, _RETS = 5, 10
# XLA_FFI_Buffer: struct_size, extension_start, dtype (int32), data, rank, dims
_DTYPE, _DATA, _DIMS = 2, 3, 5

contract, contract_vjp = table_kernel._kernels()  # njit dispatchers, called from the handlers


def _handler(fn):
    """An ``XLA_FFI_Handler`` (``XLA_FFI_Error* (XLA_FFI_CallFrame*)``, returning null: no error)."""
    return table_kernel.cached(functools.partial(cfunc, types.voidptr(types.voidptr), nopython=True), fn)


@intrinsic
def address(typingctx, addr):  # int64 -> void*
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@intrinsic
def integer(typingctx, ptr):  # void* -> int64
    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], cgutils.intp_t)

    return types.int64(types.voidptr), codegen


@njit(inline="always")
def words(addr, n):
    return carray(address(addr), (n,), np.int64)


@njit(inline="always")
def int32_at(addr):
    return carray(address(addr), (1,), np.int32)


@njit(inline="always")
def buffer(frame, group, k):
    """Address of argument (group _ARGS) or result (_RETS) k's XLA_FFI_Buffer."""
    return words(words(frame, 15)[group + 4], k + 1)[k]


@njit(inline="always")
def data(buf, dtype, shape):
    return carray(address(words(buf, 6)[_DATA]), shape, dtype)


@njit(inline="always")
def dims(buf):
    return carray(address(words(buf, 6)[_DIMS]), (3,), np.int64)


@njit(inline="always")
def to_run(frame):
    """True in the execute stage; a metadata query is answered (API version, no traits, no state)."""
    ext = words(frame, 5)[1]
    if ext != 0 and int32_at(ext + 8)[0] == EXTENSION_METADATA:
        meta = words(ext, 4)[3]  # XLA_FFI_Metadata_Extension: extension_base (3 words), metadata
        m = words(meta, 6)  # struct_size, api_version {struct_size, extension_start, major, minor}, traits, state
        m[1] = 24
        m[2] = 0
        int32_at(meta + 24)[0] = API_MAJOR
        int32_at(meta + 28)[0] = API_MINOR
        int32_at(meta + 32)[0] = 0
        m[5] = 0
        return False
    return int32_at(frame + 32)[0] == STAGE_EXECUTE


@_handler
def forward(frame_ptr):  # args: table (S, 6, ng), geometry (8,) float64, r (N, K, 4); result A (N, 4, ng)
    frame = integer(frame_ptr)
    if to_run(frame):
        tb, rb, ob = buffer(frame, _ARGS, 0), buffer(frame, _ARGS, 2), buffer(frame, _RETS, 0)
        td, rd = dims(tb), dims(rb)
        geo = data(buffer(frame, _ARGS, 1), np.float64, (8,))
        if int32_at(tb + 8 * _DTYPE)[0] == F64:  # else float32 (JaxTableKernel passes no other)
            out = data(ob, np.float64, (rd[0], 4, td[2]))
            out[:] = 0.0
            contract(data(tb, np.float64, (td[0], td[1], td[2])), geo, data(rb, np.float64, (rd[0], rd[1], 4)),
                     out)
        else:
            out32 = data(ob, np.float32, (rd[0], 4, td[2]))
            out32[:] = 0.0
            contract(data(tb, np.float32, (td[0], td[1], td[2])), geo, data(rb, np.float32, (rd[0], rd[1], 4)),
                     out32)
    return address(0)


@_handler
def backward(frame_ptr):  # args: table, geometry, r (N, K, 4), gA (N, 4, ng); result dE/dr (N, K, 4)
    frame = integer(frame_ptr)
    if to_run(frame):
        tb, rb, ab, ob = (buffer(frame, _ARGS, 0), buffer(frame, _ARGS, 2), buffer(frame, _ARGS, 3),
                          buffer(frame, _RETS, 0))
        td, rd = dims(tb), dims(rb)
        geo = data(buffer(frame, _ARGS, 1), np.float64, (8,))
        if int32_at(tb + 8 * _DTYPE)[0] == F64:  # else float32 (JaxTableKernel passes no other)
            contract_vjp(data(tb, np.float64, (td[0], td[1], td[2])), geo,
                         data(rb, np.float64, (rd[0], rd[1], 4)), data(ab, np.float64, (rd[0], 4, td[2])),
                         data(ob, np.float64, (rd[0], rd[1], 4)))
        else:
            contract_vjp(data(tb, np.float32, (td[0], td[1], td[2])), geo,
                         data(rb, np.float32, (rd[0], rd[1], 4)), data(ab, np.float32, (rd[0], 4, td[2])),
                         data(ob, np.float32, (rd[0], rd[1], 4)))
    return address(0)
