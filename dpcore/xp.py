"""The one module that knows about array namespaces.

Everything under ``dpcore/`` obtains its namespace with :func:`namespace` and
uses only the Python array API standard plus the few helpers defined here
(operations the standard lacks: scatter-add onto atoms, gather of rows) and the
lookup of a backend's fused kernels (:func:`kernel`).
Backends whose arrays array-api-compat does not cover (TensorFlow, Paddle)
register a shim namespace with :func:`register_namespace`; a shim may provide
a native ``dpcore_segment_sum`` fast path.  No framework is imported here.
"""

from __future__ import annotations

import array_api_compat

_SHIMS: list[tuple[type, object]] = []


def register_namespace(array_type: type, ns: object) -> None:
    """Make :func:`namespace` return ``ns`` for arrays of ``array_type``."""
    _SHIMS[:] = [(t, n) for t, n in _SHIMS if t is not array_type]
    _SHIMS.append((array_type, ns))


def namespace(*arrays):
    """Array API namespace of ``arrays`` (registered shims first, then array-api-compat)."""
    arrs = [a for a in arrays if a is not None and not isinstance(a, (int, float, bool))]
    for a in arrs:
        for array_type, ns in _SHIMS:
            if isinstance(a, array_type):
                return ns
    return array_api_compat.array_namespace(*arrs)


def namespace_name(xp) -> str:
    """Short name of a namespace: numpy, torch, jax, array_api_strict, or the shim's ``__name__``."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return getattr(xp, "__name__", type(xp).__name__)


def device_of(xp, x):
    """Device of ``x`` (shims may provide ``dpcore_device``)."""
    native = getattr(xp, "dpcore_device", None)
    return native(x) if native is not None else array_api_compat.device(x)


def segment_sum(xp, values, index, num_segments: int):
    """Scatter-add rows of ``values`` into ``num_segments`` rows.

    values: (m, c); index: (m,) integer in [0, num_segments); returns (num_segments, c)
    with ``out[s] = sum(values[index == s])``.  Differentiable on autodiff backends.
    """
    native = getattr(xp, "dpcore_segment_sum", None)
    if native is not None:
        return native(values, index, num_segments)
    name = namespace_name(xp)
    if name == "numpy":
        import numpy as np

        cols = [np.bincount(index, weights=values[:, c], minlength=num_segments) for c in range(values.shape[1])]
        return np.stack(cols, axis=1).astype(values.dtype, copy=False)
    if name == "torch":
        out = xp.zeros((num_segments, values.shape[1]), dtype=values.dtype, device=values.device)
        return out.index_add(0, index, values)
    if name == "jax":
        out = xp.zeros((num_segments, values.shape[1]), dtype=values.dtype)
        return out.at[index].add(values)
    # pure-standard fallback: one-hot matrix product, O(m * num_segments) memory
    seg = xp.arange(num_segments, dtype=index.dtype, device=device_of(xp, index))
    onehot = xp.astype(index[None, :] == seg[:, None], values.dtype)
    return onehot @ values


def scatter_to_atoms(xp, values, index, natoms: int):
    """Per-frame scatter-add: values (nf, m, c), index (nf, m) in [0, natoms) -> (nf, natoms, c)."""
    nf, m, c = values.shape
    offset = xp.reshape(xp.arange(nf, dtype=index.dtype, device=device_of(xp, index)) * natoms, (nf, 1))
    flat = segment_sum(xp, xp.reshape(values, (nf * m, c)), xp.reshape(index + offset, (nf * m,)), nf * natoms)
    return xp.reshape(flat, (nf, natoms, c))


_GATHERS: dict = {}  # namespace name -> gather_rows(x, index, inverse) whose transpose is a gather


def register_gather_rows(name: str, fn) -> None:
    """Give namespace ``name`` (:func:`namespace_name`) a :func:`gather_rows` with a known ``inverse``: a backend
    whose autodiff turns the transpose of a gather into a scatter that is slow (XLA on CPU expands every scatter
    into a loop over its rows) transposes it by gathers instead.  Registered by the backend adapters."""
    _GATHERS[name] = fn


def gather_rows(xp, x, index, inverse=None):
    """Per-frame gather: x (nf, n, *rest), index (nf, *idx_shape) in [0, n) -> (nf, *idx_shape, *rest).

    ``inverse`` (nf, n, K), optional: for every row of ``x`` the flat positions of ``index`` (in [0, m),
    ``m = prod(idx_shape)``) that read it, padded with ``m``.  A position missing from it must receive a zero
    cotangent (the caller masks it).  Backends with a registered gather (:func:`register_gather_rows`) then
    differentiate by gathering the cotangent at ``inverse``; the others ignore it.
    """
    if inverse is not None:
        native = _GATHERS.get(namespace_name(xp))
        if native is not None:
            return native(x, index, inverse)
    return _gather(xp, x, index)


def gather_rows_vjp(xp, gy, idx_ndim: int, inverse):
    """The cotangent of ``x`` (nf, n, *rest) in :func:`gather_rows` from the output's ``gy``
    (nf, *idx_shape, *rest), ``idx_ndim = len(idx_shape)``, by ``K`` gathers at ``inverse`` (nf, n, K): the
    backward of the registered gathers, written once for every namespace."""
    nf = gy.shape[0]
    rest = tuple(gy.shape[1 + idx_ndim:])
    flat = xp.reshape(gy, (nf, -1) + rest)
    padded = xp.concat([flat, xp.zeros_like(flat[:, :1])], axis=1)  # position m: a zero row
    gx = None
    for k in range(inverse.shape[2]):
        part = _gather(xp, padded, inverse[:, :, k])
        gx = part if gx is None else gx + part
    return gx


_KERNELS: dict = {}  # (namespace name, op) -> kernel object


def register_kernel(name: str, op: str, kernel) -> None:
    """Give namespace ``name`` (:func:`namespace_name`) a fused kernel for ``op``, a computation that the core also
    writes with array operations (which stay its definition).  Registered by the backend adapters; ``None``
    removes it.  ``op`` ``"tabulated_contraction"``: ``kernel.contract(table, geometry, r)`` (``A`` or None:
    not for these arrays) and ``kernel.contract_vjp(table, geometry, r, gA)`` (:mod:`dpcore.tabulated`)."""
    if kernel is None:
        _KERNELS.pop((name, op), None)
    else:
        _KERNELS[(name, op)] = kernel


def kernel(xp, op: str):
    """The kernel registered for ``op`` on namespace ``xp``, or None (the caller uses its array version)."""
    return _KERNELS.get((namespace_name(xp), op)) if _KERNELS else None


def _gather(xp, x, index):
    nf, n = x.shape[0], x.shape[1]
    rest = tuple(x.shape[2:])
    idx_shape = tuple(index.shape[1:])
    offset = xp.arange(nf, dtype=index.dtype, device=device_of(xp, index)) * n
    offset = xp.reshape(offset, (nf,) + (1,) * len(idx_shape))
    flat_idx = xp.reshape(index + offset, (-1,))
    out = xp.take(xp.reshape(x, (nf * n,) + rest), flat_idx, axis=0)
    return xp.reshape(out, (nf,) + idx_shape + rest)

