"""Tabulated embedding nets (model compression, SPEC_COMPRESS 5 and 7): evaluation on any array-API backend.

A compressed embedding net ``N: R -> R^ng`` is a table of quintic polynomials on the knots
``lo, lo+s0, ... (< up), up, up+s1, ... (< xmax), xmax``.  Row ``r`` (interval between knot ``r`` and
``r+1``, width ``s0`` for ``r < n0 = floor((up - lo)/s0)``, ``s1`` after) holds the coefficients ``c_m``
of ``P_r(t) = sum_m c_m t^m`` with ``t`` the distance from the left knot.  Outside ``[lo, xmax)`` the
table continues linearly with the boundary slope (the C1 extrapolation of DeePMD-kit 3.2.0):

    x < lo:          g(x) = P_0(0) + P_0'(0) (x - lo)
    lo <= x < xmax:  g(x) = P_r(x - x_r)
    x >= xmax:       g(x) = P_last(t_end) + P_last'(t_end) (x - xmax)

so ``dg/dx = P_r'(t)`` everywhere (the analytic derivative used for forces and virials).

``table``: (nspline, 6, ng), coefficient-major (``table[r, m, k]`` = ``c_m`` of neuron ``k``; DeePMD-kit
stores the transpose ``(nspline, ng*6)``, see :mod:`dpcore.descriptor.tabulate`).  ``info``: the six
numbers of DeePMD-kit's ``compress_info`` as Python floats ``[lo, up, xmax, s0, s1, check_frequency]``.
"""

from __future__ import annotations

import math

from .xp import namespace


def table_geometry(info, nspline: int) -> tuple:
    """Static numbers of a table: ``(lo, up, xmax, s0, s1, n0, last, t_end)``.

    ``n0`` rows of width ``s0``, ``last = nspline - 1``, ``t_end`` the offset of ``xmax`` in the last row.
    """
    lo, up, xmax, s0, s1 = (float(v) for v in list(info)[:5])
    n0 = math.floor((up - lo) / s0)
    last = nspline - 1
    return lo, up, xmax, s0, s1, n0, last, xmax - ((last - n0) * s1 + up)


def _locate(table, info, xs):
    """Row (int64), offset ``t`` in the row and distance ``delta`` beyond the table of inputs xs (any shape)."""
    xp = namespace(xs)
    lo, up, xmax, s0, s1, n0, last, t_end = table_geometry(info, table.shape[0])
    # row: floor of a non-negative number = truncation; clipped to the table (rows 0..n0, then n0..last)
    first = xp.astype(xp.clip((xs - lo) / s0, 0.0, float(n0)), xp.int64)
    second = xp.astype(xp.clip((xs - up) / s1, 0.0, float(last - n0)), xp.int64) + n0
    below, inner = xs < lo, xs < up
    row = xp.where(inner, first, second)
    rowf = xp.astype(row, xs.dtype)
    zero = xp.zeros_like(xs)
    t = xp.where(below, zero, xp.where(inner, xs - (rowf * s0 + lo),
                                        xp.where(xs < xmax, xs - ((rowf - n0) * s1 + up), zero + t_end)))
    delta = xp.where(below, xs - lo, xp.where(xs >= xmax, xs - xmax, zero))
    return row, t, delta


def _stack(xp, parts):
    return xp.concat([p[..., None] for p in parts], axis=-1)


def _basis(xp, t, delta):
    """``T_m = t^m + m t^(m-1) delta`` and ``D_m = dT_m/dx = m t^(m-1)`` (..., 6): ``g = sum_m T_m c_m``."""
    t2 = t * t
    t3 = t2 * t
    t4 = t3 * t
    one = xp.ones_like(t)
    D = [xp.zeros_like(t), one, 2.0 * t, 3.0 * t2, 4.0 * t3, 5.0 * t4]
    T = [one, t + delta, t2 + D[2] * delta, t3 + D[3] * delta, t4 + D[4] * delta, t4 * t + D[5] * delta]
    return _stack(xp, T), _stack(xp, D)


def tabulated_net(table, info, x):
    """Values and first derivatives of a tabulated embedding net (Horner form; SPEC_COMPRESS 7).

    table: (nspline, 6, ng); info: ``[lo, up, xmax, s0, s1, f]`` (floats); x: (..., 1), the net input
    ``s = R~[0]`` in the table's dtype.  Returns ``g`` (..., ng) and ``dg/dx`` (..., ng).
    """
    xp = namespace(x)
    xs = x[..., 0]
    row, t, delta = _locate(table, info, xs)
    coeff = xp.reshape(xp.take(table, xp.reshape(row, (-1,)), axis=0), tuple(xs.shape) + tuple(table.shape[1:]))
    c0, c1, c2, c3, c4, c5 = (coeff[..., m, :] for m in range(6))
    t = t[..., None]
    g = c0 + (c1 + (c2 + (c3 + (c4 + c5 * t) * t) * t) * t) * t
    dg = c1 + (2.0 * c2 + (3.0 * c3 + (4.0 * c4 + 5.0 * c5 * t) * t) * t) * t
    return g + dg * delta[..., None], dg


def tabulated_contraction(table, info, r):
    """``A = sum_k r_k^T g(r_k[0])`` (the se_e2_a product ``R~^T G`` of one neighbour block) from a table.

    r: (..., K, 4) normalised environment rows, ``r[..., 0]`` the table input.  Returns A (..., 4, ng) and a
    cache for :func:`tabulated_contraction_vjp`.  Written as one batched matrix product per centre,
    ``A = W C`` with ``W[c, (k, m)] = r_k[c] T_m(x_k)`` (4 x 6K) and the gathered coefficients ``C`` (6K x ng):
    ``G`` (K x ng) is never formed, as in DeePMD-kit's fused kernel.
    """
    xp = namespace(r)
    lead, K = tuple(r.shape[:-2]), r.shape[-2]
    row, t, delta = _locate(table, info, r[..., 0])
    T, D = _basis(xp, t, delta)
    ng = table.shape[-1]
    C = xp.reshape(xp.take(table, xp.reshape(row, (-1,)), axis=0), lead + (K * 6, ng))
    rT = xp.matrix_transpose(r)  # (..., 4, K)
    W = xp.reshape(rT[..., :, :, None] * T[..., None, :, :], lead + (4, K * 6))
    return W @ C, (C, rT, T, D)


def tabulated_contraction_vjp(gA, cache):
    """Pull ``dE/dA`` (..., 4, ng) back to ``dE/dr`` (..., K, 4) (through ``r`` and the table input ``r[..., 0]``)."""
    xp = namespace(gA)
    C, rT, T, D = cache
    lead, K = tuple(rT.shape[:-2]), rT.shape[-1]
    # dE/dW transposed, (..., K, 6, 4); C (6K x ng) times gA^T: the gathered coefficients are read in their layout
    Qt = xp.reshape(C @ xp.matrix_transpose(gA), lead + (K, 6, 4))
    gr = xp.sum(Qt * T[..., :, :, None], axis=-2)  # (..., K, 4)
    gx = xp.sum(xp.sum(Qt * xp.matrix_transpose(rT)[..., :, None, :], axis=-1) * D, axis=-1)  # (..., K)
    return gr + xp.concat([gx[..., None], xp.zeros_like(gr[..., 1:])], axis=-1)
