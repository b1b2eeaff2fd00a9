"""Cell list of one frame: the candidate neighbours (local atoms and the periodic images within rcut of the cell)
binned by position, queried by centre (SPEC section 1). Pure NumPy, memory O(nloc), no dense distance matrix.

Positions are rows in Å; ``box`` rows are the lattice vectors a, b, c; fractional coordinates ``s = r @ inv(box)``.
:mod:`dpcore.nlist` turns the pairs into neighbour lists; the chunked evaluation (:mod:`dpcore.infer.chunked`)
builds one cell list per frame and queries it for one chunk of centres at a time.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["CellList", "cell_list", "cell_pairs"]

BIN_MARGIN = 1e-6  # bins and image ranges are enlarged by this relative margin: round-off never loses a pair at rcut
DENSE_BINS_PER_ATOM = 64  # cell list uses a dense bin table when it has at most this many bins per point
BINS_PER_RCUT = 2  # bins rcut/2 wide: the searched 5 bins per axis (2.5 rcut) hold ~1.7x fewer pairs than 3 x rcut
_NEIGHBOR_BINS = np.array(list(itertools.product(range(-BINS_PER_RCUT, BINS_PER_RCUT + 1), repeat=3)))


@dataclass(frozen=True)
class CellList:
    """One frame's candidate neighbours binned for queries by centre (a cell list, memory O(nloc)).

    owner (M,) int64: the local atom each candidate is (an image of); the nloc local atoms come first (wrapped into
    the cell), then the periodic images within rcut of the cell. shift (M, 3) float64: integer lattice shifts,
    ``position = coord[owner] + shift @ box``; pos (3, M) float64: the candidate positions in Å, one row per axis;
    atype (nloc,) int64; rcut in Å. The bin table: ``key`` (M,) bin of each candidate, ``order`` the real
    candidates sorted by bin (``sorted_key`` their keys), ``offsets`` the key offsets of the searched bins, and
    ``starts``/``counts`` per bin (None for a sparse region: binary search in ``sorted_key`` instead).
    """

    owner: np.ndarray
    shift: np.ndarray
    pos: np.ndarray
    atype: np.ndarray
    rcut: float
    key: np.ndarray
    order: np.ndarray
    sorted_key: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray | None
    counts: np.ndarray | None


def cell_list(coord, atype, box, rcut) -> CellList:
    """The :class:`CellList` of one frame: coord (nloc, 3) Å, atype (nloc,) int (< 0 padding), box (3, 3) Å or None.

    Inputs are taken as given (checked by the callers: :func:`build_neighbor_list` or the chunked evaluation).
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
    cell = np.floor(grid).astype(np.int64)
    if len(real):  # every used bin and its neighbours get coordinates >= 0
        cell = cell - (cell[real].min(0) - BINS_PER_RCUT)
    dims = (cell[real].max(0) if len(real) else np.zeros(3, dtype=np.int64)) + BINS_PER_RCUT + 1
    nbins = int(dims[0]) * int(dims[1]) * int(dims[2])
    if nbins >= 2**62:
        raise ValueError(f"coord spans too many rcut-sized bins ({nbins}) for the cell list; check the units")
    key = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    order = real[np.argsort(key[real], kind="stable")]
    sorted_key = key[order]
    offsets = (_NEIGHBOR_BINS[:, 0] * dims[1] + _NEIGHBOR_BINS[:, 1]) * dims[2] + _NEIGHBOR_BINS[:, 2]
    starts = counts = None
    if nbins <= DENSE_BINS_PER_ATOM * len(cell):  # compact region (periodic cells): a dense table of bin starts
        counts = np.bincount(sorted_key, minlength=nbins)
        starts = np.cumsum(counts) - counts
    return CellList(owner=owner, shift=shift, pos=np.ascontiguousarray(pos.T), atype=np.asarray(atype), rcut=rcut,
                    key=key, order=order, sorted_key=sorted_key, offsets=offsets, starts=starts, counts=counts)


def cell_pairs(cells: CellList, centres):
    """Pairs within ``rcut`` of the given centres: ``row`` (P,) position in ``centres``, candidate ``j`` (P,),
    distance (P,) in Å. Self (the centre itself, unshifted) and padding atoms are excluded. The candidates of one
    centre come in the same order whatever the other centres are (bins in ``offsets`` order, then by index)."""
    centres = np.asarray(centres, dtype=np.int64)
    rows = np.flatnonzero(cells.atype[centres] >= 0)
    if len(rows) == 0 or len(cells.order) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    query = (cells.key[centres[rows], None] + cells.offsets).ravel()
    if cells.starts is not None:
        first, count = cells.starts[query], cells.counts[query]
    else:  # sparse (e.g. a spread-out cluster): binary search in the sorted keys
        first = np.searchsorted(cells.sorted_key, query, side="left")
        count = np.searchsorted(cells.sorted_key, query, side="right") - first
    which, slot = _expand_ranges(first, count)
    row, j = rows[which // len(cells.offsets)], cells.order[slot]
    i = centres[row]
    dist2 = np.zeros(len(i))
    for x in cells.pos:  # one axis at a time: 1-d gathers are several times faster
        dist2 += (x[j] - x[i]) ** 2
    reach = cells.rcut * (1.0 + BIN_MARGIN)
    near = np.flatnonzero((dist2 <= reach**2) & (i != j))
    dist = np.sqrt(dist2[near])
    within = dist <= cells.rcut
    return row[near[within]], j[near[within]], dist[within]


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


def _expand_ranges(start, count):
    """Flatten integer ranges ``start[k] .. start[k] + count[k] - 1``: returns (k, value) per element."""
    which = np.repeat(np.arange(len(count)), count)
    return which, np.arange(len(which)) - np.repeat(np.cumsum(count) - count - start, count)
