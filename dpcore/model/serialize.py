"""DeePMD-kit serialized standard-model dicts (SPEC 13.2-13.5) <-> (config, params).

The model envelope (type map, exclusions, ``out_bias``/``out_std``) is handled here; the descriptor and
fitting dicts by their registered modules (``serialize``/``deserialize``, see :mod:`dpcore.descriptor`,
:mod:`dpcore.fitting`).  Arrays are kept exactly as stored (dtype and values).
"""

from __future__ import annotations

import numpy as np

from ..descriptor import get_descriptor
from ..fitting import get_fitting
from ..network_dict import check_class
from .init import fitting_config

_MODEL_KEYS = ("type_map", "atom_exclude_types", "pair_exclude_types", "rcond", "preset_out_bias")


def model_from_dict(d: dict):
    """(config, params) of a serialized standard energy model."""
    check_class(d, "Model", (2,), "model")
    if d.get("type", "standard") != "standard":
        raise NotImplementedError(f"model type {d.get('type')!r} is not supported (supported: 'standard')")
    desc, fit = d["descriptor"], d["fitting"]
    check_class(desc, "Descriptor", (1, 2, 3), "model/descriptor")
    check_class(fit, "Fitting", (1, 2, 3, 4), "model/fitting")
    ntypes = len(d["type_map"])
    dcfg, dparams = get_descriptor(desc.get("type")).deserialize(desc, ntypes)
    fcfg, fparams = get_fitting(fit.get("type")).deserialize(fit, ntypes)
    cfg = {k: d.get(k) for k in _MODEL_KEYS}
    cfg["atom_exclude_types"] = list(cfg["atom_exclude_types"] or [])
    cfg["pair_exclude_types"] = [list(p) for p in (cfg["pair_exclude_types"] or [])]
    if sorted(fit.get("exclude_types", [])) != sorted(cfg["atom_exclude_types"]):
        raise NotImplementedError("model/fitting/exclude_types differs from model/atom_exclude_types")
    cfg.update(descriptor=dcfg, fitting_net=fcfg, type="standard", data_stat_nbatch=10, data_stat_protect=0.01)
    mv = d["@variables"]
    params = {
        "descriptor": dparams,
        "fitting": fparams,
        "out_bias": np.asarray(mv["out_bias"], dtype=np.float64).reshape(-1)[:ntypes],
        "out_std": np.asarray(mv.get("out_std", np.ones(ntypes)), dtype=np.float64).reshape(-1)[:ntypes],
    }
    return cfg, params


def model_to_dict(cfg: dict, params: dict) -> dict:
    """Serialized DeePMD-kit dict of a standard energy model (readable by DeePMD-kit 3.x)."""
    d, f = cfg["descriptor"], fitting_config(cfg)
    ntypes = len(cfg["type_map"])
    descriptor = get_descriptor(d["type"])
    desc = descriptor.serialize(d, params["descriptor"], cfg["type_map"])
    fit = get_fitting(f["type"]).serialize(f, params["fitting"], cfg["type_map"], descriptor.dim_out(d),
                                           cfg.get("atom_exclude_types", []))
    model = {"@class": "Model", "type": "standard", "@version": 2,
             **{k: cfg.get(k) for k in _MODEL_KEYS},
             "@variables": {"out_bias": np.asarray(params["out_bias"], dtype=np.float64).reshape(1, ntypes, 1),
                            "out_std": np.asarray(params.get("out_std", np.ones(ntypes)), dtype=np.float64).reshape(1, ntypes, 1)},
             "descriptor": desc, "fitting": fit}
    model["atom_exclude_types"] = list(model["atom_exclude_types"] or [])
    model["pair_exclude_types"] = list(model["pair_exclude_types"] or [])
    return model
