"""The fused table kernel (:mod:`dpcore.backends.table_kernel`) inside jax programs: XLA FFI calls.

A jitted program can call host code through ``jax.pure_callback``, but that converts the arguments to jax arrays
on XLA's CPU thread pool, which dpcore sizes to one thread: the program's thread waits for the callback and the
process deadlocks (session 27).  An XLA FFI handler is called by XLA itself, on the program's thread, with the
buffers' addresses: no Python, no GIL.  The handlers are Numba ``cfunc`` functions that read XLA's C call frame
and run the same compiled loops as NumPy's kernel on the buffers (:mod:`dpcore.backends.table_kernel_ffi`).

``jax.custom_vjp`` gives both calls the array version's gradients (:mod:`dpcore.tabulated`), so autodiff forces
and second derivatives still work; the analytic forces call the backward kernel directly.  Arrays on another
platform than the CPU use the array version.
"""

from __future__ import annotations

import functools

import numpy as np

import jax
import jax.numpy as jnp

from dpcore.tabulated import tabulated_contraction, tabulated_contraction_vjp

from . import table_kernel

_TARGETS = None  # {"contract": name, "contract_vjp": name} once registered with XLA
_HANDLERS = None  # the cfuncs, kept alive while XLA holds their addresses


def _targets() -> dict:
    """Register the handlers with XLA (once per process): their target names."""
    global _TARGETS, _HANDLERS
    if _TARGETS is None:
        from . import table_kernel_ffi

        _HANDLERS = (table_kernel_ffi.forward, table_kernel_ffi.backward)
        names = {"contract": "dpcore_table_contract", "contract_vjp": "dpcore_table_contract_vjp"}
        for name, handler in zip(names.values(), _HANDLERS):
            capsule = jax.ffi.pycapsule(handler.address)
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
        _TARGETS = names
    return _TARGETS


def _ffi(op: str, shape, dtype, *args):
    return jax.ffi.ffi_call(_targets()[op], jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")(*args)


def _rows3(r):
    """r (..., K, 4) as (N, K, 4) and the leading shape."""
    lead = tuple(r.shape[:-2])
    return jnp.reshape(r, (int(np.prod(lead, dtype=np.int64)),) + tuple(r.shape[-2:])), lead


def _arrays_contract(geometry, table, r):
    return tabulated_contraction(table, table_kernel.table_info(geometry), r)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _contract(geometry, table, r):
    r3, lead = _rows3(r)
    out = _ffi("contract", (r3.shape[0], 4, table.shape[-1]), table.dtype, table, np.asarray(geometry), r3)
    return jnp.reshape(out, lead + (4, table.shape[-1]))


def _contract_fwd(geometry, table, r):
    return _contract(geometry, table, r), (table, r)


def _contract_bwd(geometry, res, gA):  # the array version's gradients (table and r)
    return jax.vjp(functools.partial(_arrays_contract, geometry), *res)[1](gA)


_contract.defvjp(_contract_fwd, _contract_bwd)


def _arrays_contract_vjp(geometry, table, r, gA):
    info = table_kernel.table_info(geometry)
    return tabulated_contraction_vjp(gA, tabulated_contraction(table, info, r)[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _contract_vjp(geometry, table, r, gA):
    r3, _ = _rows3(r)
    g3 = jnp.reshape(gA, (r3.shape[0], 4, table.shape[-1]))
    return jnp.reshape(_ffi("contract_vjp", r3.shape, table.dtype, table, np.asarray(geometry), r3, g3), r.shape)


def _contract_vjp_fwd(geometry, table, r, gA):
    return _contract_vjp(geometry, table, r, gA), (table, r, gA)


def _contract_vjp_bwd(geometry, res, gr):
    return jax.vjp(functools.partial(_arrays_contract_vjp, geometry), *res)[1](gr)


_contract_vjp.defvjp(_contract_vjp_fwd, _contract_vjp_bwd)


def _usable(*arrays) -> bool:
    """CPU arrays of one float dtype (the handlers read float32 or float64), the geometry in float64 (x64 on)."""
    dtypes = {a.dtype for a in arrays}
    if not jax.config.jax_enable_x64 or len(dtypes) != 1 or dtypes.pop() not in (jnp.float32, jnp.float64):
        return False
    if jax.default_backend() != "cpu":  # traced arrays do not say where they will be: jax's default device
        return False
    return all(d.platform == "cpu" for a in arrays if callable(getattr(a, "devices", None))
               and not isinstance(a, jax.core.Tracer) for d in a.devices())


class JaxTableKernel:
    """The fast path registered for jax arrays (``dpcore.xp.kernel(xp, "tabulated_contraction")``)."""

    @staticmethod
    def contract(table, geometry, r):
        if not _usable(table, r):
            return None
        return _contract(tuple(float(g) for g in geometry), table, r)

    @staticmethod
    def contract_vjp(table, geometry, r, gA):
        gA = gA.astype(table.dtype)
        geometry = tuple(float(g) for g in geometry)
        if not _usable(table, r, gA):
            return _arrays_contract_vjp(geometry, table, r, gA)
        return _contract_vjp(geometry, table, r, gA)
