"""Energy fitting network (SPEC 5): per-type fitting nets on the descriptor (+ fparam, aparam, case embedding).

Parameters: ``{"nets": {"<t>": net}, "bias_atom_e": (ntypes, 1) float64,
"fparam_avg"/"fparam_inv_std": (numb_fparam,), "aparam_avg"/"aparam_inv_std": (numb_aparam,),
"case_embd": (dim_case_embd,)}`` (the last ones only when used).  ``cfg`` is the
``fitting_net`` section of the model config (normalised, SPEC 11.3).
Atomic energies in eV.
"""

from __future__ import annotations

from ..by_type import apply_by_type, vjp_by_type
from ..network import net_forward, net_vjp
from ..xp import namespace


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
    act = cfg["activation_function"]

    def fit(t, xs):
        net = nets.get(str(t))
        return None if net is None else net_forward(net, xs, act, final_linear=True)

    e, caches = apply_by_type(fit, x, centre_type, ntypes, blocks)
    vac = vacuum_types(cfg, ntypes)
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
    gx = vjp_by_type(lambda t, g, c: net_vjp(nets[str(t)], g, c, final_linear=True), ge, centre_type, ntypes, blocks, caches)
    return gx[..., :dim_descrpt]
