"""Neighbour statistics of a data set (``dpcore neighbor-stat``) and ``sel: "auto[:factor]"`` (SPEC 11.2;
SPEC_DPA1 1 for mixed-type descriptors: one total count, one int ``sel``)."""

from __future__ import annotations

import math

import numpy as np

from ..nlist import neighbor_stat


def auto_sel(max_nbor, factor: float = 1.1) -> list[int]:
    """``sel_t = 4 * ceil(int(max_t * factor) / 4)`` (DeePMD-kit's ``sel: "auto:factor"``)."""
    return [4 * ((int(m * factor) + 3) // 4) for m in np.asarray(max_nbor).tolist()]


def parse_auto_sel(sel) -> float | None:
    """Factor of ``"auto"``/``"auto:f"``, or None when ``sel`` is a list."""
    if isinstance(sel, str):
        if sel == "auto":
            return 1.1
        if sel.startswith("auto:"):
            try:
                return float(sel.split(":", 1)[1])
            except ValueError:
                pass
        raise ValueError(f"model/descriptor/sel: expected a list of ints, 'auto' or 'auto:<factor>', got {sel!r}")
    return None


def data_neighbor_stat(systems, rcut: float, ntypes: int, mixed_types: bool = False) -> tuple[float, np.ndarray]:
    """Min pair distance (Å) and max neighbours within ``rcut`` over all frames of all systems: per type,
    shape (ntypes,), or with ``mixed_types`` the max **total** count of any type, shape (1,) (DeePMD-kit's
    ``NeighborStat(mixed_type=True)``, used by DPA-1: every real atom counted as one type)."""
    min_dist, max_nbor = math.inf, np.zeros(1 if mixed_types else ntypes, dtype=np.int64)
    for s in systems:
        atype = np.where(np.asarray(s.atype) >= 0, 0, s.atype) if mixed_types else s.atype  # padding stays -1
        dmin, nmax = neighbor_stat(s.coord, atype, s.box, rcut, 1 if mixed_types else ntypes)
        min_dist, max_nbor = min(min_dist, dmin), np.maximum(max_nbor, nmax)
    return min_dist, max_nbor
