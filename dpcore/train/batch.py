"""A sampled batch -> model inputs (pair data), labels and type blocks; the spin model's 2·nloc-atom form;
:class:`BatchShaper`, which also pads the batch to its shape bucket (:mod:`dpcore.train.buckets`)."""

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



class BatchShaper:
    """``shaper(batch) -> (inputs, label arrays, blocks, find flags, nf)``: NumPy model inputs of a sampled batch
    (:func:`batch_inputs`, or :func:`spin_batch_inputs` for a spin model), padded to its bucket when ``buckets``
    (:class:`~dpcore.train.buckets.Buckets`) are given (:func:`~dpcore.train.padding.pad_batch`); ``nf`` is the
    frames of the (padded) batch.  The blocks carry the used neighbour-section widths (:mod:`dpcore.slot_trim`;
    ``compiled``: the step is compiled, so the widths are rounded and only grow)."""

    def __init__(self, model, spin: bool, buckets=None, compiled: bool = False):
        from ..descriptor import get_descriptor
        from ..slot_trim import SlotTrim

        self.model, self.spin, self.buckets = model, spin, buckets
        self.trim = SlotTrim(model.config["descriptor"], compiled)
        cfg = model.config
        self.ntypes_backbone = len(cfg["type_map"])
        self.ntypes = model.ntypes if spin else self.ntypes_backbone
        self.mixed_types = bool(get_descriptor(cfg["descriptor"]["type"]).MIXED_TYPES)

    def __call__(self, batch: dict):
        inputs, arrays, blocks, flags, nf = self._padded(batch)
        blocks = self.trim(blocks, inputs["nlist_mask"])
        inputs = self.trim.share(inputs, blocks, self.model.params["descriptor"])  # (dpcore.pair_share)
        return inputs, arrays, blocks, flags, nf

    def grow_widths(self, samplers) -> None:
        """Grow the compiled widths to those of the first frame of every system of ``samplers`` (None skipped)
        before the first step: a width that grows later recompiles every step shape (the water-like dataset of
        10 compositions in 4 shape buckets compiled 5 steps without this, 4 with it)."""
        if self.trim.grown is None:
            return
        for sampler in samplers:
            for k in range(len(sampler.systems) if sampler is not None else 0):
                inputs, _, blocks, _, _ = self._padded(sampler.make_batch(k, [0]))
                self.trim(blocks, inputs["nlist_mask"])

    def _padded(self, batch: dict):
        from .padding import pad_batch

        if self.spin:
            inputs, labels, blocks = spin_batch_inputs(self.model, batch)
        else:
            inputs, labels, blocks = batch_inputs(self.model.config, batch)
        arrays, flags = split_labels(labels)
        nf = int(np.shape(batch["coord"])[0])
        if self.buckets is not None and blocks is not None:
            counts = np.bincount(np.asarray(batch["atype"])[0], minlength=self.ntypes)
            bucket = self.buckets.bucket((nf,) + tuple(int(c) for c in counts))
            if bucket is not None:
                inputs, arrays, blocks = pad_batch(inputs, arrays, counts, bucket, ntypes_backbone=self.ntypes_backbone,
                                                   spin=self.spin, mixed_types=self.mixed_types)
                nf = bucket[0]
        return inputs, arrays, blocks, flags, nf
