"""Trimmed neighbour sections: the embedding net skips the empty tail of each neighbour-type section.

An se_e2_a neighbour list has ``sel[t]`` slots for neighbour type ``t``, filled nearest first, so past the
last real neighbour of any atom of a type block every slot of the section is empty.  ``sel`` is a capacity
(DeePMD-kit's own choice is ~1.2x the densest environment): on the water data 64% of the slots are used, and
no frame uses more than 37 of 46 O and 68 of 92 H slots.  An empty slot still counts in the descriptor (its
normalised row is ``-davg/dstd``, as in DeePMD-kit), but that contribution depends on the parameters only, so
the descriptor adds it once per block (:func:`dpcore.descriptor.se_e2_a.forward`) and runs the embedding net
on the used slots only: the same numbers, up to the order of the sums.

The used widths travel with the type blocks as a fourth entry, ``(t, start, stop, widths)`` with one width per
neighbour section (static data, like the blocks: part of the key of every compiled forward and step).  Where
the backend compiles those, a new width means a new compilation, so widths are rounded up to
:data:`COMPILED_QUANTUM` slots and only grow for a given centre type; elsewhere they are exact.
"""

from __future__ import annotations

import numpy as np

COMPILED_QUANTUM = 8  # slots: a compiled backend's widths are multiples of this (or the full section)


def trimmable_sections(dcfg: dict) -> list[int] | None:
    """Section boundaries ``[0, sel0, sel0 + sel1, ...]`` of a descriptor whose empty slots can be trimmed, or
    None (mixed-type descriptors)."""
    from .descriptor import get_descriptor

    mod = get_descriptor(dcfg["type"])
    if not getattr(mod, "TRIMS_EMPTY_SLOTS", False):
        return None
    return mod.sections(dcfg)


def used_widths(nlist_mask, start: int, stop: int, sec) -> list[int]:
    """Per neighbour section: 1 + the last slot holding a neighbour of any frame's atoms ``start:stop``
    (0 if none), from ``nlist_mask`` (nf, nloc, nnei) bool."""
    used = np.any(np.asarray(nlist_mask)[:, start:stop], axis=(0, 1))
    widths = []
    for lo, hi in zip(sec[:-1], sec[1:]):
        hits = np.flatnonzero(used[lo:hi])
        widths.append(int(hits[-1]) + 1 if hits.size else 0)
    return widths


class SlotTrim:
    """``trim(blocks, nlist_mask)``: the type blocks with the used width of each neighbour section;
    ``trim.share(inputs, blocks, descriptor params)`` then adds the shared-input indices of :mod:`dpcore.pair_share`
    (for a compressed model's tables only with ``share_tables``, by default ``compiled``).

    ``compiled``: widths are multiples of :data:`COMPILED_QUANTUM` and never shrink for a centre type (a
    compiled forward is then reused frame after frame, and shape buckets share the widths).  Blocks of ``None``
    (atoms not type-sorted) and descriptors without sections are returned unchanged.
    """

    def __init__(self, dcfg: dict, compiled: bool, share_tables: bool | None = None):
        from .pair_share import PairShare

        self.sec = trimmable_sections(dcfg)
        self.quantum = COMPILED_QUANTUM if compiled else 1
        self.grown: dict | None = {} if compiled else None
        # shared embedding inputs; a compressed model's tables share where the forward is fused (default: compiled)
        shares = not dcfg.get("compress") or (compiled if share_tables is None else share_tables)
        self.share = PairShare(self.sec if shares else None, compiled)

    def __call__(self, blocks, nlist_mask):
        if self.sec is None or blocks is None:
            return blocks
        sec, q = self.sec, self.quantum
        out = []
        for t, start, stop, *_ in blocks:
            need = used_widths(nlist_mask, start, stop, sec)
            widths = [min(hi - lo, -(-n // q) * q) for n, lo, hi in zip(need, sec[:-1], sec[1:])]
            if self.grown is not None:  # per centre type, whatever the block layout (shape buckets share them)
                widths = [max(a, b) for a, b in zip(widths, self.grown.get(t, widths))]
                self.grown[t] = widths
            out.append((t, start, stop, tuple(widths)))
        return tuple(out)
