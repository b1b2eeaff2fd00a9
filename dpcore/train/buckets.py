"""Shape buckets: a few padded batch shapes for every system composition, so compiled steps stay few.

A compiled training step (``jax.jit``, ``tf.function``) is specialised to its input shapes and type blocks:
one per ``(frames, atoms of each type)`` of the data, 10-20 s of compilation each on the water example.
Here the batch shapes the samplers can produce (every system's composition with its batch size, and the
shorter last batch of a pass) are grouped at set-up into at most ``N`` buckets; a batch is padded up to its
bucket (:mod:`dpcore.train.padding`): padding atoms (``atom_mask`` 0, no neighbours, in the bucket's type
block) and padding frames (all atoms padding, ``frame_mask`` 0).  Every loss and metric counts real atoms
and frames only, so padding changes results by round-off only (sums over more, zero, terms).

``training.shape_buckets``:

* ``"auto"`` (default): at most 4 buckets when the step is compiled (backends with a compiler behind
  ``backend.jit``, or torch with ``compile``); no padding on eager backends, where it would only add work;
* ``N >= 1``: at most ``N`` buckets on every backend;
* ``"off"``: no padding (one compiled step per composition and batch size).

Choice: start with one bucket per distinct shape and merge, while more than ``N`` remain, the two buckets
whose merge (element-wise maximum of frames and per-type counts) adds the least padded work, the work of
a bucket being ``weight x frames x atoms`` (weight: expected batches of that bucket per step).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("dpcore.train")

DEFAULT_MAX_BUCKETS = 4
_MAX_DISTINCT = 256  # shapes merged exactly; beyond, counts are first rounded up (coarser grid) to this many


def parse_setting(value, compiled: bool) -> int | None:
    """``training.shape_buckets`` -> the maximum number of buckets, or None (no padding).

    ``compiled``: the training step is compiled (``"auto"`` buckets only then)."""
    if value is None or value == "auto":
        return DEFAULT_MAX_BUCKETS if compiled else None
    if value == "off":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"training/shape_buckets: expected 'auto', 'off' or an integer >= 1 (the most padded "
                         f"batch shapes, hence compiled steps), got {value!r}")
    return int(value)


def sampler_shapes(sampler, ntypes: int, weight: float = 1.0, shard: tuple[int, int] | None = None) -> dict:
    """``{(nf, count of type 0, ...): expected batches per draw x weight}`` of the batches ``sampler`` draws.

    ``shard``: ``(rank, size)``, the shapes of one data-parallel worker's slices (:meth:`BatchSampler.next_shard`).
    """
    from ..data.sampling import shard_bounds

    shapes: dict = {}
    for isys, system in enumerate(sampler.systems):
        counts = tuple(int(c) for c in np.bincount(system.atype, minlength=ntypes)[:ntypes])
        bs, n = int(sampler.batch_sizes[isys]), int(system.nframes)
        nbatch = {bs: n // bs} if n >= bs else {}
        if n % bs:
            nbatch[n % bs] = 1
        total = sum(nbatch.values())
        for nf, k in nbatch.items():
            if shard is not None:
                lo, hi = shard_bounds(nf, *shard)
                nf = hi - lo
                if nf == 0:
                    continue
            key = (nf,) + counts
            shapes[key] = shapes.get(key, 0.0) + weight * float(sampler.probs[isys]) * k / total
    return shapes


def _work(shape) -> float:
    return float(shape[0]) * float(sum(shape[1:]))


def _coarsen(shapes: dict) -> dict:
    """Counts rounded up to multiples of 2, 4, ... until at most ``_MAX_DISTINCT`` distinct shapes remain."""
    q = 1
    while len(shapes) > _MAX_DISTINCT:
        q *= 2
        out: dict = {}
        for s, w in shapes.items():
            key = tuple(-(-int(c) // q) * q for c in s)
            out[key] = out.get(key, 0.0) + w
        shapes = out
    return shapes


def choose_buckets(shapes: dict, max_buckets: int) -> list[tuple]:
    """At most ``max_buckets`` bucket shapes covering every key of ``shapes`` (``{shape: weight}``, shape =
    ``(nf, count of type 0, ...)``), by greedy merging of the pair that adds the least weighted padded work.
    Deterministic; sorted by work."""
    if not shapes:
        return []
    groups = _coarsen(dict(shapes))
    keys = sorted(groups)
    S = np.array(keys, dtype=np.int64)  # (g, 1 + ntypes)
    W = np.array([groups[k] for k in keys], dtype=np.float64)
    alive = np.ones(len(keys), dtype=bool)

    def cost(s, w):
        return w * s[..., 0] * s[..., 1:].sum(axis=-1)

    while alive.sum() > max_buckets:
        idx = np.flatnonzero(alive)
        s, w = S[idx], W[idx]
        merged = np.maximum(s[:, None, :], s[None, :, :])
        delta = cost(merged, w[:, None] + w[None, :]) - cost(s, w)[:, None] - cost(s, w)[None, :]
        delta[np.tril_indices(len(idx))] = np.inf
        i, j = np.unravel_index(int(np.argmin(delta)), delta.shape)
        a, b = idx[i], idx[j]
        S[a], W[a] = merged[i, j], W[a] + W[b]
        alive[b] = False
    return sorted((tuple(int(v) for v in S[k]) for k in np.flatnonzero(alive)), key=lambda s: (_work(s), s))


class Buckets:
    """The bucket shapes of a run and the bucket of each batch shape (the smallest that holds it)."""

    def __init__(self, shapes: list[tuple]):
        self.shapes = [tuple(s) for s in shapes]
        self._of: dict = {}
        self._unfit: set = set()

    def __len__(self) -> int:
        return len(self.shapes)

    def bucket(self, shape: tuple) -> tuple | None:
        """The smallest bucket with at least ``shape``'s frames and atoms of each type (None: none does)."""
        shape = tuple(int(v) for v in shape)
        if shape not in self._of:
            fits = [b for b in self.shapes if len(b) == len(shape) and all(x <= y for x, y in zip(shape, b))]
            self._of[shape] = min(fits, key=lambda b: (_work(b), b)) if fits else None
            if not fits and shape not in self._unfit:
                self._unfit.add(shape)
                log.warning("shape buckets: a batch of %d frames with type counts %s fits no bucket %s; it is not "
                            "padded (one more compiled step)", shape[0], list(shape[1:]), self.shapes)
        return self._of[shape]


def buckets_for_run(setting, compiled: bool, ntypes: int, train_sampler, valid_sampler=None, disp_freq: int = 1,
                    shard: tuple[int, int] | None = None, frame_multiple: int = 1) -> Buckets | None:
    """The :class:`Buckets` of a training run (None: no padding), from ``training.shape_buckets`` and the shapes
    of the training batches (weight: probability per step) and validation batches (``numb_btch`` per
    ``disp_freq`` steps).  ``shard``: see :func:`sampler_shapes`; ``frame_multiple``: bucket frames are
    multiples of it (batches split over that many devices)."""
    max_buckets = parse_setting(setting, compiled)
    if max_buckets is None:
        return None
    shapes = sampler_shapes(train_sampler, ntypes, 1.0, shard)
    if valid_sampler is not None:
        extra = sampler_shapes(valid_sampler, ntypes, getattr(valid_sampler, "numb_btch", 1) / max(disp_freq, 1), shard)
        for k, w in extra.items():
            shapes[k] = shapes.get(k, 0.0) + w
    m, rounded = max(int(frame_multiple), 1), {}
    for s, w in shapes.items():
        key = (-(-s[0] // m) * m,) + s[1:]
        rounded[key] = rounded.get(key, 0.0) + w
    chosen = choose_buckets(rounded, max_buckets)
    real = sum(w * _work(s) for s, w in shapes.items())
    padded = sum(w * _work(Buckets(chosen).bucket(s)) for s, w in shapes.items())
    log.info("shape buckets: %d batch shapes (frames, atoms per type) -> %d bucket(s) %s; padded work %.1f%% "
             "more than unpadded", len(shapes), len(chosen), [list(b) for b in chosen],
             100.0 * (padded / real - 1.0) if real else 0.0)
    return Buckets(chosen)
