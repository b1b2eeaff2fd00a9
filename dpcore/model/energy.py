"""The energy model as pure functions (SPEC 6): atomic energies, energy, forces, virials.

``cfg`` is the normalised ``model`` section of input.json; ``params`` the
nested dict ``{"descriptor": ..., "fitting": ..., "out_bias": (ntypes,) float64}``.
``inputs`` holds ``coord`` (nf, nloc, 3) Å, ``box`` (nf, 3, 3) Å or None,
optional ``fparam``/``aparam``, and the pair data of :func:`dpcore.pairs.pair_inputs`.

Derivatives are analytic: ``dE/dr_ij`` comes from the hand-written backward of
fitting net -> descriptor -> embedding net -> environment matrix, and

    force_i  = sum_k g_ik - sum_{(c,k): owner(c,k) = i} g_ck
    virial   = - sum_pairs g ⊗ r_ij                  (index 3k+d, k = force component)
    av_owner = - sum_pairs g ⊗ r_ij  on the neighbour's owner  (SPEC 6.4)

with ``g = dE/dr_ij``.  Energies and virials are float64, networks run in
the configured precision (SPEC 6.6).
"""

from __future__ import annotations

from .. import pair_share
from ..descriptor import get_descriptor
from ..fitting import get_fitting
from ..pairs import pair_vectors
from ..precision import dtype_of
from .init import fitting_config
from ..xp import device_of, namespace, scatter_to_atoms


def atomic_energy(cfg, params, rij, inputs, blocks=None):
    """Masked atomic energies e (nf, nloc) float64 (eV) and a cache for :func:`atomic_energy_vjp`.

    rij: (nf, nloc, nnei, 3) float64 pair vectors (Å) from :func:`dpcore.pairs.pair_vectors`.
    """
    xp = namespace(rij)
    dcfg, fcfg = cfg["descriptor"], fitting_config(cfg)
    ddt, fdt = dtype_of(xp, dcfg["precision"]), dtype_of(xp, fcfg["precision"])
    D, dcache = get_descriptor(dcfg["type"]).forward(dcfg, params["descriptor"], xp.astype(rij, ddt), inputs, blocks)
    fparam = inputs.get("fparam")
    if fparam is None and fcfg.get("numb_fparam", 0) > 0 and fcfg.get("default_fparam") is not None:
        fparam = xp.broadcast_to(xp.asarray(fcfg["default_fparam"], dtype=fdt, device=device_of(xp, rij)), (rij.shape[0], fcfg["numb_fparam"]))
    e, fcache = get_fitting(fcfg.get("type", "ener")).forward(fcfg, params["fitting"], xp.astype(D, fdt), inputs["centre_type"],
                                fparam, inputs.get("aparam"), blocks)
    e = xp.astype(e[..., 0], xp.float64)
    out_bias = xp.take(params["out_bias"], xp.reshape(inputs["centre_type"], (-1,)), axis=0)
    e = e + xp.reshape(out_bias, e.shape)
    maskf = xp.astype(inputs["atom_mask"], xp.float64)
    return e * maskf, (dcache, fcache, maskf, ddt, fdt)


def atomic_energy_vjp(cfg, params, cache, blocks=None):
    """``g = dE/dr_ij`` (nf, nloc, nnei, 3) float64 for ``E = sum of masked atomic energies``."""
    dcache, fcache, maskf, ddt, fdt = cache
    xp = namespace(maskf)
    ge = xp.astype(maskf, fdt)[..., None]
    dcfg, fcfg = cfg["descriptor"], fitting_config(cfg)
    gD = get_fitting(fcfg.get("type", "ener")).vjp(fcfg, params["fitting"], ge, fcache, blocks)
    g = get_descriptor(dcfg["type"]).vjp(dcfg, params["descriptor"], xp.astype(gD, ddt), dcache, blocks)
    return xp.astype(g, xp.float64)


def pair_grad_outputs(g, rij, inputs, atomic_virial: bool = False):
    """Forces (nf, nloc, 3), virial (nf, 9) and optionally atom_virial (nf, nloc, 9) from g = dE/dr_ij."""
    xp = namespace(g)
    nf, nloc, nnei, _ = g.shape
    force = xp.sum(g, axis=2) - scatter_to_atoms(
        xp, xp.reshape(g, (nf, nloc * nnei, 3)), xp.reshape(inputs["nei_owner"], (nf, nloc * nnei)), nloc)
    pair_w = -(g[..., :, None] * rij[..., None, :])  # (nf, nloc, nnei, 3, 3): [k, d] = -g_k r_d
    out = {"force": force, "virial": xp.reshape(xp.sum(pair_w, axis=(1, 2)), (nf, 9))}
    if atomic_virial:
        out["atom_virial"] = scatter_to_atoms(
            xp, xp.reshape(pair_w, (nf, nloc * nnei, 9)), xp.reshape(inputs["nei_owner"], (nf, nloc * nnei)), nloc)
    return out


def forward(cfg, params, inputs, blocks=None, *, do_force: bool = True, atomic_virial: bool = False, pair_grad=None):
    """Full model output dict (SPEC 6.5): atom_energy (nf, nloc, 1), energy (nf, 1), force, virial,
    atom_virial (if requested), mask (nf, nloc) int32.

    ``pair_grad(rij) -> dE/dr_ij``: optional autodiff replacement of the analytic backward.
    """
    coord = inputs["coord"]
    xp = namespace(coord)
    rij = pair_vectors(coord, inputs.get("box"), inputs)
    e, cache = atomic_energy(cfg, params, rij, inputs, blocks)
    out = {"atom_energy": e[..., None], "energy": xp.sum(e, axis=1, keepdims=True),
           "mask": xp.astype(inputs["atom_mask"], xp.int32)}
    if do_force or atomic_virial:
        g = atomic_energy_vjp(cfg, params, cache, blocks) if pair_grad is None else pair_grad(rij)
        out.update(pair_grad_outputs(g, rij, inputs, atomic_virial))
    return out


def total_energy(cfg, params, inputs, coord, box, blocks=None):
    """Scalar sum of all frames' energies as a function of coord (nf, nloc, 3) and box (nf, 3, 3) (for autodiff)."""
    xp = namespace(coord)
    e, _ = atomic_energy(cfg, params, pair_vectors(coord, box, inputs), inputs, blocks)
    return xp.sum(e)


def forward_autodiff(cfg, params, inputs, value_and_grad, blocks=None, *, atomic_virial: bool = False):
    """Model outputs with derivatives by the backend's autodiff instead of the analytic backward.

    ``value_and_grad(f, argnums)(*args) -> (f(*args), grads)`` (JAX semantics, tuple ``argnums``).
    Forces and virial come from differentiating the energy w.r.t. the coordinates and the cell:
    ``force = -dE/dcoord``, ``W = -(dE/dcoord^T coord + dE/dbox^T box)`` (deformation r -> r(I+eps),
    box -> box(I+eps)); the per-atom virial from ``dE/dr_ij`` (autodiff w.r.t. the pair vectors).
    """
    inputs = pair_share.drop(inputs)  # differentiated slot by slot: shared inputs would move per-slot gradients
    coord, box = inputs["coord"], inputs.get("box")
    xp = namespace(coord)
    out = forward(cfg, params, inputs, blocks, do_force=False)
    nf = coord.shape[0]
    if box is None:
        _, (gc,) = value_and_grad(lambda c: total_energy(cfg, params, inputs, c, None, blocks), (0,))(coord)
        w = xp.matrix_transpose(gc) @ coord
    else:
        _, (gc, gb) = value_and_grad(lambda c, b: total_energy(cfg, params, inputs, c, b, blocks), (0, 1))(coord, box)
        w = xp.matrix_transpose(gc) @ coord + xp.matrix_transpose(gb) @ box
    out["force"] = -gc
    out["virial"] = xp.reshape(-w, (nf, 9))
    if atomic_virial:
        rij = pair_vectors(coord, box, inputs)

        def energy_of_pairs(r):
            e, _ = atomic_energy(cfg, params, r, inputs, blocks)
            return xp.sum(e)

        _, (g,) = value_and_grad(energy_of_pairs, (0,))(rij)
        out["atom_virial"] = pair_grad_outputs(g, rij, inputs, atomic_virial=True)["atom_virial"]
    return out
