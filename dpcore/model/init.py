"""Fresh parameters for an energy model from its (normalised) config, deterministic for a seed."""

from __future__ import annotations

import numpy as np

from ..descriptor import get_descriptor
from ..fitting import get_fitting
from ..network import get_activation
from ..precision import precision_name


def validate(cfg) -> None:
    """Checks that need the whole model config (clear errors before any array is built)."""
    d, f = cfg["descriptor"], cfg["fitting_net"]
    ntypes = len(cfg["type_map"])
    get_descriptor(d["type"]).validate(d, ntypes)
    get_fitting(f.get("type", "ener"))
    for where, act in (("descriptor", d["activation_function"]), ("fitting_net", f["activation_function"])):
        try:
            get_activation(act)
        except ValueError as e:
            raise ValueError(f"model/{where}/activation_function: {e}") from None
    for where, p in (("descriptor", d["precision"]), ("fitting_net", f["precision"])):
        try:
            precision_name(p)
        except ValueError as e:
            raise ValueError(f"model/{where}/precision: {e}") from None
    for t in cfg.get("atom_exclude_types", []):
        if not 0 <= t < ntypes:
            raise ValueError(f"model/atom_exclude_types: type {t} outside 0..{ntypes - 1}")


def fitting_config(cfg) -> dict:
    """The fitting section as the fitting module sees it: after a mixed-type descriptor (DPA-1) one fitting
    net serves every type (``mixed_types``, SPEC_DPA1 7), decided by the descriptor, not by input.json."""
    f = cfg["fitting_net"]
    if get_descriptor(cfg["descriptor"]["type"]).MIXED_TYPES and not f.get("mixed_types"):
        return {**f, "mixed_types": True}
    return f


def init_params(cfg, seed=None) -> dict:
    """Parameter dict of a freshly initialised model (NumPy arrays; davg 0, dstd 1, biases 0).

    ``seed``: the model seed (``training.seed``), used by a section whose own ``seed`` is null."""
    validate(cfg)
    d, f = cfg["descriptor"], fitting_config(cfg)
    ntypes = len(cfg["type_map"])
    descriptor, fitting = get_descriptor(d["type"]), get_fitting(f.get("type", "ener"))
    dseed = d["seed"] if d.get("seed") is not None else seed
    fseed = f["seed"] if f.get("seed") is not None else seed
    return {
        "descriptor": descriptor.init_params(d, ntypes, dseed),
        "fitting": fitting.init_params(f, ntypes, descriptor.dim_out(d), fseed),
        "out_bias": np.zeros(ntypes),
        "out_std": np.ones(ntypes),
    }


def trainable_mask(cfg: dict, params: dict) -> dict:
    """Tree of bools over ``params``: True for what ``dpcore train`` trains (network weights, biases, ``idt``
    whose section's ``trainable`` flag is set); statistics and biases from data never."""
    d, f = cfg["descriptor"], fitting_config(cfg)
    return {"descriptor": get_descriptor(d["type"]).trainable_mask(d, params["descriptor"]),
            "fitting": get_fitting(f.get("type", "ener")).trainable_mask(f, params["fitting"]),
            **{k: False for k in params if k not in ("descriptor", "fitting")}}
