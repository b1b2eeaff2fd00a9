"""Evaluation of large systems in bounded memory: centre atoms in chunks, the outputs summed over chunks.

The energy is a sum of atomic energies, each depending only on its centre's neighbours within ``rcut``, so a
frame can be evaluated a chunk of centres at a time: per frame one cell list (:func:`dpcore.cell_list.cell_list`,
O(natoms) memory), per chunk the neighbour rows and pair data of its centres only, one model call
(:func:`dpcore.infer.chunk_forward.chunk_forward`), and the chunk's atomic energies, forces, virial and per-atom
virials added into the frame's.  The numbers are those of one pass up to the order of the sums (~1e-14 relative).

Chunk policy (:func:`centres_per_call`): one model call holds at most ``max_memory`` bytes of working memory
(default :data:`DEFAULT_MAX_MEMORY` = 256 MiB; the estimate per centre is :func:`centre_bytes`), or exactly
``chunk_size`` centres when that is given.  Systems that fit are evaluated as before in one pass, several frames
per call when they fit (:func:`by_frames`); larger frames in equal chunks (the last padded with masked copies of
a centre, so compiled backends see one shape).  Centres are taken in type order, so each chunk has the type
blocks of the fast path; atoms that carry no energy (padding, ``atom_exclude_types``, a spin model's virtual
atoms) are never centres: their rows would only add zeros.
"""

from __future__ import annotations

import re

import numpy as np

from ..by_type import blocks_for
from ..descriptor import get_descriptor
from ..nlist import NeighborList, cell_list, centre_neighbors, warn_sel_overflow
from ..pairs import pair_inputs
from .chunk_forward import chunk_forward

# bytes of working memory of one model call: ~300 water atoms (se_e2_a, sel [46, 92], embedding [25, 50, 100]),
# where time per atom is lowest on most backends (larger arrays leave the caches; benchmarks/README.md, "Scale")
DEFAULT_MAX_MEMORY = 256 * 2**20
FLOATS_PER_SLOT = 32  # environment matrix, pair vectors, their gradients and masks, per neighbour slot
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_memory(value, name: str = "max_memory") -> int:
    """Bytes from a positive number of bytes or a size string (``"512MB"``, ``"1.5 GiB"``, ``"800M"``)."""
    number = value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        unit = m.group(2).upper() if m else None
        if unit not in _UNITS:
            raise ValueError(f"{name} must be a number of bytes or a size such as '512MB' or '2GiB' "
                             f"(units {sorted(u for u in _UNITS if u)}), got {value!r}")
        number = float(m.group(1)) * _UNITS[unit]
    if isinstance(number, bool) or not isinstance(number, (int, float, np.integer, np.floating)) \
            or not np.isfinite(number) or number < 1:
        raise ValueError(f"{name} must be a positive number of bytes or a size such as '512MB', got {value!r}")
    return int(number)


def centre_bytes(cfg: dict) -> int:
    """Estimated peak working memory (bytes) of one centre atom in a model call (analytic or autodiff forces).

    Per neighbour slot: the embedding net's activations and their gradients (4 x the widths summed, float64),
    :data:`FLOATS_PER_SLOT` more, and for an attention descriptor (DPA-1) per layer the slot's attention row
    and 6 x ``attn`` projections; per centre the fitting net (4 x its widths) and the descriptor (3 copies).
    Measured peak memory stays below this (benchmarks/README.md, "Scale").
    """
    d, f = cfg["descriptor"], cfg["fitting_net"]
    sel = d["sel"]
    nnei = int(sel) if isinstance(sel, int) else int(sum(sel))
    per_slot = 4 * sum(d["neuron"]) + FLOATS_PER_SLOT + d.get("attn_layer", 0) * (nnei + 6 * d.get("attn", 0))
    dim_descrpt = d["neuron"][-1] * d.get("axis_neuron", 1)
    return 8 * (nnei * per_slot + 4 * sum(f.get("neuron", ())) + 3 * dim_descrpt)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (centre atoms per model call), got {value!r}")
    return int(value)


def centres_per_call(cfg: dict, chunk_size=None, max_memory=None) -> int:
    """Centre atoms (summed over frames) of one model call: ``chunk_size``, or as many as ``max_memory``
    (bytes or a size string; default :data:`DEFAULT_MAX_MEMORY`) holds by :func:`centre_bytes`, at least 1."""
    if chunk_size is not None and max_memory is not None:
        raise ValueError(f"give chunk_size ({chunk_size!r}) or max_memory ({max_memory!r}), not both")
    if chunk_size is not None:
        return _positive_int(chunk_size, "chunk_size")
    budget = DEFAULT_MAX_MEMORY if max_memory is None else parse_memory(max_memory)
    return max(1, budget // centre_bytes(cfg))


def by_frames(one_pass, nframes: int, natoms: int, per_call: int) -> dict:
    """``one_pass(frames)`` (a slice -> dict of NumPy arrays, frames first) on groups of whole frames of at most
    ``per_call`` atoms (at least one frame), concatenated."""
    step = max(1, per_call // max(natoms, 1))
    if step >= nframes:
        return one_pass(slice(None))
    parts = [one_pass(slice(start, start + step)) for start in range(0, nframes, step)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _chunk_inputs(cfg, cells, rows, centres, size: int, f: int, system: dict) -> dict:
    """The model inputs of one chunk (NumPy, one frame): pair data of ``centres`` padded to ``size`` rows with
    masked copies of the last centre, all coordinates, box, fparam and the centres' aparam."""
    d = cfg["descriptor"]
    nl = NeighborList(nlist=rows[None], mapping=cells.owner[None], shift=cells.shift[None])
    inputs = pair_inputs(nl, system["atype"][f : f + 1], len(cfg["type_map"]), d.get("exclude_types", ()),
                         cfg.get("atom_exclude_types", ()), centres=centres[None],
                         first_type=system["first_type"][f : f + 1] if get_descriptor(d["type"]).MIXED_TYPES else None)
    pad = size - len(centres)
    if pad:
        for key, value in inputs.items():
            if value.ndim >= 2:
                inputs[key] = np.concatenate([value, np.repeat(value[:, -1:], pad, axis=1)], axis=1)
        inputs["atom_mask"][:, len(centres):] = False
    inputs["coord"] = system["coord"][f : f + 1]
    inputs["box"] = None if system["box"] is None else system["box"][f : f + 1].reshape(1, 3, 3)
    if system.get("fparam") is not None:
        inputs["fparam"] = system["fparam"][f : f + 1]
    if system.get("aparam") is not None:
        inputs["aparam"] = system["aparam"][f : f + 1][:, inputs["centre_index"][0]]
    return inputs


def evaluate_centres(backend, cfg: dict, params, system: dict, *, per_call: int, atomic: bool = False,
                     force_mode: str = "analytic") -> dict:
    """An energy model (or a spin model's backbone) on frames too large for one call, in chunks of centres.

    ``system`` (checked NumPy inputs): coord (nf, natoms, 3) Å, atype (nf, natoms), box (nf, 9) Å or None,
    fparam (nf, nfp) or None, aparam (nf, natoms, nap) or None, first_type (nf,) (type of each frame's first atom,
    for mixed-type descriptors).  ``params``: the parameter dict on ``backend``.  Returns NumPy arrays:
    atom_energy (nf, natoms) eV, force (nf, natoms, 3) eV/Å, virial (nf, 9) eV, atom_mask (nf, natoms) bool
    and, if ``atomic``, atom_virial (nf, natoms, 9) eV.
    """
    d = cfg["descriptor"]
    sel, rcut = get_descriptor(d["type"]).nlist_sel(d), float(d["rcut"])
    atype, coord, box = system["atype"], system["coord"], system["box"]
    nf, natoms = atype.shape
    atom_mask = (atype >= 0) & ~np.isin(atype, list(cfg.get("atom_exclude_types", ())))
    out = {"atom_energy": np.zeros((nf, natoms)), "force": np.zeros((nf, natoms, 3)), "virial": np.zeros((nf, 9)),
           "atom_mask": atom_mask}
    if atomic:
        out["atom_virial"] = np.zeros((nf, natoms, 9))
    dparams = {k: backend.to_numpy(v) for k, v in params["descriptor"].items() if k in ("davg", "dstd")}
    for f in range(nf):
        cells = cell_list(coord[f], atype[f], None if box is None else box[f].reshape(3, 3), rcut)
        centres = np.argsort(atype[f], kind="stable")  # type order: every chunk has type blocks
        centres = centres[atom_mask[f, centres]]
        if len(centres) == 0:
            continue
        nchunks = -(-len(centres) // per_call)
        size = -(-len(centres) // nchunks)  # equal chunks, the last padded to the same shape
        most = None
        for start in range(0, len(centres), size):
            chunk = centres[start : start + size]
            rows, count = centre_neighbors(cells, chunk, sel, cfg.get("pair_exclude_types", ()))
            most = count if most is None else np.maximum(most, count)
            inputs = _chunk_inputs(cfg, cells, rows, chunk, size, f, system)
            trim = backend.slot_trim(cfg)
            blocks = trim(blocks_for(inputs["centre_type"][0]), inputs["nlist_mask"])
            inputs = trim.share(inputs, blocks, dparams)  # (dpcore.pair_share)
            res = chunk_forward(backend, cfg, params, backend.forward_inputs(inputs), blocks, atomic_virial=atomic,
                                force_mode=force_mode)
            res = {k: np.asarray(backend.to_numpy(v), dtype=np.float64)[0] for k, v in res.items()}
            out["atom_energy"][f, chunk] = res["atom_energy"][: len(chunk)]
            for key in ("force", "virial", "atom_virial"):
                if key in out:
                    out[key][f] += res[key]
        warn_sel_overflow(most, sel, rcut)
    return out


def energy_outputs(res: dict, atomic: bool) -> dict:
    """The :meth:`dpcore.EnergyModel.evaluate` dict from :func:`evaluate_centres`' arrays."""
    out = {"atom_energy": res["atom_energy"][..., None], "energy": np.sum(res["atom_energy"], axis=1, keepdims=True),
           "mask": res["atom_mask"].astype(np.int32), "force": res["force"], "virial": res["virial"]}
    if atomic:
        out["atom_virial"] = res["atom_virial"]
    return out
