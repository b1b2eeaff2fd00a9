"""DeePMD-kit serialized model dicts (SPEC 13.2-13.5) <-> (config, params).

Arrays are kept exactly as stored (dtype and values); only the nesting changes:
``networks[k].layers[i]["@variables"]`` <-> ``params[...][str(k)][str(i)]``.
"""

from __future__ import annotations

import numpy as np

_MODEL_KEYS = ("type_map", "atom_exclude_types", "pair_exclude_types", "rcond", "preset_out_bias")


def _check(d: dict, cls: str, versions, where: str) -> None:
    if not isinstance(d, dict) or d.get("@class", cls) != cls:
        raise ValueError(f"{where}: expected a {cls!r} dict, got {type(d).__name__} with @class {getattr(d, 'get', lambda k: None)('@class')!r}")
    if d.get("@version", versions[0]) not in versions:
        raise ValueError(f"{where}: @version {d.get('@version')} is not supported (supported: {list(versions)})")


# ---------------------------------------------------------------------------------------------- networks
def _layers_from(net: dict, where: str, final_linear: bool) -> dict:
    act = net["activation_function"]
    layers = {}
    for i, layer in enumerate(net["layers"]):
        _check(layer, "Layer", (1, 2), f"{where}/layers/{i}")
        last = final_linear and i == len(net["layers"]) - 1
        want_resnet, want_act = (False, ("none", "linear", None)) if last else (True, (act,))
        if bool(layer.get("resnet")) != want_resnet or layer.get("activation_function") not in want_act:
            raise NotImplementedError(f"{where}/layers/{i}: resnet={layer.get('resnet')}, activation="
                                      f"{layer.get('activation_function')!r} differs from the standard network layout")
        v = layer["@variables"]
        out = {"w": np.asarray(v["w"])}
        for key in ("b", "idt"):
            if v.get(key) is not None:
                out[key] = np.ravel(np.asarray(v[key]))
        layers[str(i)] = out
    return layers


def _layer_to(layer: dict, activation: str, resnet: bool, trainable: bool) -> dict:
    return {"@class": "Layer", "@version": 2, "bias": layer.get("b") is not None,
            "use_timestep": layer.get("idt") is not None, "activation_function": activation, "resnet": resnet,
            "precision": np.dtype(layer["w"].dtype).name, "trainable": bool(trainable),
            "@variables": {"w": layer["w"], "b": layer.get("b"), "idt": layer.get("idt")}}


def _collection_from(coll: dict, ndim: int, ntypes: int, where: str, final_linear: bool) -> dict:
    _check(coll, "NetworkCollection", (1,), where)
    if coll.get("ndim") != ndim or len(coll["networks"]) != ntypes ** ndim:
        raise ValueError(f"{where}: expected ndim {ndim} with {ntypes ** ndim} networks, got ndim {coll.get('ndim')} "
                         f"with {len(coll['networks'])}")
    return {str(k): _layers_from(net, f"{where}/networks/{k}", final_linear)
            for k, net in enumerate(coll["networks"]) if net is not None}


# ---------------------------------------------------------------------------------------------- from dict
def model_from_dict(d: dict):
    """(config, params) of a serialized standard energy model."""
    _check(d, "Model", (2,), "model")
    if d.get("type", "standard") != "standard":
        raise NotImplementedError(f"model type {d.get('type')!r} is not supported (supported: 'standard')")
    desc, fit = d["descriptor"], d["fitting"]
    _check(desc, "Descriptor", (1, 2, 3), "model/descriptor")
    if desc.get("type") not in ("se_e2_a", "se_a"):
        raise NotImplementedError(f"descriptor type {desc.get('type')!r} is not supported (supported: 'se_e2_a')")
    _check(fit, "Fitting", (1, 2, 3, 4), "model/fitting")
    if fit.get("type") != "ener" or fit.get("mixed_types") or fit.get("dim_out", 1) != 1:
        raise NotImplementedError(f"fitting type {fit.get('type')!r} (mixed_types={fit.get('mixed_types')}) is not "
                                  "supported (supported: 'ener' per-type fitting)")
    ntypes = len(d["type_map"])
    one_side = bool(desc["type_one_side"])
    dcfg = {k: desc[k] for k in ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "type_one_side",
                                 "set_davg_zero", "activation_function", "precision", "trainable")}
    dcfg.update(type="se_e2_a", exclude_types=[list(p) for p in desc.get("exclude_types", [])], seed=None,
                env_protection=float(desc.get("env_protection", desc.get("env_mat", {}).get("protection", 0.0))))
    fcfg = {k: fit.get(k, dflt) for k, dflt in (("numb_fparam", 0), ("numb_aparam", 0), ("default_fparam", None),
                                                ("dim_case_embd", 0), ("neuron", None), ("activation_function", "tanh"),
                                                ("precision", "default"), ("resnet_dt", True), ("trainable", True),
                                                ("rcond", None), ("use_aparam_as_mask", False))}
    fcfg.update(type="ener", atom_ener=list(fit.get("atom_ener") or []), seed=None)
    cfg = {k: d.get(k) for k in _MODEL_KEYS}
    cfg["atom_exclude_types"] = list(cfg["atom_exclude_types"] or [])
    cfg["pair_exclude_types"] = [list(p) for p in (cfg["pair_exclude_types"] or [])]
    if sorted(fit.get("exclude_types", [])) != sorted(cfg["atom_exclude_types"]):
        raise NotImplementedError("model/fitting/exclude_types differs from model/atom_exclude_types")
    cfg.update(descriptor=dcfg, fitting_net=fcfg, type="standard", data_stat_nbatch=10, data_stat_protect=0.01)
    dv, fv, mv = desc["@variables"], fit["@variables"], d["@variables"]
    params = {
        "descriptor": {"davg": np.asarray(dv["davg"]), "dstd": np.asarray(dv["dstd"]),
                       "embedding": _collection_from(desc["embeddings"], 1 if one_side else 2, ntypes,
                                                     "model/descriptor/embeddings", False)},
        "fitting": {"nets": _collection_from(fit["nets"], 1, ntypes, "model/fitting/nets", True),
                    "bias_atom_e": np.asarray(fv["bias_atom_e"], dtype=np.float64).reshape(ntypes, -1)},
        "out_bias": np.asarray(mv["out_bias"], dtype=np.float64).reshape(-1)[:ntypes],
        "out_std": np.asarray(mv.get("out_std", np.ones(ntypes)), dtype=np.float64).reshape(-1)[:ntypes],
    }
    for key in ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std", "case_embd"):
        if fv.get(key) is not None:
            params["fitting"][key] = np.ravel(np.asarray(fv[key]))
    return cfg, params


# ---------------------------------------------------------------------------------------------- to dict
def _collection_to(nets: dict, ndim: int, ntypes: int, kind: str, cfg: dict, in_dim: int) -> dict:
    networks = []
    trainable = cfg.get("trainable", True)
    for k in range(ntypes ** ndim):
        net = nets.get(str(k))
        if net is None:
            networks.append(None)
            continue
        layers = [net[str(i)] for i in range(len(net))]
        fitting = kind == "fitting_network"
        tr = trainable if isinstance(trainable, list) else [trainable] * len(layers)
        body = [_layer_to(l, cfg["activation_function"], not (fitting and i == len(layers) - 1), tr[i])
                for i, l in enumerate(layers)]
        if fitting:
            body[-1]["activation_function"] = "none"
        common = {"in_dim": in_dim, "neuron": list(cfg["neuron"]), "activation_function": cfg["activation_function"],
                  "resnet_dt": cfg["resnet_dt"], "precision": np.dtype(layers[0]["w"].dtype).name, "layers": body}
        if fitting:
            networks.append({"@class": "FittingNetwork", "@version": 1, "out_dim": 1, "bias_out": True, **common})
        else:
            networks.append({"@class": "EmbeddingNetwork", "@version": 2, "bias": True, **common})
    return {"@class": "NetworkCollection", "@version": 1, "ndim": ndim, "ntypes": ntypes, "network_type": kind,
            "networks": networks}


def model_to_dict(cfg: dict, params: dict) -> dict:
    """Serialized DeePMD-kit dict of a standard energy model (readable by DeePMD-kit 3.x)."""
    d, f = cfg["descriptor"], cfg["fitting_net"]
    ntypes = len(cfg["type_map"])
    dp, fp = params["descriptor"], params["fitting"]
    dim_descrpt = d["neuron"][-1] * d["axis_neuron"]
    desc = {"@class": "Descriptor", "type": "se_e2_a", "@version": 2, "type_map": list(cfg["type_map"]), "spin": None,
            **{k: d[k] for k in ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "trainable",
                                 "type_one_side", "exclude_types", "env_protection", "set_davg_zero",
                                 "activation_function")},
            "precision": np.dtype(dp["davg"].dtype).name,
            "env_mat": {"rcut": d["rcut"], "rcut_smth": d["rcut_smth"], "protection": d["env_protection"],
                        "use_exp_switch": False},
            "embeddings": _collection_to(dp["embedding"], 1 if d["type_one_side"] else 2, ntypes, "embedding_network",
                                         d, 1),
            "@variables": {"davg": dp["davg"], "dstd": dp["dstd"]}}
    in_dim = dim_descrpt + f["numb_fparam"] + (0 if f.get("use_aparam_as_mask") else f["numb_aparam"]) + f.get("dim_case_embd", 0)
    trainable = f.get("trainable", True)
    fit = {"@class": "Fitting", "type": "ener", "@version": 4, "var_name": "energy", "dim_out": 1, "ntypes": ntypes,
           "dim_descrpt": dim_descrpt, "mixed_types": False, "exclude_types": list(cfg.get("atom_exclude_types", [])),
           "type_map": list(cfg["type_map"]), "atom_ener": list(f["atom_ener"]) if f.get("atom_ener") else None,
           "tot_ener_zero": False, "layer_name": None, "spin": None,
           "trainable": trainable if isinstance(trainable, list) else [bool(trainable)] * (len(f["neuron"]) + 1),
           **{k: f.get(k) for k in ("neuron", "resnet_dt", "numb_fparam", "numb_aparam", "dim_case_embd", "default_fparam",
                                    "rcond", "activation_function", "precision", "use_aparam_as_mask")},
           "nets": _collection_to(fp["nets"], 1, ntypes, "fitting_network", f, in_dim),
           "@variables": {"bias_atom_e": fp["bias_atom_e"],
                          **{k: fp.get(k) for k in ("case_embd", "fparam_avg", "fparam_inv_std", "aparam_avg",
                                                    "aparam_inv_std")}}}
    model = {"@class": "Model", "type": "standard", "@version": 2,
             **{k: cfg.get(k) for k in _MODEL_KEYS},
             "@variables": {"out_bias": np.asarray(params["out_bias"], dtype=np.float64).reshape(1, ntypes, 1),
                            "out_std": np.asarray(params.get("out_std", np.ones(ntypes)), dtype=np.float64).reshape(1, ntypes, 1)},
             "descriptor": desc, "fitting": fit}
    model["atom_exclude_types"] = list(model["atom_exclude_types"] or [])
    model["pair_exclude_types"] = list(model["pair_exclude_types"] or [])
    return model
