"""DPA-1 / se_atten_v2 descriptors <-> DeePMD-kit's serialized dicts (SPEC_DPA1 8; ``@version`` 1-3 read,
2 written).  Arrays are kept exactly as stored; a ``compress`` section (``@version`` 3) is ignored, the
uncompressed networks give the same energies (SPEC_DPA1 8)."""

from __future__ import annotations

import numpy as np

from ..network_dict import check_class, collection_from_dict, collection_to_dict
from ..type_embedding import type_embedding_from_dict, type_embedding_to_dict
from .dpa1_config import behaviour_warnings, mode_of, nnei_of

_FLAGS = ("rcut", "rcut_smth", "neuron", "axis_neuron", "tebd_dim", "set_davg_zero", "attn", "attn_layer",
          "attn_dotr", "activation_function", "resnet_dt", "scaling_factor", "normalize", "temperature",
          "trainable_ln", "ln_eps", "type_one_side", "concat_output_tebd", "use_tebd_bias", "exclude_types",
          "env_protection", "trainable")


def _layer(p: dict, prec: str, trainable: bool) -> dict:
    return {"@class": "Layer", "@version": 2, "bias": True, "use_timestep": False, "activation_function": "none",
            "resnet": False, "precision": prec, "trainable": bool(trainable),
            "@variables": {"w": p["w"], "b": p["b"], "idt": None}}


def _attention_to_dict(cfg: dict, params: dict, smooth: bool, prec: str) -> dict:
    ng, h, nnei = cfg["neuron"][-1], cfg["attn"], nnei_of(cfg)
    eps = 1e-5 if cfg.get("ln_eps") is None else float(cfg["ln_eps"])
    common = {"nnei": nnei, "embed_dim": ng, "hidden_dim": h, "dotr": cfg["attn_dotr"], "do_mask": False,
              "scaling_factor": cfg["scaling_factor"], "normalize": cfg["normalize"],
              "temperature": cfg.get("temperature"), "precision": prec}
    layers = []
    for l in range(cfg["attn_layer"]):
        p = params["attention"][str(l)]
        layers.append({**common, "trainable_ln": cfg["trainable_ln"], "ln_eps": eps,
                       "attention_layer": {**common, "num_heads": 1, "bias": True, "smooth": smooth,
                                           "in_proj": _layer(p["in_proj"], prec, cfg["trainable"]),
                                           "out_proj": _layer(p["out_proj"], prec, cfg["trainable"])},
                       "attn_layer_norm": {"@class": "LayerNorm", "@version": 1, "eps": eps,
                                           "trainable": bool(cfg["trainable_ln"]), "precision": prec,
                                           "@variables": {"w": p["layer_norm"]["w"], "b": p["layer_norm"]["b"]}}})
    return {"@class": "NeighborGatedAttention", "@version": 1, "layer_num": cfg["attn_layer"], **common,
            "trainable_ln": cfg["trainable_ln"], "ln_eps": eps, "attention_layers": layers}


def serialize(cfg: dict, params: dict, type_map: list) -> dict:
    """DeePMD-kit's serialized DPA-1 (``type: "dpa1"``) or se_atten_v2 dict (``@version`` 2)."""
    mode, smooth = mode_of(cfg)
    v2 = cfg.get("type") == "se_atten_v2"
    ntypes, dt = len(type_map), cfg["tebd_dim"]
    prec = np.dtype(params["davg"].dtype).name
    sel = [int(cfg["sel"])] if isinstance(cfg["sel"], int) else [int(s) for s in cfg["sel"]]
    in_dim = 1 if mode == "strip" else 1 + dt * (1 if cfg["type_one_side"] else 2)
    d = {"@class": "Descriptor", "type": "se_atten_v2" if v2 else "dpa1", "@version": 2, "sel": sel,
         "ntypes": ntypes, **{k: cfg.get(k) for k in _FLAGS}, "attn_mask": False, "use_econf_tebd": False,
         "type_map": list(type_map), "precision": prec, "spin": None,
         "ln_eps": 1e-5 if cfg.get("ln_eps") is None else float(cfg["ln_eps"]),
         "exclude_types": [list(p) for p in cfg["exclude_types"]],
         "embeddings": collection_to_dict(params["embedding"], 0, ntypes, "embedding_network", cfg, in_dim),
         "attention_layers": _attention_to_dict(cfg, params, smooth, prec),
         "env_mat": {"rcut": cfg["rcut"], "rcut_smth": cfg["rcut_smth"], "protection": cfg["env_protection"],
                     "use_exp_switch": False},
         "type_embedding": type_embedding_to_dict(params["type_embedding"], cfg, type_map),
         "@variables": {"davg": params["davg"], "dstd": params["dstd"]}}
    if not v2:
        d.update(tebd_input_mode=mode, smooth_type_embedding=smooth)
    if mode == "strip":
        d["embeddings_strip"] = collection_to_dict(params["embedding_strip"], 0, ntypes, "embedding_network", cfg,
                                                   dt * (1 if cfg["type_one_side"] else 2))
    return d


def _attention_from_dict(att: dict, cfg: dict, where: str) -> dict:
    """Attention parameters; the evaluation flags come from the innermost ``attention_layer`` (SPEC_DPA1 8)."""
    check_class(att, "NeighborGatedAttention", (1,), where)
    layers = att.get("attention_layers") or []
    if len(layers) != cfg["attn_layer"]:
        raise ValueError(f"{where}: {len(layers)} attention layers, attn_layer says {cfg['attn_layer']}")
    out = {}
    for l, layer in enumerate(layers):
        inner, ln = layer["attention_layer"], layer["attn_layer_norm"]
        if inner.get("num_heads", 1) != 1 or inner.get("do_mask") or not inner.get("bias", True):
            raise NotImplementedError(f"{where}/attention_layers/{l}: only one head, no mask, with bias is supported")
        if bool(inner.get("smooth", cfg["smooth_type_embedding"])) != bool(cfg["smooth_type_embedding"]):
            raise NotImplementedError(f"{where}/attention_layers/{l}: smooth differs from the descriptor's")
        cfg.update(attn_dotr=bool(inner.get("dotr", cfg["attn_dotr"])), normalize=bool(inner.get("normalize", True)),
                   temperature=inner.get("temperature"), scaling_factor=float(inner.get("scaling_factor", 1.0)),
                   ln_eps=float(ln.get("eps", cfg["ln_eps"])))
        pv = {name: {k: np.ravel(np.asarray(v)) if k == "b" else np.asarray(v)
                     for k, v in inner[name]["@variables"].items() if k in ("w", "b")}
              for name in ("in_proj", "out_proj")}
        v = ln["@variables"]
        out[str(l)] = {**pv, "layer_norm": {"w": np.ravel(np.asarray(v["w"])), "b": np.ravel(np.asarray(v["b"]))}}
    return out


def deserialize(d: dict, ntypes: int) -> tuple[dict, dict]:
    """``(cfg, params)`` of a serialized ``dpa1`` or ``se_atten_v2`` descriptor dict (``@version`` 1-3)."""
    where = "model/descriptor"
    check_class(d, "Descriptor", (1, 2, 3), where)
    v2 = d.get("type") == "se_atten_v2"
    missing = [k for k in ("type_embedding", "embeddings", "attention_layers", "@variables", "sel")
               + (("embeddings_strip",) if v2 or d.get("tebd_input_mode") == "strip" else ()) if k not in d]
    if missing:
        raise ValueError(f"{where}: a {d.get('type')!r} descriptor dict needs {missing}")
    if d.get("attn_mask"):
        raise NotImplementedError(f"{where}/attn_mask: old implementation of attn_mask is not supported.")
    if d.get("spin") is not None:
        raise NotImplementedError(f"{where}/spin: old implementation of spin is not supported.")
    if d.get("lmax", 1) != 1:
        raise NotImplementedError(f"{where}/lmax {d.get('lmax')}: the DPA-1 moment basis is not supported")
    cfg = {k: d.get(k) for k in _FLAGS}
    cfg.update(type="se_atten_v2" if v2 else "dpa1", sel=[int(s) for s in np.atleast_1d(d["sel"])], seed=None,
               precision=d.get("precision", "float64"), exclude_types=[list(p) for p in d.get("exclude_types", [])],
               env_protection=float(d.get("env_protection", d.get("env_mat", {}).get("protection", 0.0))),
               attn_mask=False, use_econf_tebd=False, trainable=bool(d.get("trainable", True)),
               trainable_ln=bool(d.get("trainable_ln", True)), use_tebd_bias=bool(d.get("use_tebd_bias", True)),
               ln_eps=1e-5 if d.get("ln_eps") is None else float(d["ln_eps"]),
               scaling_factor=float(d.get("scaling_factor", 1.0)), normalize=bool(d.get("normalize", True)),
               concat_output_tebd=bool(d.get("concat_output_tebd", True)))
    if not v2:
        cfg.update(tebd_input_mode=d.get("tebd_input_mode", "concat"),
                   smooth_type_embedding=bool(d.get("smooth_type_embedding", True)), stripped_type_embedding=None)
    else:
        cfg.update(smooth_type_embedding=True)
    mode, smooth = mode_of(cfg)
    if mode not in ("concat", "strip"):
        raise NotImplementedError(f"{where}/tebd_input_mode {mode!r} is not supported (concat, strip)")
    v = d["@variables"]
    params = {"davg": np.asarray(v["davg"]), "dstd": np.asarray(v["dstd"]),
              "type_embedding": type_embedding_from_dict(d["type_embedding"], ntypes, f"{where}/type_embedding"),
              "embedding": collection_from_dict(d["embeddings"], 0, ntypes, f"{where}/embeddings", False),
              "attention": _attention_from_dict(d["attention_layers"], cfg, f"{where}/attention_layers")}
    if mode == "strip":
        params["embedding_strip"] = collection_from_dict(d["embeddings_strip"], 0, ntypes,
                                                         f"{where}/embeddings_strip", False)
    if params["davg"].shape != (ntypes, nnei_of(cfg), 4):
        raise ValueError(f"{where}/@variables/davg has shape {params['davg'].shape}; expected "
                         f"({ntypes}, {nnei_of(cfg)}, 4) for sel {cfg['sel']}")
    if v2:
        cfg.pop("smooth_type_embedding")
    behaviour_warnings(cfg, davg_nonzero=bool(np.any(params["davg"] != 0)), where=where)
    return cfg, params
