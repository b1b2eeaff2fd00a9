"""se_e2_a ("smooth edition, two-body embedding, all information") descriptor (SPEC 4), the math.

For centre i with normalised environment rows ``R~`` (nnei x 4) and embedding
matrix ``G`` (nnei x ng):  ``A = R~^T G / nnei`` (4 x ng) and
``D = A^T A[:, :axis_neuron]`` (ng x axis_neuron), flattened row-major.
``nnei = sum(sel)`` is the capacity, padded slots included.

Parameters: ``{"davg": (ntypes, nnei, 4), "dstd": (ntypes, nnei, 4),
"embedding": {"<k>": net}}`` with ``k = t_nbr`` (``type_one_side``) or
``k = t_centre + t_nbr * ntypes``.  ``cfg`` is the descriptor section of the
model config (normalised, SPEC 11.2).

Compressed models (``dpcore compress``, SPEC_COMPRESS): ``cfg["compress"]["info"][k]`` and
``params["compress"]["table"][k]`` (see :mod:`dpcore.descriptor.tabulate`) replace net ``k`` by its table
in :func:`forward` and :func:`vjp` (:func:`dpcore.tabulated.tabulated_contraction` gives ``R~^T G`` of a
neighbour block without forming ``G``); the nets stay in ``params``.

Type blocks carrying used section widths (:mod:`dpcore.slot_trim`) run the net or table on the used slots of
each (centre block, neighbour section) only and add the trimmed empty slots' constant contribution once
(:mod:`dpcore.descriptor.se_e2_a_embed`).  With the indices of :mod:`dpcore.pair_share` in ``pairs`` the net of a
block runs once per distinct input (both ends of a same-type pair, a column of empty slots).
"""

from __future__ import annotations

from .. import pair_share
from ..by_type import apply_by_type, block_widths, vjp_by_type
from ..env_mat import env_mat, env_mat_vjp
from ..precision import compute_precision
from ..xp import namespace
from . import se_e2_a_embed as embed_mod

TYPE = "se_e2_a"
ALIASES = ("se_a",)
MIXED_TYPES = False  # neighbour list split by neighbour type: sel[t] slots for type t
TRIMS_EMPTY_SLOTS = True  # blocks may carry used section widths (dpcore.slot_trim)


# ------------------------------------------------------------------------------------------- definition
def args() -> list:
    """dargs arguments of the ``model.descriptor`` section (DeePMD-kit 3.2 defaults and aliases)."""
    from dargs import Argument

    def opt(*a, **k):
        return Argument(*a, optional=True, **k)

    return [
        opt("sel", [list[int], str], default="auto"),
        opt("rcut", float, default=6.0),
        opt("rcut_smth", float, default=0.5),
        opt("neuron", list[int], default=[10, 20, 40]),
        opt("axis_neuron", int, default=4, alias=["n_axis_neuron"]),
        opt("activation_function", str, default="tanh"),
        opt("resnet_dt", bool, default=False),
        opt("type_one_side", bool, default=False),
        opt("precision", str, default="default"),
        opt("trainable", bool, default=True),
        opt("seed", [int, None], default=None),
        opt("exclude_types", list[list[int]], default=[]),
        opt("env_protection", float, default=0.0),
        opt("set_davg_zero", bool, default=False),
    ]


def check(cfg: dict, type_map: list, loc: str = "model/descriptor") -> None:
    """Rules of a normalised section that its types cannot express (ConfigError naming the key)."""
    from ..config.errors import SEL_AUTO, check_act_prec, check_types, finite, need

    nt, sel = len(type_map), cfg["sel"]
    if isinstance(sel, str):
        need(bool(SEL_AUTO.match(sel)), f"{loc}/sel",
             f"expected a list of {nt} ints (one per type) or 'auto' / 'auto:factor', got '{sel}'")
    else:
        need(len(sel) == nt and all(s >= 0 for s in sel), f"{loc}/sel",
             f"expected {nt} non-negative ints (one per type in type_map {type_map}), got {sel}")
    need(finite(cfg["rcut"]) and cfg["rcut"] > 0, f"{loc}/rcut", f"must be > 0, got {cfg['rcut']}")
    need(0 <= cfg["rcut_smth"] < cfg["rcut"], f"{loc}/rcut_smth",
         f"must satisfy 0 <= rcut_smth < rcut = {cfg['rcut']}, got {cfg['rcut_smth']}")
    check_act_prec(cfg, loc)
    need(1 <= cfg["axis_neuron"] <= cfg["neuron"][-1] if cfg["neuron"] else False, f"{loc}/axis_neuron",
         f"must be in 1..neuron[-1] = {cfg['neuron'][-1] if cfg['neuron'] else None}, got {cfg['axis_neuron']}")
    check_types(cfg["exclude_types"], nt, f"{loc}/exclude_types", pairs=True)
    need(cfg["env_protection"] >= 0, f"{loc}/env_protection", "must be >= 0")


def validate(cfg: dict, ntypes: int) -> None:
    """Checks before any array is built (``sel`` resolved to one count per type)."""
    if isinstance(cfg["sel"], str):
        raise ValueError(f"model/descriptor/sel is {cfg['sel']!r}: it is resolved from the training data by `dpcore "
                         "train` (see `dpcore neighbor-stat`); give one integer per type to build a model directly")
    if len(cfg["sel"]) != ntypes:
        raise ValueError(f"model/descriptor/sel has {len(cfg['sel'])} entries but type_map has {ntypes} types")
    if not cfg["rcut_smth"] < cfg["rcut"]:
        raise ValueError(f"model/descriptor: rcut_smth ({cfg['rcut_smth']}) must be smaller than rcut ({cfg['rcut']})")
    if cfg["axis_neuron"] > cfg["neuron"][-1]:
        raise ValueError(f"model/descriptor/axis_neuron ({cfg['axis_neuron']}) exceeds the embedding width "
                         f"{cfg['neuron'][-1]}")


def nlist_sel(cfg) -> list[int]:
    """Neighbour slots per neighbour type (the list is split by type, nearest first in each block)."""
    return list(cfg["sel"])


def spin_backbone(cfg: dict) -> dict:
    """Descriptor section of a spin model's 2n-type backbone: one ``sel`` block per backbone type."""
    return {**cfg, "sel": list(cfg["sel"]) + list(cfg["sel"])}


def dim_out(cfg) -> int:
    return cfg["neuron"][-1] * cfg["axis_neuron"]


def init_params(cfg: dict, ntypes: int, seed=None) -> dict:
    """Fresh parameters (NumPy): embedding nets from ``child_rng(seed, 0, k)``, davg 0, dstd 1."""
    import numpy as np

    from ..network import child_rng, init_net
    from ..precision import precision_name

    ddt = precision_name(cfg["precision"])
    nnei = sum(cfg["sel"])
    n_emb = ntypes if cfg["type_one_side"] else ntypes * ntypes
    embedding = {str(k): init_net(child_rng(seed, 0, k), 1, cfg["neuron"], None, cfg["resnet_dt"], ddt)
                 for k in range(n_emb)}
    return {"davg": np.zeros((ntypes, nnei, 4), dtype=ddt), "dstd": np.ones((ntypes, nnei, 4), dtype=ddt),
            "embedding": embedding}


def trainable_mask(cfg: dict, params: dict) -> dict:
    """Every embedding net follows ``trainable``; the statistics ``davg``/``dstd`` (and the tables of a
    compressed model) are never trained."""
    tr = bool(cfg.get("trainable", True))
    mask = {"davg": False, "dstd": False,
            "embedding": {k: {i: {n: tr for n in layer} for i, layer in net.items()}
                          for k, net in params["embedding"].items()}}
    if "compress" in params:
        mask["compress"] = {"table": {k: False for k in params["compress"]["table"]}}
    return mask


def stats(model_cfg: dict, params: dict, batches, stat_file=None) -> dict:
    """``{"davg", "dstd"}`` from the environment matrices of the statistics frames (SPEC 2.4), in the
    descriptor precision; ``stat_file`` caches the sums (:func:`dpcore.stat.descriptor.descriptor_stats`)."""
    from ..stat.descriptor import descriptor_stats

    davg, dstd = descriptor_stats(model_cfg, batches, stat_file=stat_file)
    ddt = params["davg"].dtype
    return {"davg": davg.astype(ddt), "dstd": dstd.astype(ddt)}


def serialize(cfg: dict, params: dict, type_map: list) -> dict:
    """DeePMD-kit's serialized se_e2_a dict (``@version`` 2; 3 with the ``"compress"`` tables, SPEC 13.3 and
    SPEC_COMPRESS 9)."""
    import numpy as np

    from ..network_dict import collection_to_dict

    d = {"@class": "Descriptor", "type": "se_e2_a", "@version": 2, "type_map": list(type_map), "spin": None,
        **{k: cfg[k] for k in ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "trainable",
                               "type_one_side", "exclude_types", "env_protection", "set_davg_zero",
                               "activation_function")},
        "precision": np.dtype(params["davg"].dtype).name,
        "env_mat": {"rcut": cfg["rcut"], "rcut_smth": cfg["rcut_smth"], "protection": cfg["env_protection"],
                    "use_exp_switch": False},
        "embeddings": collection_to_dict(params["embedding"], 1 if cfg["type_one_side"] else 2, len(type_map),
                                         "embedding_network", cfg, 1),
        "@variables": {"davg": params["davg"], "dstd": params["dstd"]}}
    if cfg.get("compress"):
        from .tabulate import compress_to_dict

        n_nets = len(type_map) if cfg["type_one_side"] else len(type_map) ** 2
        d.update({"@version": 3, "compress": compress_to_dict(cfg, params, n_nets, params["davg"].dtype)})
    return d


def deserialize(d: dict, ntypes: int) -> tuple[dict, dict]:
    """``(cfg, params)`` of a serialized se_e2_a dict (``@version`` 1-3)."""
    import numpy as np

    from ..network_dict import check_class, collection_from_dict

    check_class(d, "Descriptor", (1, 2, 3), "model/descriptor")
    cfg = {k: d[k] for k in ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "type_one_side",
                             "set_davg_zero", "activation_function", "precision", "trainable")}
    cfg.update(type="se_e2_a", exclude_types=[list(p) for p in d.get("exclude_types", [])], seed=None,
               env_protection=float(d.get("env_protection", d.get("env_mat", {}).get("protection", 0.0))))
    v = d["@variables"]
    params = {"davg": np.asarray(v["davg"]), "dstd": np.asarray(v["dstd"]),
              "embedding": collection_from_dict(d["embeddings"], 1 if cfg["type_one_side"] else 2, ntypes,
                                                "model/descriptor/embeddings", False)}
    if d.get("compress") is not None:  # DeePMD-kit's compressed model (@version 3): evaluated with its tables
        from .tabulate import compress_from_dict

        cfg["compress"], params["compress"] = compress_from_dict(d["compress"], ntypes if cfg["type_one_side"]
                                                                 else ntypes * ntypes)
    return cfg, params


# ------------------------------------------------------------------------------------------- math

def sections(cfg) -> list[int]:
    sec = [0]
    for s in cfg["sel"]:
        sec.append(sec[-1] + int(s))
    return sec


def _stat_rows(xp, table, centre_type):
    """davg/dstd rows of each centre: table (ntypes, nnei, 4), centre_type (nf, nloc) -> (nf, nloc, nnei, 4)."""
    nf, nloc = centre_type.shape
    rows = xp.take(table, xp.reshape(centre_type, (-1,)), axis=0)
    return xp.reshape(rows, (nf, nloc) + tuple(table.shape[1:]))


def forward(cfg, params, rij, pairs, blocks=None):
    """Descriptor of every local atom.

    rij: (nf, nloc, nnei, 3) neighbour minus centre (Å), in the descriptor precision, zero in empty slots.
    pairs: dict with ``nlist_mask`` (nf, nloc, nnei) bool, ``centre_type`` (nf, nloc) int,
        optional ``exclude_mask`` (nf, nloc, nnei) (0 for descriptor-excluded pairs).
    Returns ``D`` (nf, nloc, ng * axis_neuron) and a cache for :func:`vjp`.
    """
    xp = namespace(rij)
    ntypes = len(cfg["sel"])
    nnei = sum(cfg["sel"])
    m2 = cfg["axis_neuron"]
    centre_type = pairs["centre_type"]
    R, env_cache = env_mat(rij, pairs["nlist_mask"], cfg["rcut"], cfg["rcut_smth"], cfg["env_protection"])
    dstd = _stat_rows(xp, params["dstd"], centre_type)
    Rn = (R - _stat_rows(xp, params["davg"], centre_type)) / dstd
    excl = pairs.get("exclude_mask")
    if excl is not None:
        Rn = Rn * xp.astype(excl, Rn.dtype)[..., None]
    compute = compute_precision(cfg)
    sec = sections(cfg)
    widths = block_widths(blocks)
    A = None
    block_caches = []
    for tn in range(ntypes):
        Rt = Rn[:, :, sec[tn] : sec[tn + 1], :]

        def embed(tc, r, tn=tn):
            emb = embed_mod.embedding(cfg, params, tc, tn, compute)
            if emb is None:
                return None
            width = widths[tc][tn] if tc in widths else r.shape[2]
            share = None
            if tc in widths and pair_share.key("src", tc, tn) in pairs:
                share = tuple(pairs[pair_share.key(part, tc, tn)] for part in pair_share.PARTS)
                share += (embed_mod.column_rows(params, tc, sec, tn, width),)
            return embed_mod.embed_contract(emb, r, width, embed_mod.empty_rows(params, tc, sec, tn, width), share)

        if cfg["type_one_side"] and blocks is None:
            res = embed(0, Rt)
            At, cache = (None, None) if res is None else res
        else:
            At, cache = apply_by_type(embed, Rt, centre_type, ntypes, blocks)
        block_caches.append((At, cache))
        if At is not None:
            A = At if A is None else A + At
    A = A / nnei
    D = xp.matrix_transpose(A) @ A[..., :m2]
    nf, nloc = centre_type.shape
    return xp.reshape(D, (nf, nloc, -1)), (Rn, A, dstd, excl, env_cache, block_caches, centre_type)


def vjp(cfg, params, gD, cache, blocks=None):
    """Pull ``dE/dD`` (nf, nloc, ng * axis_neuron) back to ``dE/drij`` (nf, nloc, nnei, 3)."""
    xp = namespace(gD)
    Rn, A, dstd, excl, env_cache, block_caches, centre_type = cache
    ntypes = len(cfg["sel"])
    nnei = sum(cfg["sel"])
    m2 = cfg["axis_neuron"]
    ng = cfg["neuron"][-1]
    nf, nloc = gD.shape[0], gD.shape[1]
    gD = xp.reshape(gD, (nf, nloc, ng, m2))
    gA = A[..., :m2] @ xp.matrix_transpose(gD)  # (nf, nloc, 4, ng)
    gA_lead = A @ gD  # (nf, nloc, 4, m2)
    if m2 < ng:
        gA = gA + xp.concat([gA_lead, xp.zeros_like(gA[..., m2:])], axis=-1)
    else:
        gA = gA + gA_lead
    gA = gA / nnei
    sec = sections(cfg)
    parts = []
    for tn in range(ntypes):
        At, ecache = block_caches[tn]
        if At is None:
            parts.append(xp.zeros_like(Rn[:, :, sec[tn] : sec[tn + 1], :]))
        elif cfg["type_one_side"] and blocks is None:
            parts.append(embed_mod.embed_contract_vjp(gA, ecache))
        else:
            parts.append(vjp_by_type(lambda tc, g, c: embed_mod.embed_contract_vjp(g, c), gA, centre_type, ntypes,
                                     blocks, ecache))
    gRn = xp.concat(parts, axis=2)
    if excl is not None:
        gRn = gRn * xp.astype(excl, gRn.dtype)[..., None]
    return env_mat_vjp(gRn / dstd, env_cache)

