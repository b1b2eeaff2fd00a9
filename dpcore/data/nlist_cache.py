"""Per-frame neighbour-list cache.

A neighbour list depends only on a frame's coordinates, types and cell and on
the model's ``rcut``/``sel``/``pair_exclude_types``, never on trainable
parameters, so it is built once per (system, frame) and reused in every
epoch.  The cache holds a user callable ``make_nlist(coord, atype, box)``
(e.g. ``functools.partial(dpcore.nlist.build_neighbor_list, rcut=..., sel=...)``)
returning an object with ``nlist (1, nloc, nnei)`` int64, ``mapping (1, nall)``
int64 and ``shift (1, nall, 3)`` float64 for one frame; it does not know the
hyper-parameters itself.

A batch of frames of one system concatenates the cached per-frame lists.
Frames can have different ``nall`` (number of ghost atoms); shorter ones are
padded to the largest ``nall`` with ``mapping = 0`` and ``shift = 0``.  The
``nlist`` indices are unchanged (padded extended atoms are never referenced).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import numpy as np

__all__ = ["NeighborListCache"]


class NeighborListCache:
    """Cache ``make_nlist`` results per (system key, frame index).

    Attributes ``hits`` and ``misses`` count look-ups (for tests and logs).
    """

    def __init__(self, make_nlist: Callable[[np.ndarray, np.ndarray, np.ndarray | None], Any]):
        self.make_nlist = make_nlist
        self._store: dict[tuple[Hashable, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()

    def frame(self, key: Hashable, iframe: int, coord, atype, box):
        """Cached ``(nlist (nloc, nnei), mapping (nall,), shift (nall, 3))`` of one frame.

        coord (nloc, 3), atype (nloc,), box (9,) or None are only used on a miss.
        """
        k = (key, int(iframe))
        got = self._store.get(k)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        nl = self.make_nlist(
            coord[None], atype[None], None if box is None else np.asarray(box)[None]
        )
        got = (
            np.asarray(nl.nlist, dtype=np.int64)[0],
            np.asarray(nl.mapping, dtype=np.int64)[0],
            np.asarray(nl.shift)[0],
        )
        self._store[k] = got
        return got

    def batch(self, system, frames) -> dict[str, np.ndarray]:
        """``nlist (nf, nloc, nnei)``, ``mapping (nf, nall)``, ``shift (nf, nall, 3)`` for
        ``frames`` of ``system`` (a :class:`~dpcore.data.system.DeepmdSystem`)."""
        per = [
            self.frame(
                system.cache_key, i, system.coord[i], system.atype,
                None if system.box is None else system.box[i],
            )
            for i in np.asarray(frames, dtype=np.int64)
        ]
        nall = max(m.shape[0] for _, m, _ in per)
        nf = len(per)
        mapping = np.zeros((nf, nall), dtype=np.int64)
        shift = np.zeros((nf, nall, 3), dtype=per[0][2].dtype)
        for f, (_, m, s) in enumerate(per):
            mapping[f, : m.shape[0]] = m
            shift[f, : s.shape[0]] = s
        return {"nlist": np.stack([n for n, _, _ in per]), "mapping": mapping, "shift": shift}
