"""Evaluation of a model on NumPy inputs with any backend (host side: checks, neighbour list, type sorting)."""

from __future__ import annotations

import numpy as np

from ..by_type import blocks_for
from ..descriptor import get_descriptor
from ..nlist import build_neighbor_list
from ..pairs import pair_inputs


def check_inputs(coord, atype, box, fparam, aparam, ntypes: int, numb_fparam: int = 0, numb_aparam: int = 0):
    """Validate and normalise user inputs.  Returns coord (nf, nloc, 3) float64, atype (nf, nloc) int64,
    box (nf, 9) float64 or None, fparam (nf, numb_fparam) or None, aparam (nf, nloc, numb_aparam) or None."""
    coord = np.asarray(coord, dtype=np.float64)
    atype = np.asarray(atype)
    if atype.ndim not in (1, 2) or not np.issubdtype(atype.dtype, np.integer):
        raise ValueError(f"atype must be integers of shape (natoms,) or (nframes, natoms), got {atype.dtype} {atype.shape}")
    nloc = atype.shape[-1]
    if coord.ndim == 2 and coord.shape[-1] == 3 * nloc:
        coord = coord.reshape(coord.shape[0], nloc, 3)
    elif coord.ndim == 2 and coord.shape == (nloc, 3):
        coord = coord[None]
    if coord.ndim != 3 or coord.shape[1:] != (nloc, 3):
        raise ValueError(f"coord must have shape (nframes, natoms, 3) = (nf, {nloc}, 3) to match atype, got {coord.shape}")
    nf = coord.shape[0]
    atype = np.broadcast_to(atype, (nf, nloc)).astype(np.int64) if atype.ndim == 1 or atype.shape[0] == nf else None
    if atype is None:
        raise ValueError(f"atype has a different number of frames than coord ({nf})")
    if atype.max(initial=-1) >= ntypes:
        raise ValueError(f"atype contains type {atype.max()} but the model has {ntypes} types (0..{ntypes - 1})")
    if not np.all(np.isfinite(coord)):
        raise ValueError("coord contains NaN or inf")
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1, 9) if np.size(box) % 9 == 0 else np.asarray(box)
        if box.ndim != 2 or box.shape[1] != 9 or box.shape[0] not in (1, nf):
            raise ValueError(f"box must have shape (nframes, 9) = ({nf}, 9) (rows = lattice vectors), got {np.shape(box)}")
        box = np.broadcast_to(box, (nf, 9)).copy()
        det = np.linalg.det(box.reshape(nf, 3, 3))
        if np.any(np.abs(det) < 1e-10):
            raise ValueError(f"box is singular (det = {det.min():.3g} Å^3): its rows must be three independent lattice vectors")
    fparam = _frame_param("fparam", fparam, nf, numb_fparam)
    if aparam is not None:
        aparam = np.asarray(aparam, dtype=np.float64)
        if aparam.size != nf * nloc * numb_aparam:
            raise ValueError(f"aparam must have shape (nframes, natoms, {numb_aparam}) = ({nf}, {nloc}, {numb_aparam}), got {aparam.shape}")
        aparam = aparam.reshape(nf, nloc, numb_aparam)
    elif numb_aparam > 0:
        raise ValueError(f"this model needs aparam of shape (nframes, natoms, {numb_aparam})")
    return coord, atype, box, fparam, aparam


def _frame_param(name, value, nf, n):
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    if value.size == n:
        value = np.broadcast_to(value.reshape(1, n), (nf, n))
    if value.shape != (nf, n):
        raise ValueError(f"{name} must have shape (nframes, {n}) = ({nf}, {n}), got {value.shape}")
    return value


def prepare(model, coord, atype, box=None, fparam=None, aparam=None):
    """Host-side preparation: checks, type sorting, neighbour list, pair data.

    Returns ``inputs`` (dict of NumPy arrays for :func:`dpcore.model.energy.forward`), ``blocks`` and the
    atom permutation applied (``None`` if atoms were not reordered).
    """
    cfg = model.config
    d, f = cfg["descriptor"], cfg["fitting_net"]
    ntypes = len(cfg["type_map"])
    coord, atype, box, fparam, aparam = check_inputs(coord, atype, box, fparam, aparam, ntypes,
                                                     f["numb_fparam"], f["numb_aparam"])
    perm = None
    first_type = atype[:, 0].copy()  # mixed-type descriptors type empty slots with it (SPEC_DPA1 0.2)
    if atype.min(initial=0) >= 0 and np.all(atype == atype[:1]):
        perm = np.argsort(atype[0], kind="stable")
        coord, atype = coord[:, perm], atype[:, perm]
        aparam = None if aparam is None else aparam[:, perm]
    blocks = blocks_for(atype[0]) if perm is not None else None
    nl = build_neighbor_list(coord, atype, box, d["rcut"], get_descriptor(d["type"]).nlist_sel(d), cfg.get("pair_exclude_types", ()))
    inputs = pair_inputs(nl, atype, ntypes, d.get("exclude_types", ()), cfg.get("atom_exclude_types", ()),
                         first_type=first_type if get_descriptor(d["type"]).MIXED_TYPES else None)
    inputs["coord"] = coord
    inputs["box"] = None if box is None else box.reshape(-1, 3, 3)
    if fparam is not None:
        inputs["fparam"] = fparam
    if aparam is not None:
        inputs["aparam"] = aparam
    return inputs, blocks, perm


def unpermute(out: dict, perm) -> dict:
    """Undo the type sorting on per-atom outputs (second axis of length nloc)."""
    if perm is None:
        return out
    inv = np.argsort(perm)
    nloc = perm.size
    return {k: (v[:, inv] if v.ndim >= 2 and v.shape[1] == nloc and k not in ("energy", "virial") else v)
            for k, v in out.items()}
