"""Host-side neighbour list: periodic images and a cell list, in pure NumPy (SPEC section 1).

Conventions: positions are rows in Å; ``box`` rows are the lattice vectors a, b, c (flattened row-major to 9
numbers); fractional coordinates are ``s = r @ inv(box)``. The list indexes *extended* atoms: the ``nloc`` local
atoms wrapped into the cell, followed by the periodic images (ghosts) that some centre actually references::

    ext[f, j] = coord[f, mapping[f, j]] + shift[f, j] @ box[f].reshape(3, 3)

Only this formula is differentiable; the model evaluates it itself (see :func:`extend_coord`) so that forces and
virials flow through it. Everything here is bookkeeping on the host: a cell list over the wrapped atoms and the
images within ``rcut`` of the cell, memory O(N), no dense ``nloc x nall`` distance matrix.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NeighborList",
    "SelOverflowWarning",
    "build_neighbor_list",
    "extend_coord",
    "neighbor_stat",
    "reset_sel_overflow_warnings",
]

BIN_MARGIN = 1e-6  # bins and image ranges are enlarged by this relative margin: round-off never loses a pair at rcut
DENSE_BINS_PER_ATOM = 64  # cell list uses a dense bin table when it has at most this many bins per point
DEGENERATE_BOX_RTOL = 1e-10  # |det(box)| / (|a| |b| |c|) at or below this is a degenerate (flat) cell
BINS_PER_RCUT = 2  # bins rcut/2 wide: the searched 5 bins per axis (2.5 rcut) hold ~1.7x fewer pairs than 3 x rcut
_NEIGHBOR_BINS = np.array(list(itertools.product(range(-BINS_PER_RCUT, BINS_PER_RCUT + 1), repeat=3)))


class SelOverflowWarning(UserWarning):
    """More neighbours within ``rcut`` than ``sel`` holds: the farthest ones were dropped from the list."""


_reported_overflows: set[tuple[object, int]] = set()  # (type index or "all", capacity) already warned about


def reset_sel_overflow_warnings() -> None:
    """Forget which overflows were reported, so the next one warns again (for tests and long-lived processes)."""
    _reported_overflows.clear()


@dataclass(frozen=True)
class NeighborList:
    """Neighbour list of ``nf`` frames (SPEC 1.3-1.4).

    nlist:   (nf, nloc, nnei) int64, index into the extended atoms of that frame, -1 = empty slot.
    mapping: (nf, nall) int64, the local atom each extended atom is an image of; ``mapping[:, :nloc] = arange(nloc)``.
    shift:   (nf, nall, 3) float64, integer-valued lattice shifts (units of the lattice vectors); ``shift[:, :nloc]``
             wraps the local atoms into the cell. Padding entries beyond a frame's own nall have mapping 0, shift 0.
    """

    nlist: np.ndarray
    mapping: np.ndarray
    shift: np.ndarray


def build_neighbor_list(coord, atype, box, rcut, sel, pair_exclude_types=(), *, mixed_types=False) -> NeighborList:
    """Neighbour list of every local atom, nearest first, within ``rcut`` (Å; ``d <= rcut`` kept).

    coord (nf, nloc, 3) or (nf, nloc*3) in Å; atype (nf, nloc) or (nloc,) int, ``atype < 0`` is a padding atom (no
    neighbours, never a neighbour); box (nf, 9), (9,) or (nf, 3, 3) in Å, or None for a non-periodic system;
    sel: per-type capacities, ``nnei = sum(sel)``; a single int ``nnei`` means a mixed-type list (DPA-1).
    ``mixed_types=False`` (se_e2_a): the nearest ``nnei`` neighbours overall, then split by neighbour type into blocks
    ``[sel[0] | sel[1] | ...]``, each ascending in distance and padded with -1. ``mixed_types=True`` (or an int
    ``sel``): one distance-sorted block of width ``nnei``, neighbours of any type. ``pair_exclude_types`` (pairs
    ``[ti, tj]``, symmetric) then blanks the excluded (centre type, neighbour type) entries to -1 in place. A
    periodic image of the centre itself is a neighbour. More neighbours than a block holds issues a
    :class:`SelOverflowWarning` (once per type and capacity).
    """
    coord, atype, box, rcut = _check_system(coord, atype, box, rcut)
    if _is_count(sel):  # mixed-type list: one block of nnei slots, types only bound the exclusion table
        mixed_types = True
        top = max([int(t) for pair in pair_exclude_types for t in pair] + [int(atype.max(initial=0))])
        sel = _check_sel([int(sel)] + [0] * top, atype)
    else:
        sel = _check_sel(sel, atype)
    ntypes, nnei = len(sel), int(sum(sel))
    excluded = _pair_exclusion_table(pair_exclude_types, ntypes)
    nf, nloc = atype.shape
    nlist = np.full((nf, nloc, nnei), -1, dtype=np.int64)
    frames, most = [], np.zeros(ntypes + 1, dtype=np.int64)  # most: max type-t count, then max total count
    for f in range(nf):
        owner, shift, i, j, dist = _frame_pairs(coord[f], atype[f], None if box is None else box[f], rcut)
        jtype = atype[f, owner[j]]
        per_type = np.bincount(i * ntypes + jtype, minlength=nloc * ntypes).reshape(nloc, ntypes)
        most = np.maximum(most, np.append(per_type.max(0, initial=0), per_type.sum(1).max(initial=0)))
        i, j, column = _select_neighbors(i, j, dist, jtype, nloc, sel, mixed_types)
        keep = ~excluded[atype[f, i], atype[f, owner[j]]]
        i, j, column = i[keep], j[keep], column[keep]
        used = np.concatenate([np.arange(nloc), np.unique(j[j >= nloc])])  # locals, then the referenced ghosts
        extended_index = np.zeros(len(owner), dtype=np.int64)
        extended_index[used] = np.arange(len(used))
        nlist[f, i, column] = extended_index[j]
        frames.append((owner[used], shift[used]))
    _warn_overflow(most, sel, rcut, mixed_types)
    nall = max((len(m) for m, _ in frames), default=nloc)
    mapping = np.zeros((nf, nall), dtype=np.int64)
    shifts = np.zeros((nf, nall, 3))
    for f, (m, s) in enumerate(frames):
        mapping[f, : len(m)], shifts[f, : len(m)] = m, s
    return NeighborList(nlist=nlist, mapping=mapping, shift=shifts)


def extend_coord(coord, box, nl: NeighborList) -> np.ndarray:
    """Extended coordinates (nf, nall, 3) float64 in Å: ``coord[mapping] + shift @ box``.

    coord (nf, nloc, 3) or (nf, nloc*3); box (nf, 9) / (9,) / (nf, 3, 3) or None, as given to the builder.
    """
    coord = np.asarray(coord, dtype=np.float64)
    coord = coord.reshape(coord.shape[0], -1, 3)
    ext = np.take_along_axis(coord, nl.mapping[..., None], axis=1)
    if box is None:
        return ext
    box = _check_box(box, coord.shape[0])
    return ext + nl.shift @ box


def neighbor_stat(coord, atype, box, rcut, ntypes) -> tuple[float, np.ndarray]:
    """Minimal pair distance (Å) and the most type-t neighbours within ``rcut`` of any centre, shape (ntypes,) int64.

    Inputs as for :func:`build_neighbor_list`. The distance is over pairs within ``rcut`` (images included, self
    excluded) of all frames; it is ``inf`` when no pair lies within ``rcut``. Used for ``sel: "auto"``.
    """
    coord, atype, box, rcut = _check_system(coord, atype, box, rcut)
    if int(ntypes) < 1 or atype.max(initial=-1) >= ntypes:
        raise ValueError(f"ntypes must be a positive count above every type in atype (max {atype.max(initial=-1)}), "
                         f"got ntypes = {ntypes}")
    nf, nloc = atype.shape
    min_dist, most = np.inf, np.zeros(ntypes, dtype=np.int64)
    for f in range(nf):
        owner, _, i, j, dist = _frame_pairs(coord[f], atype[f], None if box is None else box[f], rcut)
        count = np.bincount(i * ntypes + atype[f, owner[j]], minlength=nloc * ntypes).reshape(nloc, ntypes)
        most = np.maximum(most, count.max(0, initial=0))
        min_dist = min(min_dist, float(dist.min(initial=np.inf)))
    return min_dist, most


def _frame_pairs(coord, atype, box, rcut):
    """All pairs within ``rcut`` of one frame, from a cell list over the local atoms and their needed images.

    coord (nloc, 3) Å, atype (nloc,), box (3, 3) or None. Returns ``owner`` (M,) and ``shift`` (M, 3) of the
    candidate extended atoms (the nloc wrapped locals first) and the pairs: centre ``i`` (P,), candidate ``j`` (P,),
    distance (P,) in Å, self (``j == i``) excluded, padding atoms excluded on both sides.
    """
    nloc = len(atype)
    reach = rcut * (1.0 + BIN_MARGIN)
    bin_size = reach / BINS_PER_RCUT
    if box is None:
        owner, shift = np.arange(nloc), np.zeros((nloc, 3))
        pos, grid = coord, coord / bin_size
    else:
        frac = coord @ np.linalg.inv(box)
        wrap = -np.floor(frac)
        owner, image = _periodic_images(frac + wrap, atype >= 0, _face_distances(box), reach)
        shift = wrap[owner] + image
        pos = coord[owner] + shift @ box
        grid = (frac + wrap)[owner] + image
        grid *= _face_distances(box) / bin_size  # fractional -> bin units: atoms within rcut differ by < BINS_PER_RCUT
    real = np.flatnonzero(atype[owner] >= 0)
    i, j = _pairs_in_neighbor_bins(np.floor(grid).astype(np.int64), real[real < nloc], real)
    dist2 = np.zeros(len(i))
    for x in np.ascontiguousarray(pos.T):  # one axis at a time: 1-d gathers are several times faster
        dist2 += (x[j] - x[i]) ** 2
    near = np.flatnonzero((dist2 <= reach**2) & (i != j))
    dist = np.sqrt(dist2[near])
    within = dist <= rcut
    return owner, shift, i[near[within]], j[near[within]], dist[within]


def _face_distances(box):
    """Distances h_a, h_b, h_c (Å) between opposite faces of the cell: V / |b x c|, V / |c x a|, V / |a x b|."""
    return 1.0 / np.linalg.norm(np.linalg.inv(box), axis=0)


def _periodic_images(frac, real, face, reach):
    """Images of the real atoms whose fractional coordinates lie within ``reach`` Å of the cell, per direction.

    frac (nloc, 3) wrapped fractional coordinates, real (nloc,) bool, face (3,) face distances in Å. The integer range
    per atom and direction is the part of ``[-ceil(reach / h_d), ceil(reach / h_d)]`` that lands within reach/h_d of
    [0, 1): any point within ``reach`` of the cell qualifies. Returns ``owner`` (M,) and ``image`` (M, 3), float
    integer shifts, starting with all nloc atoms unshifted (padding atoms included, with no images).
    """
    owner, image = np.flatnonzero(real), np.zeros((int(real.sum()), 3))
    for d in range(3):
        pad = reach / face[d]
        s = frac[owner, d]
        low = np.ceil(-pad - s)
        count = (np.floor(1.0 + pad - s) - low + 1).astype(np.int64)
        which, step = _expand_ranges(np.zeros(len(s), dtype=np.int64), count)
        owner, image = owner[which], image[which]
        image[:, d] = low[which] + step
    ghost = np.any(image != 0, axis=1)
    nloc = len(real)
    return np.concatenate([np.arange(nloc), owner[ghost]]), np.concatenate([np.zeros((nloc, 3)), image[ghost]])


def _pairs_in_neighbor_bins(cell, centres, candidates):
    """Candidate pairs (i, j) from a cell list: every candidate in the (2 BINS_PER_RCUT + 1)^3 bins around each centre.

    cell (M, 3) int bin coordinates of all points; centres, candidates: index arrays into them. Points are sorted by
    bin key; bin starts come from a dense table when the region is compact, else from a binary search, so a sparse
    cluster spanning many empty bins costs no memory.
    """
    if len(centres) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cell = cell - (cell[candidates].min(0) - BINS_PER_RCUT)  # every used bin and its neighbours get coordinates >= 0
    dims = cell[candidates].max(0) + BINS_PER_RCUT + 1
    nbins = int(dims[0]) * int(dims[1]) * int(dims[2])
    if nbins >= 2**62:
        raise ValueError(f"coord spans too many rcut-sized bins ({nbins}) for the cell list; check the units")
    key = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    order = candidates[np.argsort(key[candidates], kind="stable")]
    sorted_key = key[order]
    offsets = (_NEIGHBOR_BINS[:, 0] * dims[1] + _NEIGHBOR_BINS[:, 1]) * dims[2] + _NEIGHBOR_BINS[:, 2]
    query = (key[centres, None] + offsets).ravel()
    if nbins <= DENSE_BINS_PER_ATOM * len(cell):  # compact region (periodic cells): a dense table of bin starts
        count = np.bincount(sorted_key, minlength=nbins)
        first, count = (np.cumsum(count) - count)[query], count[query]
    else:  # sparse (e.g. a spread-out cluster): binary search in the sorted keys
        first = np.searchsorted(sorted_key, query, side="left")
        count = np.searchsorted(sorted_key, query, side="right") - first
    which, slot = _expand_ranges(first, count)
    return centres[which // len(offsets)], order[slot]


def _expand_ranges(start, count):
    """Flatten integer ranges ``start[k] .. start[k] + count[k] - 1``: returns (k, value) per element."""
    which = np.repeat(np.arange(len(count)), count)
    return which, np.arange(len(which)) - np.repeat(np.cumsum(count) - count - start, count)


def _stable_order(group, ngroups):
    """Stable argsort of ints in [0, ngroups): an O(n) radix sort when they fit in 16 bits."""
    return np.argsort(group.astype(np.uint16) if ngroups <= 2**16 else group, kind="stable")


def _rank_in_group(group, ngroups):
    """Position of each element inside its group, for ``group`` sorted ascending (ints in [0, ngroups))."""
    count = np.bincount(group, minlength=ngroups)
    return np.arange(len(group)) - (np.cumsum(count) - count)[group]


def _select_neighbors(i, j, dist, jtype, nloc, sel, mixed_types):
    """Slot of each kept pair (SPEC 1.3 steps 3-5): nearest sum(sel) per centre, then the type split.

    Returns the kept (i, j, column); column in [0, nnei). Ties in distance are broken deterministically.
    """
    order = np.argsort(dist)
    order = order[_stable_order(i[order], nloc)]  # by centre, ascending distance within each centre
    i, j, jtype = i[order], j[order], jtype[order]
    rank = _rank_in_group(i, nloc)
    keep = rank < sum(sel)
    if mixed_types:
        return i[keep], j[keep], rank[keep]
    i, j, jtype = i[keep], j[keep], jtype[keep]
    block = i * len(sel) + jtype
    order = _stable_order(block, nloc * len(sel))  # distance order survives inside each (centre, type) block
    i, j, jtype, block = i[order], j[order], jtype[order], block[order]
    rank = _rank_in_group(block, nloc * len(sel))
    capacity = np.asarray(sel, dtype=np.int64)
    keep = rank < capacity[jtype]
    start = np.cumsum(capacity) - capacity
    return i[keep], j[keep], (start[jtype] + rank)[keep]


def _warn_overflow(most, sel, rcut, mixed_types):
    """Warn once per process per (type, capacity) when more neighbours lie within rcut than the list holds.

    most (ntypes + 1,): the largest type-t neighbour count of any centre, then the largest total count.
    """
    nnei = int(sum(sel))
    if mixed_types:
        overflowing = [("all", int(most[-1]), nnei, "", "sum(sel)")] if most[-1] > nnei else []
    else:
        overflowing = [(t, int(most[t]), sel[t], f" of type {t}", f"sel[{t}]") for t in range(len(sel))]
        overflowing = [entry for entry in overflowing if entry[1] > entry[2]]
    for t, found, capacity, of_type, name in overflowing:
        if (t, capacity) in _reported_overflows:
            continue
        _reported_overflows.add((t, capacity))
        total = f" (and up to {int(most[-1])} of all types, sum(sel) = {nnei})" if of_type and most[-1] > nnei else ""
        warnings.warn(
            f"sel overflow: up to {found} neighbours{of_type} within rcut = {rcut} Å of one centre, but {name} = "
            f"{capacity}{total}; the farthest are dropped and the energy is not smooth. Raise {name} to at least "
            f"{found} (see `dpcore neighbor-stat`).",
            SelOverflowWarning,
            stacklevel=3,
        )


def _pair_exclusion_table(pair_exclude_types, ntypes):
    """(ntypes, ntypes) bool table, True where the (centre type, neighbour type) pair is excluded (symmetric)."""
    table = np.zeros((ntypes, ntypes), dtype=bool)
    for pair in pair_exclude_types:
        ti, tj = (int(t) for t in pair)
        if not (0 <= ti < ntypes and 0 <= tj < ntypes):
            raise ValueError(f"pair_exclude_types must hold pairs [ti, tj] of types in [0, {ntypes}), got {pair}")
        table[ti, tj] = table[tj, ti] = True
    return table


def _check_system(coord, atype, box, rcut):
    """Validate and normalise: coord (nf, nloc, 3) float64, atype (nf, nloc) int64, box (nf, 3, 3) or None, rcut."""
    coord = np.asarray(coord, dtype=np.float64)
    if coord.ndim == 2 and coord.shape[1] % 3 == 0:
        coord = coord.reshape(coord.shape[0], -1, 3)
    if coord.ndim != 3 or coord.shape[2] != 3:
        raise ValueError(f"coord must have shape (nf, nloc, 3) or (nf, nloc*3), got {coord.shape}")
    if not np.all(np.isfinite(coord)):
        raise ValueError("coord contains non-finite values (NaN or inf); expected finite positions in Å")
    nf, nloc = coord.shape[:2]
    atype = np.asarray(atype)
    if atype.ndim == 1:
        atype = np.broadcast_to(atype, (nf, atype.shape[0]))
    if atype.shape != (nf, nloc) or not np.issubdtype(atype.dtype, np.integer):
        raise ValueError(f"atype must be integers of shape (nf, nloc) = {(nf, nloc)} or (nloc,), got {atype.shape} "
                         f"{atype.dtype}")
    rcut = float(rcut)
    if not (np.isfinite(rcut) and rcut > 0):
        raise ValueError(f"rcut must be a finite positive distance in Å, got {rcut}")
    return coord, atype.astype(np.int64), None if box is None else _check_box(box, nf), rcut


def _check_box(box, nf):
    """Cells as (nf, 3, 3) float64 rows a, b, c from (nf, 9), (9,), (3, 3) or (nf, 3, 3); rejects flat cells."""
    box = np.asarray(box, dtype=np.float64)
    if box.shape in ((9,), (3, 3)) or (box.ndim == 2 and box.shape[1] == 9):
        box = box.reshape(-1, 3, 3)
    if box.ndim != 3 or box.shape[1:] != (3, 3) or box.shape[0] not in (1, nf):
        raise ValueError(f"box must have shape (nf, 9) with nf = {nf} (or (9,), (nf, 3, 3)), rows = lattice vectors "
                         f"a, b, c in Å; got {box.shape}")
    box = np.broadcast_to(box, (nf, 3, 3))
    if not np.all(np.isfinite(box)):
        raise ValueError("box contains non-finite values; expected finite lattice vectors in Å")
    scale = np.prod(np.linalg.norm(box, axis=-1), axis=-1)
    flat = np.abs(np.linalg.det(box)) <= DEGENERATE_BOX_RTOL * scale
    if np.any(flat):
        raise ValueError(f"box of frame {int(np.argmax(flat))} is singular (degenerate cell, |det| ~ 0); expected "
                         f"three independent lattice vectors, or box=None for a non-periodic system")
    return box


def _is_count(sel) -> bool:
    """``sel`` is one integer (a mixed-type capacity), not a per-type list."""
    return isinstance(sel, (int, np.integer)) and not isinstance(sel, bool)


def _check_sel(sel, atype):
    """sel as a list of non-negative ints with one entry per type present in atype."""
    sel = [int(s) for s in np.atleast_1d(np.asarray(sel))]
    if not sel or min(sel) < 0:
        raise ValueError(f"sel must be a non-empty list of non-negative per-type capacities, got {sel}")
    if atype.max(initial=-1) >= len(sel):
        raise ValueError(f"atype contains type {int(atype.max())} but sel has {len(sel)} entries; expected one "
                         f"capacity per type (atype < len(sel))")
    return sel
