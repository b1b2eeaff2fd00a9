"""The fused kernel of a compressed se_e2_a block (SPEC_COMPRESS 7-8), on NumPy arrays, compiled with Numba.

``A = sum_k r_k^T g(r_k[0])`` (4 x ng per centre) and its backward ``dE/dr`` from ``dE/dA``, slot by slot: the
table row of each slot is read once and its ``ng`` polynomials are evaluated and accumulated at once, so neither
``G`` (K x ng) nor the gathered coefficients (6K x ng) are ever stored, as in DeePMD-kit's C++ kernel
(``tabulate_fusion_se_a``).  On the water frame the forward and backward of all four blocks take ~4 ms, against
~25 ms for the same sums as array operations (:func:`dpcore.tabulated.tabulated_contraction`) in NumPy.

The array version stays the definition: the backends register these kernels as a fast path
(:func:`dpcore.xp.register_kernel`) only where Numba is installed (``pip install dpcore[fast]``) and
``DPCORE_KERNELS`` is not ``0``; the sums are reordered (``reassoc``, so the reductions over the ``ng`` neurons
vectorise), which moves results by round-off only.  Rows are clamped to the table, so no input, not even NaN,
reads outside it.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import numpy as np

_KERNELS = None  # (contract, contract_vjp) once compiled


def available() -> bool:
    """Numba is importable and ``DPCORE_KERNELS`` does not switch the kernels off."""
    return os.environ.get("DPCORE_KERNELS", "1") != "0" and importlib.util.find_spec("numba") is not None


def version() -> str:
    """What evaluates compressed tables: ``"numba <version>"`` or why the array version does."""
    if os.environ.get("DPCORE_KERNELS", "1") == "0":
        return "arrays (DPCORE_KERNELS=0)"
    if importlib.util.find_spec("numba") is None:
        return "arrays (numba not installed)"
    import numba

    return f"numba {numba.__version__}"


def cached(decorator, fn):
    """``fn`` compiled by a numba ``decorator`` (``njit`` or ``cfunc`` with its options bound, e.g. by
    ``functools.partial``): the machine code cached on disk where numba finds a writable place (beside the module or
    in the user's cache), else compiled in this process.  Every kernel of dpcore is compiled so."""
    try:
        return decorator(cache=True)(fn)
    except RuntimeError:
        return decorator()(fn)


def _build():
    from numba import njit

    fast = {"reassoc", "contract"}  # reorder sums (vectorised reductions over neurons); no other relaxation

    def compiled(fn):
        # nogil: other Python threads (TensorFlow's numpy_function, a caller's) run beside it
        return cached(functools.partial(njit, fastmath=fast, nogil=True), fn)

    @njit(inline="always")
    def row_of(table, geo, x):
        """(table row, t, delta) of input x, as dpcore.tabulated._locate; the row clamped to [0, last]."""
        lo, up, xmax, s0, s1, t_end = geo[0], geo[1], geo[2], geo[3], geo[4], geo[7]
        n0, last = int(geo[5]), int(geo[6])
        if not x == x:  # NaN: row 0, and the NaN goes on through t
            row, t, d = 0, x, 0.0
        elif x < lo:
            row, t, d = 0, 0.0, x - lo
        elif x < up:
            row = int(min((x - lo) / s0, n0))
            t, d = x - (row * s0 + lo), 0.0
        else:
            row = int(min((x - up) / s1, last - n0)) + n0
            t, d = (x - ((row - n0) * s1 + up), 0.0) if x < xmax else (t_end, x - xmax)
        return table[max(0, min(row, last))], t, d

    @njit(inline="always")
    def value(c, k, t):  # P_k(t), Horner
        return c[0, k] + (c[1, k] + (c[2, k] + (c[3, k] + (c[4, k] + c[5, k] * t) * t) * t) * t) * t

    @njit(inline="always")
    def slope(c, k, t):  # P_k'(t)
        return c[1, k] + (2.0 * c[2, k] + (3.0 * c[3, k] + (4.0 * c[4, k] + 5.0 * c[5, k] * t) * t) * t) * t

    @compiled
    def contract(table, geo, r, out):
        for n in range(r.shape[0]):
            for j in range(r.shape[1]):
                c, t, d = row_of(table, geo, r[n, j, 0])
                r0, r1, r2, r3 = r[n, j, 0], r[n, j, 1], r[n, j, 2], r[n, j, 3]
                for k in range(table.shape[2]):
                    g = value(c, k, t)
                    if d != 0.0:  # outside the table: the linear continuation (SPEC_COMPRESS 7)
                        g += d * slope(c, k, t)
                    out[n, 0, k] += r0 * g
                    out[n, 1, k] += r1 * g
                    out[n, 2, k] += r2 * g
                    out[n, 3, k] += r3 * g

    @compiled
    def contract_vjp(table, geo, r, gA, out):
        for n in range(r.shape[0]):
            for j in range(r.shape[1]):
                c, t, d = row_of(table, geo, r[n, j, 0])
                r0, r1, r2, r3 = r[n, j, 0], r[n, j, 1], r[n, j, 2], r[n, j, 3]
                a0 = a1 = a2 = a3 = gx = 0.0
                for k in range(table.shape[2]):
                    dg = slope(c, k, t)
                    g = value(c, k, t) + d * dg
                    q0, q1, q2, q3 = gA[n, 0, k], gA[n, 1, k], gA[n, 2, k], gA[n, 3, k]
                    a0 += g * q0
                    a1 += g * q1
                    a2 += g * q2
                    a3 += g * q3
                    gx += dg * (r0 * q0 + r1 * q1 + r2 * q2 + r3 * q3)  # dE/dx through g(x), x = r[0]
                out[n, j, 0] = a0 + gx
                out[n, j, 1] = a1
                out[n, j, 2] = a2
                out[n, j, 3] = a3

    return contract, contract_vjp


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _build()
    return _KERNELS


def table_info(geometry) -> list:
    """The ``info`` of :mod:`dpcore.tabulated` from a table's geometry (``table_geometry`` rebuilds the rest from
    its first five numbers; ``check_frequency`` is not used there)."""
    return list(geometry[:5]) + [-1.0]


def _blocks(table, r):
    """The table and r (..., K, 4) as C-contiguous arrays of one dtype, r as (N, K, 4)."""
    table = np.ascontiguousarray(table)
    r3 = np.ascontiguousarray(np.reshape(r, (math.prod(r.shape[:-2]),) + tuple(r.shape[-2:])), dtype=table.dtype)
    return table, r3


def contract(table, geometry, r):
    """``A`` (..., 4, ng) of rows r (..., K, 4) (NumPy); ``geometry`` the 8 numbers of
    :func:`dpcore.tabulated.table_geometry`."""
    table, r3 = _blocks(table, r)
    out = np.zeros((r3.shape[0], 4, table.shape[2]), dtype=table.dtype)
    _kernels()[0](table, np.asarray(geometry, dtype=np.float64), r3, out)
    return out.reshape(tuple(r.shape[:-2]) + (4, table.shape[2]))


def contract_vjp(table, geometry, r, gA):
    """``dE/dr`` (..., K, 4) of :func:`contract` from ``dE/dA`` (..., 4, ng) (NumPy)."""
    table, r3 = _blocks(table, r)
    g3 = np.ascontiguousarray(np.reshape(gA, (r3.shape[0], 4, table.shape[2])), dtype=table.dtype)
    out = np.empty_like(r3)
    _kernels()[1](table, np.asarray(geometry, dtype=np.float64), r3, g3, out)
    return out.reshape(r.shape)


def register(name: str, fused, unusable: str | None = None) -> str:
    """Register ``fused`` (a :class:`TableKernel`) as the fast path of :func:`dpcore.tabulated.tabulated_contraction`
    on namespace ``name``'s arrays where :func:`available` and the backend gives no reason it cannot run
    (``unusable``), else remove it; returns :func:`version` or ``"arrays (<unusable>)"`` (recorded in the backend's
    ``settings["table_kernel"]``)."""
    from dpcore.xp import register_kernel

    runs = available() and unusable is None
    register_kernel(name, "tabulated_contraction", fused if runs else None)
    return f"arrays ({unusable})" if available() and not runs else version()


def _same(x, like=None):
    return x


class TableKernel:
    """The kernels on a backend's arrays (``dpcore.xp.kernel(xp, "tabulated_contraction")``), through NumPy views.

    ``usable(*arrays)``: the kernel may run on them (eager frameworks: CPU tensors that autodiff does not
    record; else :meth:`contract` returns None and the array version runs); ``to_numpy(x)`` and
    ``from_numpy(a, like)`` convert without copying where the framework can.  The defaults are NumPy's."""

    def __init__(self, usable=None, to_numpy=_same, from_numpy=_same):
        self.usable, self.to_numpy, self.from_numpy = usable or (lambda *arrays: True), to_numpy, from_numpy

    def contract(self, table, geometry, r):
        if not self.usable(table, r):
            return None
        return self.from_numpy(contract(self.to_numpy(table), geometry, self.to_numpy(r)), r)

    def contract_vjp(self, table, geometry, r, gA):
        if not self.usable(table, r, gA):  # a cotangent that autodiff records: the array version
            from dpcore.tabulated import tabulated_contraction, tabulated_contraction_vjp

            return tabulated_contraction_vjp(gA, tabulated_contraction(table, table_info(geometry), r)[1])
        return self.from_numpy(contract_vjp(self.to_numpy(table), geometry, self.to_numpy(r), self.to_numpy(gA)), r)
