"""Apply a per-atom-type function to every atom, forward and backward.

Two layouts, same numbers:

* ``blocks`` given (atoms sorted by type, same composition in every frame):
  ``blocks = ((t, start, stop), ...)`` and type ``t``'s function runs only on
  atoms ``start:stop`` (no wasted work; shapes are static for jit).
* ``blocks is None``: every type's function runs on all atoms and the result
  is selected with ``where(atype == t)`` (any per-frame composition).

A block may carry a fourth entry, the used width of each neighbour section for its atoms
(:mod:`dpcore.slot_trim`): ``(t, start, stop, widths)``.
"""

from __future__ import annotations

from .xp import namespace


def blocks_for(atype_row) -> tuple | None:
    """Blocks of a type-sorted atom row (NumPy ints), or None if not sorted or containing padding."""
    import numpy as np

    atype_row = np.asarray(atype_row)
    if atype_row.size == 0 or atype_row.min() < 0 or np.any(np.diff(atype_row) < 0):
        return None
    types, starts = np.unique(atype_row, return_index=True)
    stops = list(starts[1:]) + [atype_row.size]
    return tuple((int(t), int(a), int(b)) for t, a, b in zip(types, starts, stops))


def block_widths(blocks) -> dict:
    """``{t: widths}`` of the blocks that carry used neighbour-section widths (:mod:`dpcore.slot_trim`)."""
    return {b[0]: b[3] for b in blocks or () if len(b) > 3 and b[3] is not None}


def _type_mask(xp, atype, t, ndim, dtype):
    m = xp.astype(atype == t, dtype)
    return xp.reshape(m, tuple(m.shape) + (1,) * (ndim - m.ndim))


def apply_by_type(fn, x, atype, ntypes: int, blocks=None):
    """``y[:, i] = fn(t_i, x[:, i])`` for x (nf, nloc, ...), atype (nf, nloc).

    ``fn(t, x_sub) -> (y_sub, cache)`` or ``None`` when type ``t`` contributes zeros.
    Returns ``y`` and the caches needed by :func:`vjp_by_type`.
    """
    xp = namespace(x)
    caches = {}
    if blocks is not None:
        parts = []
        for t, start, stop, *_ in blocks:
            res = fn(t, x[:, start:stop, ...])
            if res is None:
                raise ValueError(f"no network for atom type {t}, but atoms of that type are present")
            parts.append(res[0])
            caches[t] = res[1]
        return (parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)), caches
    y = None
    for t in range(ntypes):
        res = fn(t, x)
        if res is None:
            continue
        yt = res[0] * _type_mask(xp, atype, t, res[0].ndim, res[0].dtype)
        y = yt if y is None else y + yt
        caches[t] = res[1]
    return y, caches


def vjp_by_type(fn_vjp, g, atype, ntypes: int, blocks, caches):
    """Backward of :func:`apply_by_type`: ``fn_vjp(t, g_sub, cache) -> gx_sub`` for ``g`` the gradient of ``y``."""
    if blocks is not None:
        parts = [fn_vjp(t, g[:, start:stop, ...], caches[t]) for t, start, stop, *_ in blocks]
        return parts[0] if len(parts) == 1 else namespace(parts[0]).concat(parts, axis=1)
    xp = namespace(g)
    gx = None
    for t, cache in caches.items():
        gt = fn_vjp(t, g * _type_mask(xp, atype, t, g.ndim, g.dtype), cache)
        gx = gt if gx is None else gx + gt
    return gx
