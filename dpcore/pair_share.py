"""Shared embedding inputs: the se_e2_a embedding net runs once per distinct input of a (centre block, neighbour
section), not once per neighbour slot.

In a block of the used slots (:mod:`dpcore.slot_trim`) many slots feed the net the same number:

* a pair of atoms of one type appears twice, as ``(i, j, shift)`` in ``i``'s row and ``(j, i, -shift)`` in
  ``j``'s.  Its pair vectors are exact negatives of each other (``a - b == -(b - a)`` in floating point), so both
  slots hold the same ``s(r)`` bit for bit, normalised alike when ``davg``/``dstd`` are uniform over the section
  (as DeePMD-kit's statistics are);
* every empty slot of a column holds ``-davg/dstd`` of the centre type: the descriptor evaluates the net once per
  column from the parameters.

On a water frame the net runs on 64% of the used slots (12,404 of 19,264).  For each block (centre type ``tc``)
and neighbour section ``tn`` the host gives (NumPy, per frame, so frames can be sharded; ``S = nb * width``
slots, ``U`` inputs):

* ``share_src_{tc}_{tn}`` (nf, U) int64: the first slot of each distinct input (padding inputs: slot 0);
* ``share_dst_{tc}_{tn}`` (nf, S) int64: the input of every slot, -1 for an empty slot;
* ``share_slots_{tc}_{tn}`` (nf, U, K) int64: the slots of each input, padded with ``S`` (K = 2 for a
  same-type block, else 1);
* ``share_reader_{tc}_{tn}`` (nf, S, 1) int64: the input that reads each slot, or ``U``.

The last two are the inverses of the two gathers, so that backends whose transpose of a gather is a slow
scatter differentiate them by gathers (``gather_rows`` of :mod:`dpcore.xp`).  The descriptor gathers the inputs at
``src``, runs the net with its slope (:func:`dpcore.network.embedding_with_slope`) and gathers ``G`` and
``dG/ds`` back to the slots at ``dst``: each slot keeps its own gradient, so forces, virial and per-atom virial
are those of the slot-by-slot computation.  Under a compiled backend ``U`` is rounded up with :data:`HEADROOM`
and only grows per (block, section, shape), so a compiled forward or step is reused.
"""

from __future__ import annotations

import numpy as np

HEADROOM = 1.08  # a compiled U is 8% above the count that set it: frame-to-frame changes rarely recompile
QUANTUM = 32


PARTS = ("src", "dst", "slots", "reader")


def key(part: str, tc: int, tn: int) -> str:
    """Input name of the ``part`` (one of :data:`PARTS`) indices of centre type ``tc``, neighbour section ``tn``."""
    return f"share_{part}_{tc}_{tn}"


def drop(inputs: dict) -> dict:
    """``inputs`` without the sharing indices (the autodiff force path differentiates slot by slot)."""
    return {k: v for k, v in inputs.items() if not k.startswith("share_")}


def symmetric_sections(davg, dstd, sec) -> bool:
    """True when the embedding input's normalisation (component 0 of ``davg``/``dstd`` (ntypes, nnei, 4)) is the
    same in every slot of each section for every centre type: then both slots of a same-type pair feed the net
    the same number."""
    davg, dstd = np.asarray(davg)[..., 0], np.asarray(dstd)[..., 0]
    return all(np.all(a[:, lo:hi] == a[:, lo:lo + 1]) for a in (davg, dstd) for lo, hi in zip(sec[:-1], sec[1:])
               if hi > lo)


def _group(keys: np.ndarray):
    """Rows of ``keys`` (n, k) int64 -> (first row of each distinct key (m,), group of every row (n,), the rows
    sorted by group (n,), stable)."""
    low = keys.min(axis=0, initial=0)
    span = keys.max(axis=0, initial=0) - low + 1
    new = np.ones(len(keys), dtype=bool)
    if float(np.prod(span.astype(np.float64))) < 2.0**62:  # one mixed-radix code per row: one sort
        code = np.zeros(len(keys), dtype=np.int64)
        for column, base in zip((keys - low).T, span):
            code = code * base + column
        order = np.argsort(code, kind="stable")
        ordered = code[order]
        new[1:] = ordered[1:] != ordered[:-1]
    else:
        order = np.lexsort(keys.T[::-1])
        ordered = keys[order]
        new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return order[new], group, order


def _positive(shift):
    """Rows of integer shifts (n, 3) that are lexicographically positive."""
    sx, sy, sz = shift[:, 0], shift[:, 1], shift[:, 2]
    return (sx > 0) | ((sx == 0) & ((sy > 0) | ((sy == 0) & (sz > 0))))


def pair_keys(owner, shift, centre) -> np.ndarray:
    """Key rows (n, 5) of the real slots of one frame's same-type block: equal keys mean equal embedding inputs.

    owner (n,) local index of each slot's neighbour, shift (n, 3) integer lattice shifts of the pairs, centre
    (n,) local index of each slot's centre.  The key is ``(i, j, shift)`` in canonical order, so the pair from
    either end gives one key.
    """
    i, j = np.asarray(centre, dtype=np.int64), np.asarray(owner, dtype=np.int64)
    s = np.rint(shift).astype(np.int64)
    canon = (i < j) | ((i == j) & _positive(s))
    keys = np.empty((len(i), 5), dtype=np.int64)
    keys[:, 0] = np.where(canon, i, j)
    keys[:, 1] = np.where(canon, j, i)
    keys[:, 2:] = np.where(canon[:, None], s, -s)
    return keys


def block_share(mask, owner, shift, centre, same_type: bool):
    """One frame's block (nb, w): ``(src (u,), dst (nb*w,), slots (u, K))`` -- the first slot of each distinct
    input, the input of every slot (-1: empty), the slots of each input (padded with ``nb*w``; K = 2 when
    same-type pairs share, else 1)."""
    nb, w = mask.shape
    real = np.flatnonzero(mask)
    dst = np.full(nb * w, -1, dtype=np.int64)
    if not same_type:  # every real slot is an input of its own: no keys, no sort
        dst[real] = np.arange(len(real))
        return real, dst, real[:, None]
    centre = np.asarray(centre, dtype=np.int64)
    keys = pair_keys(np.reshape(owner, -1)[real], np.reshape(shift, (-1, 3))[real], np.repeat(centre, w)[real])
    repeated = np.ones(nb, dtype=bool)  # a centre listed again (the padding rows of a chunk of centres)
    repeated[np.unique(centre, return_index=True)[1]] = False
    again = np.repeat(repeated, w)[real]
    if np.any(again):  # its slots keep inputs of their own: at most two slots per input
        keys[again] = 0
        keys[again, 0] = -1 - real[again]
    first, group, order = _group(keys)
    dst[real] = group
    counts = np.bincount(group, minlength=len(first))
    if counts.max(initial=0) > 2:
        raise AssertionError(f"pair sharing: an input shared by {counts.max()} slots (at most 2 expected)")
    rank = np.arange(len(order)) - (np.cumsum(counts) - counts)[group[order]]
    slots = np.full((len(first), 2), nb * w, dtype=np.int64)
    slots[group[order], rank] = real[order]
    return real[first], dst, slots


class PairShare:
    """``share(inputs, blocks, dparams) -> inputs`` with the indices of every block carrying used widths (module
    docstring).  ``compiled``: ``U`` rounded up with :data:`HEADROOM` to a multiple of :data:`QUANTUM` and only
    grown, per (centre type, section, block rows, width)."""

    def __init__(self, sec, compiled: bool):
        self.sec = sec  # None: nothing shared (no sections, or tables outside a fused forward: see SlotTrim)
        self.grown: dict | None = {} if compiled else None

    def _size(self, tag, need: int, slots: int) -> int:
        if self.grown is None:
            return max(need, 1)
        have = self.grown.get(tag, 0)
        if need > have:
            have = max(1, min(slots, -(-int(np.ceil(need * HEADROOM)) // QUANTUM) * QUANTUM))
            self.grown[tag] = have
        return have

    def __call__(self, inputs: dict, blocks, dparams: dict) -> dict:
        """``dparams``: the descriptor's parameters (NumPy ``davg``/``dstd`` decide whether same-type pairs share,
        :func:`symmetric_sections`)."""
        if self.sec is None or not blocks or any(len(b) < 4 for b in blocks):
            return inputs
        symmetric = symmetric_sections(dparams["davg"], dparams["dstd"], self.sec)
        if len({b[0] for b in blocks}) != len(blocks):  # indices are named by centre type: one block per type
            return inputs
        mask = np.asarray(inputs["nlist_mask"])
        owner, shift = np.asarray(inputs["nei_owner"]), np.asarray(inputs["pair_shift"])
        nf, nloc = mask.shape[:2]
        centre = inputs.get("centre_index")
        centre = np.broadcast_to(np.arange(nloc), (nf, nloc)) if centre is None else np.asarray(centre)
        out = dict(inputs)
        for tc, start, stop, widths in blocks:
            for tn, w in enumerate(widths):
                if w == 0:
                    continue
                lo = self.sec[tn]
                rows, cols = slice(start, stop), slice(lo, lo + w)
                parts = [block_share(mask[f, rows, cols], owner[f, rows, cols], shift[f, rows, cols],
                                     centre[f, rows], symmetric and tc == tn) for f in range(nf)]
                n = (stop - start) * w
                size = self._size((tc, tn, stop - start, w), max(len(p[0]) for p in parts), n)
                k = parts[0][2].shape[1]
                src = np.zeros((nf, size), dtype=np.int64)  # padding inputs read slot 0; no slot reads them
                slots = np.full((nf, size, k), n, dtype=np.int64)
                reader = np.full((nf, n, 1), size, dtype=np.int64)
                for f, (first, _, sl) in enumerate(parts):
                    src[f, : len(first)] = first
                    slots[f, : len(first)] = sl
                    reader[f, first, 0] = np.arange(len(first))
                out[key("src", tc, tn)] = src
                out[key("dst", tc, tn)] = np.stack([p[1] for p in parts])
                out[key("slots", tc, tn)] = slots
                out[key("reader", tc, tn)] = reader
        return out
