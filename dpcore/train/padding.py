"""A batch's model inputs and labels padded to a shape bucket (:mod:`dpcore.train.buckets`); NumPy, host side.

Layout: atoms stay sorted by type; type ``t``'s block grows from ``c_t`` atoms to the bucket's ``C_t``, the
padding atoms after the real ones (``new = S_t + k`` for the k-th real atom of type t, ``S_t = C_0 + ... +
C_{t-1}``), so the type blocks are the bucket's and do not depend on the composition.  A padding atom is an
isolated atom of its block's type: no neighbours (``nlist_mask`` 0), nobody's neighbour, ``atom_mask`` 0 (zero
energy, zero force, outside every loss), coordinates and labels 0.  Padding frames (after the real ones) hold
padding atoms only, the first frame's cell, ``fparam`` and ``first_type``, zero labels and ``frame_mask`` 0.
A spin model's 2·nloc-atom pair data (reals then virtual atoms, same order) pad both halves alike (virtual
type ``t + n``, ``virtual_scale`` 0).
"""

from __future__ import annotations

import numpy as np

from ..data.labels import STANDARD_LABELS

# model inputs: per backbone atom (axis 1) with the padding value; per frame (copied from frame 0)
_ATOM_INPUTS = {"nlist_mask": False, "nei_owner": 0, "pair_shift": 0.0, "nei_type": None, "centre_type": None,
                "atom_mask": False, "exclude_mask": 0.0, "aparam": 0.0}
_REAL_ATOM_INPUTS = {"coord": 0.0, "spin": 0.0, "virtual_scale": 0.0}
_FRAME_INPUTS = ("box", "fparam", "first_type")
_LABEL_LAYOUT = {spec.name: spec.layout for spec in STANDARD_LABELS}
_LABEL_LAYOUT["natoms"] = "frame"


def _block_starts(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _atoms(x: np.ndarray, index: np.ndarray, n_new: int, nf_new: int, fill) -> np.ndarray:
    """x (nf, n_old, ...) -> (nf_new, n_new, ...): row ``index[i]`` of each real frame holds x's atom i."""
    x = np.asarray(x)
    out = np.empty((nf_new, n_new) + x.shape[2:], dtype=x.dtype)
    out[...] = np.asarray(fill, dtype=x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2)) if np.ndim(fill) else fill
    out[: x.shape[0], index] = x
    return out


def _frames(x: np.ndarray, nf_new: int, fill=None) -> np.ndarray:
    """x (nf, ...) -> (nf_new, ...): padding frames are copies of frame 0 (``fill`` None) or ``fill``."""
    x = np.asarray(x)
    extra = nf_new - x.shape[0]
    if extra == 0:
        return x
    pad = np.repeat(x[:1], extra, axis=0) if fill is None else np.full((extra,) + x.shape[1:], fill, dtype=x.dtype)
    return np.concatenate([x, pad], axis=0)


def pad_batch(inputs: dict, labels: dict, counts, bucket: tuple, *, ntypes_backbone: int, spin: bool = False,
              mixed_types: bool = False):
    """``(inputs, labels, blocks)`` padded from per-type ``counts`` (real atoms of each type per frame, atoms
    sorted by type) to ``bucket = (frames, atoms of type 0, ...)``.

    inputs: the NumPy model inputs of :func:`dpcore.train.batch.batch_inputs` (or the spin form);
    labels: label arrays (``find_*`` flags excluded); ``ntypes_backbone``: the model's types (2n for spin,
    whose pair data cover 2·nloc atoms).  ``labels["frame_mask"]`` (nf_bucket,) float64 is added.
    ``blocks``: the bucket's type blocks of the (backbone) atoms.
    """
    counts = np.asarray(counts, dtype=np.int64)
    nf_new, target = int(bucket[0]), np.asarray(bucket[1:], dtype=np.int64)
    nf = int(np.shape(inputs["coord"])[0])
    if len(target) != len(counts) or np.any(target < counts) or nf_new < nf:
        raise ValueError(f"shape buckets: a batch of {nf} frames with type counts {counts.tolist()} does not fit "
                         f"bucket {list(bucket)}")
    nloc_new = int(target.sum())
    starts = _block_starts(target)
    index = np.concatenate([starts[t] + np.arange(c) for t, c in enumerate(counts)]).astype(np.int64)
    types = np.repeat(np.arange(len(target)), target)
    if spin:
        n = len(target)
        bb_index, bb_types = np.concatenate([index, nloc_new + index]), np.concatenate([types, types + n])
    else:
        bb_index, bb_types = index, types
    nbb = bb_types.size
    if mixed_types and "first_type" not in inputs:  # the descriptor's default, taken before padding moves atom 0
        inputs = {**inputs, "first_type": np.asarray(inputs["centre_type"])[:, 0]}

    out = {}
    for k, x in inputs.items():
        if x is None:
            out[k] = None
        elif k in _ATOM_INPUTS:
            fill = _ATOM_INPUTS[k]
            if k == "centre_type":
                fill = bb_types.reshape(1, -1)
            elif k == "nei_type":
                fill = ntypes_backbone
            if k == "nei_owner":  # local owner indices follow their atoms (empty slots keep 0)
                x = np.where(inputs["nlist_mask"], bb_index[np.asarray(x)], 0)
            out[k] = _atoms(x, bb_index, nbb, nf_new, fill)
        elif k in _REAL_ATOM_INPUTS:
            out[k] = _atoms(x, index, nloc_new, nf_new, _REAL_ATOM_INPUTS[k])
        elif k in _FRAME_INPUTS:
            out[k] = _frames(x, nf_new)
        else:
            raise ValueError(f"shape buckets: no padding rule for the model input {k!r} of shape {np.shape(x)}; "
                             "set training/shape_buckets to 'off'")
    new_labels = {}
    for k, x in labels.items():
        layout = _LABEL_LAYOUT.get(k)
        if layout is None:
            raise ValueError(f"shape buckets: no padding rule for the label {k!r} of shape {np.shape(x)}; set "
                             "training/shape_buckets to 'off'")
        x = np.asarray(x)
        if layout == "frame":
            new_labels[k] = _frames(x, nf_new, 0)
        elif layout == "flat":  # (nf, nloc * k): per atom k contiguous values
            per = x.reshape(nf, counts.sum(), -1)
            new_labels[k] = _atoms(per, index, nloc_new, nf_new, 0).reshape(nf_new, -1)
        else:
            new_labels[k] = _atoms(x, index, nloc_new, nf_new, 0)
    new_labels["frame_mask"] = (np.arange(nf_new) < nf).astype(np.float64)
    blocks = tuple((t, int(a), int(a + c)) for t, (a, c) in enumerate(zip(starts, target)) if c > 0)
    if spin:
        blocks = blocks + tuple((t + n, a + nloc_new, b + nloc_new) for t, a, b in blocks)
    return out, new_labels, blocks
