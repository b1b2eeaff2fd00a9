"""Drawing batches from several systems (SPEC 10.2-10.5).

Each step draws one system with probability ``probs`` and hands out the next
``batch_size`` frames of that system's shuffled frame order (reshuffled when
it is exhausted; the last batch of a pass can be smaller, as PyTorch's
``DataLoader(drop_last=False)``).  Everything is driven by NumPy generators
spawned from one ``seed``: the same seed gives the same batches, and the
state can be saved and restored (:meth:`BatchSampler.get_state`).

Data-parallel training (docs/distributed.md) draws the same global batch on every worker (the sampler
is built with ``batch_scale`` = number of workers, so its batches are those of one process with that many
times the frames) and each worker loads only its contiguous slice (:meth:`BatchSampler.next_shard`,
:func:`~dpcore.data.sampling.shard_bounds`); the state is that of the global batches, whatever the number
of workers.

A batch is a plain dict of NumPy arrays (``nf`` frames, ``nloc`` atoms)::

    coord (nf, nloc, 3) Å   atype (nf, nloc) int64   box (nf, 9) Å or None
    natoms (nf, 2 + ntypes) int64 = [nloc, nloc, count of type 0, ...]
    labels/inputs of dpcore.data.labels (energy (nf, 1), force (nf, nloc, 3), ...)
    find_<name> float (1.0 label present, 0.0 filled with its default)
    nlist (nf, nloc, nnei), mapping (nf, nall), shift (nf, nall, 3)   [with a nlist cache]
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .labels import LabelSpec
from .nlist_cache import NeighborListCache
from .sampling import parse_batch_size, shard_bounds, system_probabilities
from .store import find_systems
from .system import DeepmdSystem

__all__ = ["BatchSampler", "load_systems", "samplers_from_config"]


def load_systems(
    systems: str | Sequence[str],
    type_map: Sequence[str] | None = None,
    labels: Sequence[LabelSpec] | None = None,
    rglob_patterns: Sequence[str] | None = None,
) -> list[DeepmdSystem]:
    """Find (recursively) and load every system of ``training_data.systems``."""
    stores = find_systems(systems, list(rglob_patterns) if rglob_patterns else None)
    return [DeepmdSystem(st, type_map=type_map, labels=labels) for st in stores]


class BatchSampler:
    """Weighted random batches over systems.

    Parameters
    ----------
    systems : list of DeepmdSystem
    batch_size : int, list, ``"auto[:N]"``, ``"max:N"``, ``"filter:N"`` (SPEC 10.2)
    auto_prob : ``"prob_sys_size"`` (default), ``"prob_uniform"`` or
        ``"prob_sys_size;a:b:w;..."``
    sys_probs : explicit per-system probabilities (negative entries share the rest)
    seed : int or None (None: fresh entropy, not reproducible)
    nlist : a :class:`NeighborListCache` or a callable ``make_nlist(coord, atype, box)``;
        when given, batches carry ``nlist``/``mapping``/``shift``.
    batch_scale : every batch size (after ``batch_size``'s rule) times this (data-parallel workers).
    """

    def __init__(
        self,
        systems: Sequence[DeepmdSystem],
        batch_size: int | Sequence[int] | str = "auto",
        auto_prob: str = "prob_sys_size",
        sys_probs: Sequence[float] | None = None,
        seed: int | None = None,
        nlist: NeighborListCache | Callable | None = None,
        batch_scale: int = 1,
    ):
        systems = list(systems)
        if not systems:
            raise ValueError("BatchSampler: no systems given")
        sizes, kept = parse_batch_size(batch_size, [s.natoms for s in systems])
        sizes = [s * int(batch_scale) for s in sizes]
        self.systems = [systems[i] for i in kept]
        self.dropped = [systems[i].path for i in range(len(systems)) if i not in kept]
        self.batch_sizes = sizes
        self.nbatches = [math.ceil(s.nframes / b) for s, b in zip(self.systems, sizes)]
        if sys_probs is not None and len(sys_probs) == len(systems) and len(kept) < len(systems):
            sys_probs = [sys_probs[i] for i in kept]
        self.probs = system_probabilities(self.nbatches, auto_prob, sys_probs)
        if nlist is not None and not isinstance(nlist, NeighborListCache):
            nlist = NeighborListCache(nlist)
        self.nlist_cache = nlist
        self.seed = seed
        seq = np.random.SeedSequence(seed)
        kids = seq.spawn(len(self.systems) + 2)
        self._rng = np.random.default_rng(kids[0])
        self._stat_seed = kids[1]
        self._sys_rng = [np.random.default_rng(k) for k in kids[2:]]
        self._order: list[np.ndarray | None] = [None] * len(self.systems)
        self._pos = [0] * len(self.systems)
        self.last_system: int | None = None
        self.last_frames: np.ndarray | None = None

    def __len__(self) -> int:
        """Batches in one pass over all systems (``sum(nbatches)``)."""
        return int(sum(self.nbatches))

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self.next_batch()

    def _next_frames(self, isys: int) -> np.ndarray:
        n, bs = self.systems[isys].nframes, self.batch_sizes[isys]
        if self._order[isys] is None or self._pos[isys] >= n:
            self._order[isys] = self._sys_rng[isys].permutation(n)
            self._pos[isys] = 0
        p = self._pos[isys]
        self._pos[isys] = p + bs
        return self._order[isys][p : p + bs]

    def make_batch(self, isys: int, frames: Sequence[int]) -> dict:
        """Batch of the given frames of system ``isys`` (with nlist if a cache is attached)."""
        system = self.systems[isys]
        batch = system.get_batch(frames)
        if self.nlist_cache is not None:
            batch.update(self.nlist_cache.batch(system, frames))
        return batch

    def next_frames(self) -> tuple[int, np.ndarray]:
        """Draw a system and its next batch of frames: ``(system index, frame indices)``."""
        isys = int(self._rng.choice(len(self.systems), p=self.probs))
        frames = self._next_frames(isys)
        self.last_system, self.last_frames = isys, frames
        return isys, frames

    def next_batch(self) -> dict:
        """Draw a system, then return its next batch."""
        return self.make_batch(*self.next_frames())

    def next_shard(self, rank: int, size: int) -> tuple[dict | None, int]:
        """Worker ``rank`` of ``size``'s share of the next batch: ``(batch, nf)``, the batch of its contiguous
        slice of the frames (None when the slice is empty: a short last batch of a pass) and ``nf`` the
        frames of the whole batch.  ``find_*`` flags are the whole batch's (those of its first frame)."""
        isys, frames = self.next_frames()
        lo, hi = shard_bounds(len(frames), rank, size)
        if lo == hi:
            return None, len(frames)
        batch = self.make_batch(isys, frames[lo:hi])
        for name, found in self.systems[isys].find.items():
            if f"find_{name}" in batch:
                batch[f"find_{name}"] = float(found[frames[0]])
        return batch, len(frames)

    def take(self, n: int) -> list[dict]:
        """The next ``n`` batches (validation uses ``numb_btch``)."""
        return [self.next_batch() for _ in range(int(n))]

    def stat_batches(self, data_stat_nbatch: int = 10) -> list[dict]:
        """One batch per system holding its statistics frames (SPEC 10.5).

        The frames are the first ``min(data_stat_nbatch, nbatches)`` batches of a fresh
        shuffle of each system, drawn from a generator fixed by ``seed`` and
        independent of how many training batches were drawn.
        """
        from ..stat.labels import sample_stat_frames

        frames = sample_stat_frames(
            [s.nframes for s in self.systems], self.batch_sizes, data_stat_nbatch,
            np.random.default_rng(self._stat_seed),
        )
        return [self.make_batch(i, f) for i, f in enumerate(frames)]

    def get_state(self) -> dict:
        """JSON-serialisable sampler state (generators, shuffles, positions)."""
        return {
            "rng": self._rng.bit_generator.state,
            "sys_rng": [g.bit_generator.state for g in self._sys_rng],
            "order": [None if o is None else o.tolist() for o in self._order],
            "pos": list(self._pos),
        }

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state` (same systems and batch sizes)."""
        if len(state["pos"]) != len(self.systems):
            raise ValueError(
                f"sampler state has {len(state['pos'])} systems; this sampler has "
                f"{len(self.systems)}"
            )
        self._rng.bit_generator.state = state["rng"]
        for g, s in zip(self._sys_rng, state["sys_rng"]):
            g.bit_generator.state = s
        self._order = [None if o is None else np.asarray(o, dtype=np.int64) for o in state["order"]]
        self._pos = list(state["pos"])


def drop_close_pairs(systems, min_pair_dist: float) -> int:
    """``training_data.min_pair_dist``: drop frames with two atoms closer than ``min_pair_dist`` Å.

    Logs one line per system that loses frames; returns the total number dropped.
    """
    import logging

    from ..nlist import neighbor_stat

    total = 0
    for s in systems:
        keep = [f for f in range(s.nframes)
                if neighbor_stat(s.coord[f:f + 1], s.atype, None if s.box is None else s.box[f:f + 1],
                                 min_pair_dist, s.ntypes)[0] >= min_pair_dist]
        dropped = s.keep_frames(keep)
        if dropped:
            logging.getLogger("dpcore").warning("%s: dropped %d of %d frames with a pair closer than "
                                                "min_pair_dist = %g Å", s.path, dropped, dropped + len(keep), min_pair_dist)
        total += dropped
    return total


def samplers_from_config(
    config: dict,
    nlist: NeighborListCache | Callable | None = None,
    root: str | None = None,
    batch_scale: int = 1,
) -> tuple[BatchSampler, BatchSampler | None]:
    """Training and validation samplers of a normalised input (:func:`dpcore.config.normalize_config`).

    Systems are loaded with the model ``type_map`` and the labels the model/loss needs
    (:func:`~dpcore.data.labels.label_specs_from_config`); relative system paths are taken
    from ``root`` when given.  The validation sampler (or None) carries ``numb_btch``;
    both share one neighbour-list cache.  Seeds: ``training.seed`` and ``seed + 1``.  ``batch_scale``: the
    number of data-parallel workers (both samplers draw global batches of that many times the frames).
    """
    import os

    from .labels import label_specs_from_config

    type_map = config["model"]["type_map"]
    labels = label_specs_from_config(config)
    tr = config["training"]
    seed = tr.get("seed")
    if nlist is not None and not isinstance(nlist, NeighborListCache):
        nlist = NeighborListCache(nlist)

    def build(sec: dict, sseed):
        paths = sec["systems"]
        if root is not None:
            paths = [paths] if isinstance(paths, str) else paths
            paths = [os.path.normpath(os.path.join(root, p)) for p in paths]
        systems = load_systems(paths, type_map, labels, sec.get("rglob_patterns"))
        if sec.get("min_pair_dist", 0.0) > 0:
            drop_close_pairs(systems, sec["min_pair_dist"])
        return BatchSampler(systems, sec["batch_size"], sec["auto_prob"], sec["sys_probs"],
                            seed=sseed, nlist=nlist, batch_scale=batch_scale)

    train = build(tr["training_data"], seed)
    valid = None
    if tr.get("validation_data") is not None:
        valid = build(tr["validation_data"], None if seed is None else seed + 1)
        valid.numb_btch = tr["validation_data"]["numb_btch"]
    return train, valid
