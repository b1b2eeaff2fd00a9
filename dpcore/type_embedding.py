"""Type embedding of mixed-type descriptors (DeePMD-kit's ``TypeEmbedNet``, SPEC_DPA1 3).

One residual linear layer on the one-hot type vectors: ``T[t] = e_t W (+ b) (+ e_t if dt == ntypes,
+ [e_t, e_t] if dt == 2 ntypes)`` for ``t < ntypes``, and a zero row ``T[ntypes]`` for padding (type -1).
Parameters: a network dict ``{"0": {"w": (ntypes, dt), "b": (dt,) optional}}`` (:mod:`dpcore.network`).
"""

from __future__ import annotations

import numpy as np

from .network import child_rng, init_net, net_forward
from .xp import device_of, namespace


def type_embedding_table(net: dict):
    """``T`` (ntypes + 1, dt) in the parameters' dtype; the last row (padding) is zero."""
    w = net["0"]["w"]
    xp = namespace(w)
    ntypes = w.shape[0]
    onehot = xp.asarray(np.eye(ntypes), dtype=w.dtype, device=device_of(xp, w))
    T, _ = net_forward(net, onehot, "linear")
    pad = xp.zeros((1, T.shape[1]), dtype=T.dtype, device=device_of(xp, w))
    return xp.concat([T, pad], axis=0)


def init_type_embedding(rng_seed, ntypes: int, dt: int, use_bias: bool, dtype) -> dict:
    """Fresh parameters: ``w ~ N(0, 1/sqrt(ntypes + dt))`` (``b ~ N(0, 1)`` when ``use_bias``)."""
    net = init_net(child_rng(*rng_seed), ntypes, [dt], None, False, dtype)
    if not use_bias:
        net["0"].pop("b")
    return net


def type_embedding_to_dict(net: dict, cfg: dict, type_map: list) -> dict:
    """DeePMD-kit's serialized ``TypeEmbedNet`` (``@version`` 2) of ``net``."""
    from .network_dict import collection_to_dict

    ntypes, dt = net["0"]["w"].shape
    sec = {"neuron": [dt], "activation_function": "Linear", "resnet_dt": False, "trainable": cfg["trainable"]}
    emb = collection_to_dict({"0": net}, 0, ntypes, "embedding_network", sec, ntypes)["networks"][0]
    emb["bias"] = net["0"].get("b") is not None
    return {"@class": "TypeEmbedNet", "@version": 2, "ntypes": ntypes, "neuron": [dt], "resnet_dt": False,
            "precision": np.dtype(net["0"]["w"].dtype).name, "activation_function": "Linear",
            "trainable": bool(cfg["trainable"]), "padding": True, "use_econf_tebd": False,
            "use_tebd_bias": emb["bias"], "type_map": list(type_map), "embedding": emb}


def type_embedding_from_dict(d: dict, ntypes: int, where: str) -> dict:
    """Network dict of a serialized ``TypeEmbedNet`` (``@version`` 1-2, one-hot input, padding row)."""
    from .network_dict import check_class, collection_from_dict

    check_class(d, "TypeEmbedNet", (1, 2), where)
    if d.get("use_econf_tebd"):
        raise NotImplementedError(f"{where}: use_econf_tebd (electronic-configuration type embedding) is not "
                                  "supported by dpcore yet")
    if not d.get("padding", True) or str(d.get("activation_function", "Linear")).lower() != "linear":
        raise NotImplementedError(f"{where}: only the padded linear type embedding of DPA-1 is supported")
    if d.get("ntypes", ntypes) != ntypes:
        raise ValueError(f"{where}: ntypes {d.get('ntypes')} differs from the model's {ntypes}")
    coll = {"@class": "NetworkCollection", "@version": 1, "ndim": 0, "networks": [d["embedding"]]}
    net = collection_from_dict(coll, 0, ntypes, f"{where}/embedding", False)["0"]
    if len(net) != 1 or net["0"]["w"].shape[0] != ntypes:
        raise NotImplementedError(f"{where}: expected one layer on the {ntypes} one-hot types")
    return net
