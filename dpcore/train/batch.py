"""A sampled batch -> model inputs (pair data), labels and type blocks; the spin model's 2·nloc-atom form."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..by_type import blocks_for
from ..pairs import pair_inputs

LABEL_KEYS = ("energy", "force", "virial", "atom_ener", "atom_pref", "atom_ener_coeff", "drdq", "force_mag")


def batch_inputs(model_cfg: dict, batch: dict) -> tuple[dict, dict, tuple | None]:
    """Model inputs, labels and type blocks of a sampled batch (mirrors :func:`dpcore.infer.inputs.prepare`).

    Returns ``inputs`` (NumPy; pair data of :func:`dpcore.pairs.pair_inputs`, ``coord``, ``box``
    (nf, 3, 3), ``fparam``/``aparam``), ``labels`` (label arrays and ``find_*`` floats) and ``blocks``
    (per-type atom ranges: systems are type-sorted on load).
    """
    d, f = model_cfg["descriptor"], model_cfg["fitting_net"]
    ntypes = len(model_cfg["type_map"])
    atype = batch["atype"]
    nl = SimpleNamespace(nlist=batch["nlist"], mapping=batch["mapping"], shift=batch["shift"])
    inputs = pair_inputs(nl, atype, ntypes, d.get("exclude_types", ()), model_cfg.get("atom_exclude_types", ()))
    inputs["coord"] = batch["coord"]
    inputs["box"] = None if batch.get("box") is None else np.asarray(batch["box"]).reshape(-1, 3, 3)
    if f["numb_fparam"] > 0 and batch.get("find_fparam", 0.0) > 0:
        inputs["fparam"] = batch["fparam"]
    if f["numb_aparam"] > 0:
        inputs["aparam"] = batch["aparam"]
    labels = {k: batch[k] for k in LABEL_KEYS if k in batch}
    labels.update({f"find_{k}": float(batch[f"find_{k}"]) for k in LABEL_KEYS if f"find_{k}" in batch})
    labels["natoms"] = batch["natoms"]
    blocks = blocks_for(atype[0]) if np.all(atype == atype[:1]) else None
    return inputs, labels, blocks


def spin_batch_inputs(model, batch: dict) -> tuple[dict, dict, tuple | None]:
    """:func:`batch_inputs` of a spin model: the backbone's 2·nloc-atom inputs of
    :func:`dpcore.model.spin_model.prepare` (built per batch: the virtual atoms move with the spins)."""
    from ..model.spin_model import prepare

    f = model.config["fitting_net"]
    fparam = batch["fparam"] if f["numb_fparam"] > 0 and batch.get("find_fparam", 0.0) > 0 else None
    aparam = batch["aparam"] if f["numb_aparam"] > 0 else None
    inputs, blocks, perm = prepare(model, batch["coord"], batch["atype"], batch["spin"], batch.get("box"),
                                   fparam, aparam)
    if perm is not None and np.any(perm != np.arange(perm.size)):
        raise ValueError("spin batch: atoms are not sorted by type (data systems are sorted on load)")
    labels = {k: batch[k] for k in LABEL_KEYS if k in batch}
    labels.update({f"find_{k}": float(batch[f"find_{k}"]) for k in LABEL_KEYS if f"find_{k}" in batch})
    labels["natoms"] = batch["natoms"]
    return inputs, labels, blocks


def split_labels(labels: dict) -> tuple[dict, tuple]:
    """Array labels (traced) and the ``find_*`` flags (static: one compiled step per combination)."""
    arrays = {k: v for k, v in labels.items() if not k.startswith("find_")}
    flags = tuple(sorted((k, float(v)) for k, v in labels.items() if k.startswith("find_")))
    return arrays, flags

