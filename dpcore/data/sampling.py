"""Batch sizes and system probabilities (SPEC 10.2-10.3).

Pure functions of the system sizes; :mod:`dpcore.data.batch` uses them to draw batches.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from .store import DataError

_BS_RE = re.compile(r"^(auto|max|filter)(?::(\d+))?$")


def parse_batch_size(
    batch_size: int | Sequence[int] | str, natoms: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Batch size of every system, and the indices of the systems kept.

    batch_size : int (all systems), list (one per system), ``"auto"`` (= ``"auto:32"``),
        ``"auto:N"`` (``ceil(N / natoms)``), ``"max:N"`` (``max(1, N // natoms)``) or
        ``"filter:N"`` (drop systems with ``natoms > N``, then ``max:N``).
    natoms : atoms per frame of every system.

    Returns ``(sizes, kept)``: ``sizes[k]`` is the batch size of system ``kept[k]``.
    """
    nsys = len(natoms)
    kept = list(range(nsys))
    if isinstance(batch_size, bool):
        raise DataError(f"batch_size: got {batch_size!r}; expected an int, a list or 'auto[:N]'")
    if isinstance(batch_size, (int, np.integer)):
        sizes = [int(batch_size)] * nsys
    elif isinstance(batch_size, (list, tuple)):
        if len(batch_size) != nsys:
            raise DataError(
                f"batch_size: the list has {len(batch_size)} entries; expected one per "
                f"system ({nsys} systems)"
            )
        sizes = [int(b) for b in batch_size]
    elif isinstance(batch_size, str):
        m = _BS_RE.match(batch_size)
        if m is None:
            raise DataError(
                f"batch_size: unknown rule {batch_size!r}; expected an int, a list, "
                "'auto', 'auto:N', 'max:N' or 'filter:N'"
            )
        rule, num = m.group(1), m.group(2)
        if num is None and rule != "auto":
            raise DataError(f"batch_size: {batch_size!r} needs a number, e.g. '{rule}:256'")
        n = int(num) if num is not None else 32
        if rule == "filter":
            kept = [i for i in range(nsys) if natoms[i] <= n]
            if not kept:
                raise DataError(
                    f"batch_size: {batch_size!r} removes every system (the smallest has "
                    f"{min(natoms)} atoms)"
                )
        if rule == "auto":
            sizes = [max(1, math.ceil(n / natoms[i])) for i in kept]
        else:
            sizes = [max(1, n // natoms[i]) for i in kept]
    else:
        raise DataError(
            f"batch_size: got {type(batch_size).__name__}; expected an int, a list or 'auto[:N]'"
        )
    bad = [s for s in sizes if s < 1]
    if bad:
        raise DataError(f"batch_size: {bad[0]} is not a positive number of frames")
    return sizes, kept


def shard_bounds(nframes: int, rank: int, size: int) -> tuple[int, int]:
    """``[lo, hi)`` of worker ``rank``'s contiguous slice when ``nframes`` frames are split over ``size``
    workers (``numpy.array_split``'s rule: the first ``nframes % size`` workers get one frame more)."""
    base, extra = divmod(int(nframes), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def process_sys_probs(sys_probs: Sequence[float], nbatches: Sequence[int]) -> np.ndarray:
    """Entries >= 0 are used as given; the rest of the unit mass goes to the entries < 0
    proportionally to their number of batches."""
    p = np.asarray(sys_probs, dtype=np.float64)
    nb = np.asarray(nbatches, dtype=np.float64)
    if p.shape != nb.shape:
        raise DataError(
            f"sys_probs: {p.size} entries; expected one per system ({nb.size} systems)"
        )
    assigned = p >= 0
    total = float(np.sum(p[assigned]))
    if total > 1.0 + 1e-8:
        raise DataError(f"sys_probs: the non-negative entries sum to {total:g}; must be <= 1")
    rest = 1.0 - total
    if np.isclose(rest, 0.0):
        return np.where(assigned, p, 0.0)
    if assigned.all():
        raise DataError(
            f"sys_probs: the entries sum to {total:g}, not 1, and no entry is negative "
            "(negative entries share the remainder)"
        )
    rest_nb = np.where(assigned, 0.0, nb)
    return np.where(assigned, p, rest * rest_nb / rest_nb.sum())


def prob_sys_size_ext(rule: str, nbatches: Sequence[int]) -> np.ndarray:
    """``"prob_sys_size;a:b:w;c:d:w2;..."``: block ``[a, b)`` gets ``w / sum(w)``, shared
    proportionally to the number of batches inside the block."""
    nb = np.asarray(nbatches, dtype=np.float64)
    nsys = nb.size
    blocks = []
    for part in rule.split(";")[1:]:
        fields = part.split(":")
        try:
            a, b, w = int(fields[0]), int(fields[1]), float(fields[2])
            if len(fields) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise DataError(
                f"auto_prob: block {part!r} of {rule!r} is not 'start:end:weight'"
            ) from None
        if w < 0 or not (0 <= a < b <= nsys):
            raise DataError(
                f"auto_prob: block {part!r} needs 0 <= start < end <= {nsys} systems and "
                "weight >= 0"
            )
        blocks.append((a, b, w))
    if not blocks:
        raise DataError(f"auto_prob: {rule!r} lists no block 'start:end:weight'")
    wsum = sum(w for *_, w in blocks)
    if wsum <= 0:
        raise DataError(f"auto_prob: the block weights of {rule!r} sum to 0")
    probs = np.zeros(nsys)
    for a, b, w in blocks:
        probs[a:b] = nb[a:b] / nb[a:b].sum() * (w / wsum)
    return probs


def system_probabilities(
    nbatches: Sequence[int],
    auto_prob: str = "prob_sys_size",
    sys_probs: Sequence[float] | None = None,
) -> np.ndarray:
    """Probability of drawing each system (SPEC 10.3); ``sys_probs`` wins over ``auto_prob``."""
    nb = np.asarray(nbatches, dtype=np.float64)
    if sys_probs is not None:
        p = process_sys_probs(sys_probs, nb)
    elif auto_prob == "prob_uniform":
        p = np.full(nb.size, 1.0 / nb.size)
    elif auto_prob == "prob_sys_size":
        p = nb / nb.sum()
    elif auto_prob.startswith("prob_sys_size;"):
        p = prob_sys_size_ext(auto_prob, nb)
    else:
        raise DataError(
            f"auto_prob: unknown style {auto_prob!r}; expected 'prob_uniform', "
            "'prob_sys_size' or 'prob_sys_size;start:end:weight;...'"
        )
    if not np.isclose(p.sum(), 1.0):
        raise DataError(f"system probabilities sum to {p.sum():g}, not 1")
    return p / p.sum()
