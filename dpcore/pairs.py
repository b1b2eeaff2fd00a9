"""Neighbour pairs: host-side index data (NumPy) and the differentiable pair vectors (array API).

The host turns a :class:`~dpcore.nlist.NeighborList` into integer/shift
arrays that never depend on parameters (so they are computed once per frame
and cached).  Inside the model the pair vectors

    r_ij = coord[owner(j)] - coord[i] + (shift_j - shift_i) @ box

are formed from the raw coordinates and the cell, so forces and the virial
flow through them; this equals ``ext_j - ext_i`` of SPEC 1 (extended
coordinates ``ext = coord[mapping] + shift @ box``).
"""

from __future__ import annotations

import numpy as np

from .xp import gather_rows, namespace


def exclusion_table(ntypes: int, pairs) -> np.ndarray:
    """(ntypes+1, ntypes+1) float table, 0 for excluded (symmetrised) type pairs; index ``ntypes`` = empty slot."""
    table = np.ones((ntypes + 1, ntypes + 1))
    for a, b in pairs or ():
        if not (0 <= a < ntypes and 0 <= b < ntypes):
            raise ValueError(f"exclude_types pair {[a, b]} has a type outside 0..{ntypes - 1}")
        table[a, b] = table[b, a] = 0.0
    return table


def pair_inputs(nl, atype, ntypes: int, exclude_types=(), atom_exclude_types=(), first_type=None,
                centres=None) -> dict:
    """Parameter-independent model inputs from a neighbour list (all NumPy).

    nl: NeighborList with nlist (nf, nloc, nnei), mapping (nf, nall), shift (nf, nall, 3).
    atype: (nf, nloc) int, < 0 for padding atoms.
    Returns ``nlist_mask`` (nf, nloc, nnei) bool, ``nei_owner`` (nf, nloc, nnei) int64 local owner (0 if empty),
    ``pair_shift`` (nf, nloc, nnei, 3) float64 lattice shift of the pair, ``nei_type`` (nf, nloc, nnei)
    (``ntypes`` if empty), ``centre_type`` (nf, nloc) (padding -> 0), ``atom_mask`` (nf, nloc) bool
    (real atom and type not in ``atom_exclude_types``), and ``exclude_mask`` (nf, nloc, nnei) float64 when
    descriptor ``exclude_types`` are given.
    ``first_type`` (nf,) int, optional: type of the frame's first atom in the caller's atom order (before any
    type sorting), returned as ``first_type``; mixed-type descriptors (DPA-1) type their empty slots with it, as
    DeePMD-kit does (SPEC_DPA1 0.2).  Without it they use ``centre_type[:, 0]``.
    ``centres`` (nf, nc) int, optional: the local atoms whose rows ``nl.nlist`` (nf, nc, nnei) holds (a chunk of
    centres; the extended atoms of ``nl`` still start with all local atoms); the centre arrays are then theirs,
    and ``centre_index`` (nf, nc) int64 is returned for :func:`pair_vectors`.
    """
    atype = np.asarray(atype)
    nlist = np.asarray(nl.nlist)
    nf, nloc, nnei = nlist.shape
    mapping = np.asarray(nl.mapping)
    nall = mapping.shape[1]
    # flat gathers (np.take of an index plus the frame's offset; several times faster than take_along_axis or
    # fancy indexing here); an empty slot reads row nf * nall, a zero row appended to the shifts
    frame = np.arange(nf, dtype=np.int64).reshape(nf, 1)
    if centres is None:
        centre_atype, centre_row = atype, np.arange(nloc, dtype=np.int64) + nall * frame
    else:
        centres = np.asarray(centres, dtype=np.int64).reshape(nf, nloc)
        centre_atype = np.take_along_axis(atype, centres, axis=1)
        centre_row = centres + nall * frame
    mask = nlist >= 0
    empty = nf * nall
    row_j = np.where(mask, nlist + nall * frame[..., None], empty).reshape(-1)
    row_i = np.where(mask, centre_row[..., None], empty).reshape(-1)
    shift = np.concatenate([np.asarray(nl.shift, dtype=np.float64).reshape(empty, 3), np.zeros((1, 3))])
    pair_shift = (np.take(shift, row_j, axis=0) - np.take(shift, row_i, axis=0)).reshape(nf, nloc, nnei, 3)
    owner = np.take(np.append(mapping.reshape(-1), 0), row_j).reshape(nf, nloc, nnei)
    nei_type = np.where(mask, np.take(atype.reshape(-1), owner + atype.shape[1] * frame[..., None]), ntypes)
    centre_type = np.where(centre_atype >= 0, centre_atype, 0)
    out = {
        "nlist_mask": mask,
        "nei_owner": owner.astype(np.int64, copy=False),
        "pair_shift": pair_shift,
        "nei_type": nei_type.astype(np.int64, copy=False),
        "centre_type": centre_type.astype(np.int64, copy=False),
        "atom_mask": (centre_atype >= 0) & ~np.isin(centre_atype, list(atom_exclude_types)),
    }
    if centres is not None:
        out["centre_index"] = centres
    if first_type is not None:
        first = np.broadcast_to(np.asarray(first_type, dtype=np.int64).reshape(-1), (nf,))
        out["first_type"] = np.where(first >= 0, first, ntypes)  # a padding atom: the zero embedding row
    if exclude_types:
        table = exclusion_table(ntypes, exclude_types)
        out["exclude_mask"] = table[centre_type[..., None], nei_type]
    return out


def pair_vectors(coord, box, pairs):
    """r_ij (nf, nloc, nnei, 3) in Å from coord (nf, nloc, 3) and box (nf, 3, 3) or None; zero in empty slots.

    With ``pairs["centre_index"]`` (nf, nc) (a chunk of centres), coord (nf, natoms, 3) holds every atom and r_ij
    is (nf, nc, nnei, 3).
    """
    xp = namespace(coord)
    centre_index = pairs.get("centre_index")
    centre = coord if centre_index is None else gather_rows(xp, coord, centre_index)
    rij = gather_rows(xp, coord, pairs["nei_owner"]) - centre[:, :, None, :]
    if box is not None:
        nf, nloc, nnei = pairs["nei_owner"].shape
        shifts = xp.reshape(xp.astype(pairs["pair_shift"], coord.dtype), (nf, nloc * nnei, 3))
        rij = rij + xp.reshape(shifts @ box, (nf, nloc, nnei, 3))
    return rij * xp.astype(pairs["nlist_mask"], coord.dtype)[..., None]
