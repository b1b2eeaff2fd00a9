"""DeePMD-kit's serialized networks (SPEC 13.3) <-> dpcore's nested parameter dicts (host side, NumPy).

Arrays are kept exactly as stored (dtype and values); only the nesting changes:
``NetworkCollection.networks[k].layers[i]["@variables"]`` <-> ``nets[str(k)][str(i)]`` with a layer
``{"w", "b", "idt"}`` as in :mod:`dpcore.network`.  Descriptors and fittings build their own
serialized dicts around these collections.
"""

from __future__ import annotations

import numpy as np


def check_class(d: dict, cls: str, versions, where: str) -> None:
    """``d`` is a serialized ``@class`` ``cls`` dict with a supported ``@version`` (clear errors otherwise)."""
    if not isinstance(d, dict) or d.get("@class", cls) != cls:
        raise ValueError(f"{where}: expected a {cls!r} dict, got {type(d).__name__} with @class {getattr(d, 'get', lambda k: None)('@class')!r}")
    if d.get("@version", versions[0]) not in versions:
        raise ValueError(f"{where}: @version {d.get('@version')} is not supported (supported: {list(versions)})")


def _layers_from(net: dict, where: str, final_linear: bool) -> dict:
    act = net["activation_function"]
    layers = {}
    for i, layer in enumerate(net["layers"]):
        check_class(layer, "Layer", (1, 2), f"{where}/layers/{i}")
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


def collection_from_dict(coll: dict, ndim: int, ntypes: int, where: str, final_linear: bool) -> dict:
    """``{str(k): net}`` of a serialized ``NetworkCollection`` with ``ntypes ** ndim`` slots (None slots dropped)."""
    check_class(coll, "NetworkCollection", (1,), where)
    if coll.get("ndim") != ndim or len(coll["networks"]) != ntypes ** ndim:
        raise ValueError(f"{where}: expected ndim {ndim} with {ntypes ** ndim} networks, got ndim {coll.get('ndim')} "
                         f"with {len(coll['networks'])}")
    return {str(k): _layers_from(net, f"{where}/networks/{k}", final_linear)
            for k, net in enumerate(coll["networks"]) if net is not None}


def collection_to_dict(nets: dict, ndim: int, ntypes: int, kind: str, cfg: dict, in_dim: int) -> dict:
    """Serialized ``NetworkCollection`` of ``nets``; ``kind`` ``"embedding_network"`` or ``"fitting_network"``,
    ``cfg`` the section with ``neuron``, ``activation_function``, ``resnet_dt``, ``trainable``."""
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
