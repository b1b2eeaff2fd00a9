"""Energy fitting network ("ener", SPEC 5): per-type fitting nets on the descriptor (+ fparam, aparam, case embedding).

With ``mixed_types`` (set for a mixed-type descriptor such as DPA-1) one net ``nets["0"]`` serves every
type (SPEC_DPA1 7).  Parameters: ``{"nets": {"<t>": net}, "bias_atom_e": (ntypes, 1) float64,
"fparam_avg"/"fparam_inv_std": (numb_fparam,), "aparam_avg"/"aparam_inv_std": (numb_aparam,),
"case_embd": (dim_case_embd,)}`` (the last ones only when used).  ``cfg`` is the
``fitting_net`` section of the model config (normalised, SPEC 11.3).
Atomic energies in eV.
"""

from __future__ import annotations

from ..by_type import apply_by_type, vjp_by_type
from ..network import net_forward, net_vjp
from ..precision import compute_precision
from ..xp import namespace

TYPE = "ener"
ALIASES = ()
_STAT_KEYS = ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std", "case_embd")


# ------------------------------------------------------------------------------------------- definition
def args() -> list:
    """dargs arguments of the ``model.fitting_net`` section (DeePMD-kit 3.2 defaults and aliases)."""
    from typing import Optional

    from dargs import Argument

    def opt(*a, **k):
        return Argument(*a, optional=True, **k)

    return [
        opt("numb_fparam", int, default=0),
        opt("numb_aparam", int, default=0),
        opt("default_fparam", [list[float], None], default=None),
        opt("dim_case_embd", int, default=0),
        opt("neuron", list[int], default=[120, 120, 120], alias=["n_neuron"]),
        opt("activation_function", str, default="tanh"),
        opt("precision", str, default="default"),
        opt("resnet_dt", bool, default=True),
        opt("trainable", [list[bool], bool], default=True),
        opt("rcond", [float, None], default=None),
        opt("seed", [int, None], default=None),
        opt("atom_ener", list[Optional[float]], default=[]),
        opt("layer_name", list),
        opt("use_aparam_as_mask", bool, default=False),
    ]


def check(cfg: dict, type_map: list, loc: str = "model/fitting_net") -> None:
    """Rules of a normalised section that its types cannot express (ConfigError naming the key)."""
    from ..config.errors import check_act_prec, need

    nt = len(type_map)
    check_act_prec(cfg, loc)
    for k in ("numb_fparam", "numb_aparam", "dim_case_embd"):
        need(cfg[k] >= 0, f"{loc}/{k}", f"must be >= 0, got {cfg[k]}")
    if cfg["default_fparam"] is not None:
        need(len(cfg["default_fparam"]) == cfg["numb_fparam"], f"{loc}/default_fparam",
             f"has {len(cfg['default_fparam'])} values; expected numb_fparam = {cfg['numb_fparam']}")
    if isinstance(cfg["trainable"], list):
        need(len(cfg["trainable"]) == len(cfg["neuron"]) + 1, f"{loc}/trainable",
             f"a list needs len(neuron)+1 = {len(cfg['neuron']) + 1} entries, got {len(cfg['trainable'])}")
    need(len(cfg["atom_ener"]) <= nt, f"{loc}/atom_ener",
         f"has {len(cfg['atom_ener'])} entries; at most one per type ({nt})")
    need("layer_name" not in cfg, f"{loc}/layer_name",
         "shared fitting layers are a TensorFlow-only DeePMD-kit option; dpcore does not implement it")


def in_dim(cfg: dict, dim_descrpt: int) -> int:
    """Input width of the fitting nets: descriptor + fparam + aparam (unless a mask) + case embedding."""
    return (dim_descrpt + cfg["numb_fparam"] + (0 if cfg.get("use_aparam_as_mask") else cfg["numb_aparam"])
            + cfg.get("dim_case_embd", 0))


def init_params(cfg: dict, ntypes: int, dim_descrpt: int, seed=None) -> dict:
    """Fresh parameters (NumPy): nets from ``child_rng(seed, 1, t)``, zero bias, identity normalisation."""
    import numpy as np

    from ..network import child_rng, init_net
    from ..precision import precision_name

    fdt = precision_name(cfg["precision"])
    width = in_dim(cfg, dim_descrpt)
    nets = {str(t): init_net(child_rng(seed, 1, t), width, cfg["neuron"], 1, cfg["resnet_dt"], fdt)
            for t in range(1 if cfg.get("mixed_types") else ntypes)}
    params = {"nets": nets, "bias_atom_e": np.zeros((ntypes, 1))}
    for kind in ("fparam", "aparam"):
        n = cfg[f"numb_{kind}"]
        if n > 0:
            params[f"{kind}_avg"] = np.zeros(n, dtype=fdt)
            params[f"{kind}_inv_std"] = np.ones(n, dtype=fdt)
    if cfg.get("dim_case_embd", 0) > 0:
        params["case_embd"] = np.zeros(cfg["dim_case_embd"], dtype=fdt)
    return params


def trainable_mask(cfg: dict, params: dict) -> dict:
    """Fitting layer ``i`` follows ``trainable`` (a bool, or one bool per layer: ``len(neuron) + 1``);
    the bias and the fparam/aparam statistics are never trained."""
    tr = cfg.get("trainable", True)
    nlayers = len(cfg["neuron"]) + 1
    if isinstance(tr, bool):
        tr = [tr] * nlayers
    if len(tr) != nlayers:
        raise ValueError(f"model/fitting_net/trainable: {len(tr)} flags; expected one per layer ({nlayers})")
    mask = {k: False for k in params if k != "nets"}
    mask["nets"] = {t: {i: {n: bool(tr[int(i)]) for n in layer} for i, layer in net.items()}
                    for t, net in params["nets"].items()}
    return mask


def serialize(cfg: dict, params: dict, type_map: list, dim_descrpt: int, atom_exclude_types) -> dict:
    """DeePMD-kit's serialized ``ener`` fitting dict (``@version`` 4, SPEC 13.4)."""
    from ..network_dict import collection_to_dict

    ntypes = len(type_map)
    trainable = cfg.get("trainable", True)
    return {"@class": "Fitting", "type": "ener", "@version": 4, "var_name": "energy", "dim_out": 1, "ntypes": ntypes,
            "dim_descrpt": dim_descrpt, "mixed_types": bool(cfg.get("mixed_types")),
            "exclude_types": list(atom_exclude_types),
            "type_map": list(type_map), "atom_ener": list(cfg["atom_ener"]) if cfg.get("atom_ener") else None,
            "tot_ener_zero": False, "layer_name": None, "spin": None,
            "trainable": trainable if isinstance(trainable, list) else [bool(trainable)] * (len(cfg["neuron"]) + 1),
            **{k: cfg.get(k) for k in ("neuron", "resnet_dt", "numb_fparam", "numb_aparam", "dim_case_embd",
                                       "default_fparam", "rcond", "activation_function", "precision",
                                       "use_aparam_as_mask")},
            "nets": collection_to_dict(params["nets"], 0 if cfg.get("mixed_types") else 1, ntypes, "fitting_network",
                                       cfg, in_dim(cfg, dim_descrpt)),
            "@variables": {"bias_atom_e": params["bias_atom_e"],
                          **{k: params.get(k) for k in ("case_embd", *_STAT_KEYS[:4])}}}


def deserialize(d: dict, ntypes: int) -> tuple[dict, dict]:
    """``(cfg, params)`` of a serialized ``ener`` fitting dict (``@version`` 1-4; per-type nets only)."""
    import numpy as np

    from ..network_dict import check_class, collection_from_dict

    check_class(d, "Fitting", (1, 2, 3, 4), "model/fitting")
    if d.get("type") != "ener" or d.get("dim_out", 1) != 1:
        raise NotImplementedError(f"fitting type {d.get('type')!r} (dim_out={d.get('dim_out')}) is not "
                                  "supported (supported: 'ener')")
    cfg = {k: d.get(k, dflt) for k, dflt in (("numb_fparam", 0), ("numb_aparam", 0), ("default_fparam", None),
                                             ("dim_case_embd", 0), ("neuron", None), ("activation_function", "tanh"),
                                             ("precision", "default"), ("resnet_dt", True), ("trainable", True),
                                             ("rcond", None), ("use_aparam_as_mask", False))}
    cfg.update(type="ener", atom_ener=list(d.get("atom_ener") or []), seed=None)
    if d.get("mixed_types"):
        cfg["mixed_types"] = True
    v = d["@variables"]
    params = {"nets": collection_from_dict(d["nets"], 0 if cfg.get("mixed_types") else 1, ntypes, "model/fitting/nets",
                                           True),
              "bias_atom_e": np.asarray(v["bias_atom_e"], dtype=np.float64).reshape(ntypes, -1)}
    for key in _STAT_KEYS:
        if v.get(key) is not None:
            params[key] = np.ravel(np.asarray(v[key]))
    return cfg, params


# ------------------------------------------------------------------------------------------- math


def vacuum_types(cfg, ntypes: int) -> list[bool]:
    """Types whose zero-descriptor energy is subtracted (``atom_ener`` rule of SPEC 5.2)."""
    atom_ener = cfg.get("atom_ener") or []
    if not any(a is not None for a in atom_ener):
        return [False] * ntypes
    return [not (t < len(atom_ener) and atom_ener[t] is None) for t in range(ntypes)]


def _extra_inputs(cfg, params, D, fparam, aparam):
    """Normalised fparam (tiled over atoms), aparam and case embedding, in the fitting precision."""
    xp = namespace(D)
    nf, nloc = D.shape[0], D.shape[1]
    extra = []
    if cfg.get("numb_fparam", 0) > 0:
        if fparam is None:
            raise ValueError(f"this model needs fparam of shape (nframes, {cfg['numb_fparam']}) and has no default_fparam")
        fp = (xp.astype(fparam, D.dtype) - params["fparam_avg"]) * params["fparam_inv_std"]
        extra.append(xp.broadcast_to(fp[:, None, :], (nf, nloc, fp.shape[-1])))
    if cfg.get("numb_aparam", 0) > 0 and not cfg.get("use_aparam_as_mask", False):
        if aparam is None:
            raise ValueError(f"this model needs aparam of shape (nframes, natoms, {cfg['numb_aparam']})")
        extra.append((xp.astype(aparam, D.dtype) - params["aparam_avg"]) * params["aparam_inv_std"])
    if cfg.get("dim_case_embd", 0) > 0:
        ce = xp.astype(params["case_embd"], D.dtype)
        extra.append(xp.broadcast_to(ce, (nf, nloc, ce.shape[-1])))
    return extra


def forward(cfg, params, D, centre_type, fparam=None, aparam=None, blocks=None):
    """Atomic energies before the model's ``out_bias``.

    D: (nf, nloc, dim_descrpt) in the fitting precision; centre_type (nf, nloc) int;
    fparam (nf, numb_fparam); aparam (nf, nloc, numb_aparam).
    Returns ``e`` (nf, nloc, 1) in the fitting precision and a cache for :func:`vjp`.
    """
    xp = namespace(D)
    ntypes = params["bias_atom_e"].shape[0]
    extra = _extra_inputs(cfg, params, D, fparam, aparam)
    x = xp.concat([D] + extra, axis=-1) if extra else D
    nets = params["nets"]
    act, compute = cfg["activation_function"], compute_precision(cfg)

    def fit(t, xs):
        net = nets.get(str(t))
        return None if net is None else net_forward(net, xs, act, final_linear=True, compute=compute)

    if cfg.get("mixed_types"):  # one net for every type; atom_ener: F(0) subtracted for every atom (SPEC_DPA1 7)
        e, caches = fit(0, x)
        if any(vacuum_types(cfg, ntypes)):
            x0 = xp.concat([xp.zeros_like(D)] + extra, axis=-1) if extra else xp.zeros_like(D)
            e = e - fit(0, x0)[0]
    else:
        e, caches = apply_by_type(fit, x, centre_type, ntypes, blocks)
    vac = [False] * ntypes if cfg.get("mixed_types") else vacuum_types(cfg, ntypes)
    if any(vac):
        x0 = xp.concat([xp.zeros_like(D)] + extra, axis=-1) if extra else xp.zeros_like(D)
        e0, _ = apply_by_type(lambda t, xs: fit(t, xs) if vac[t] else (xp.zeros_like(xs[..., :1]), None), x0, centre_type, ntypes, blocks)
        e = e - e0
    bias = xp.take(xp.astype(params["bias_atom_e"], e.dtype), xp.reshape(centre_type, (-1,)), axis=0)
    e = e + xp.reshape(bias, (D.shape[0], D.shape[1], 1))
    return e, (caches, centre_type, D.shape[-1])


def vjp(cfg, params, ge, cache, blocks=None):
    """Pull ``dE/de`` (nf, nloc, 1) back to ``dE/dD`` (nf, nloc, dim_descrpt)."""
    caches, centre_type, dim_descrpt = cache
    ntypes = params["bias_atom_e"].shape[0]
    nets = params["nets"]
    if cfg.get("mixed_types"):
        return net_vjp(nets["0"], ge, caches, final_linear=True)[..., :dim_descrpt]
    gx = vjp_by_type(lambda t, g, c: net_vjp(nets[str(t)], g, c, final_linear=True), ge, centre_type, ntypes, blocks, caches)
    return gx[..., :dim_descrpt]
