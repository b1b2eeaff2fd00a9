"""The "deepspin" spin energy model as pure functions (SPEC 7.1): virtual atoms, energy, forces, virials.

Every local atom ``i`` (position ``r_i`` Å, spin ``s_i`` μB) gets a virtual partner at

    r_v,i = r_i + vs_i * s_i          vs_i = virtual_scale_mask[t_i]  (0 for non-magnetic and padding atoms)

of type ``t_i + n``.  The backbone energy model (:mod:`dpcore.model.energy`, ``cfg``/``params`` of the
2n-type backbone) then runs on the 2·nloc-atom system ``coord' = [r | r_v]`` (reals first, virtuals in
the same order); virtual and placeholder atoms are centres with zero energy (``atom_exclude_types``),
placeholder pairs are excluded from the neighbour list.

``inputs`` holds ``coord`` (nf, nloc, 3) Å, ``spin`` (nf, nloc, 3), ``box`` (nf, 3, 3) Å or None,
``virtual_scale`` (nf, nloc) float64 (vs_i per atom), optional ``fparam`` / ``aparam`` (aparam of the
2·nloc atoms, zeros for the virtual ones) and the pair data of :func:`dpcore.pairs.pair_inputs` built on
the 2·nloc atoms (``nei_owner`` indexes 0..2·nloc-1).  The host side is
:meth:`dpcore.model.spin_model.SpinEnergyModel.prepare`.

Derivatives.  With ``g = dE/dr'_jk`` of the backbone pairs, :func:`dpcore.model.energy.pair_grad_outputs`
gives the backbone forces ``F' = -dE/dcoord'`` (nf, 2nloc, 3), the backbone virial
``W' = -sum_pairs g ⊗ r'`` and per-atom virials ``av'`` (pair terms on the neighbour's owner).  Then

    force       = F'_r + F'_v                             ( = -dE/dr at fixed spin, chain rule through r_v)
    force_mag   = vs * F'_v                               ( = -dE/ds )
    virial      = W' + sum_i F'_v,i ⊗ corr_i,   corr_i = -vs_i s_i          (index 3k+d, k = force component)
    atom_virial = av'_r,i + av'_v,i + F'_v,i ⊗ corr_i

Virial derivation (spins held fixed): under ``r -> r(I+e)``, ``box -> box(I+e)``, ``s`` fixed, the
virtual atoms move to ``r_v(I+e) + corr e`` (since ``r_v = r + vs s``).  ``W'`` is ``-dE/de`` for the
homogeneous deformation of the whole 2·nloc system (every pair vector ``r' -> r'(I+e)``); the extra
displacement ``corr e`` of the virtual atoms adds ``-sum_i (dE/dr_v,i)_k corr_i,d = sum_i F'_v,i,k corr_i,d``
to ``W[k, d] = -dE/de_dk``.  The result is not symmetric.  The per-atom split keeps the backbone's
convention (SPEC 6.4) and gives each atom its virtual partner's share, so ``sum_i atom_virial_i = virial``.
"""

from __future__ import annotations

from .. import pair_share
from ..pairs import pair_vectors
from ..xp import namespace
from . import energy


def virtual_coord(coord, spin, virtual_scale):
    """coord' (nf, 2*nloc, 3) = [r | r + vs * s] from coord, spin (nf, nloc, 3) and vs (nf, nloc)."""
    xp = namespace(coord)
    vs = xp.astype(virtual_scale, coord.dtype)[..., None]
    return xp.concat([coord, coord + vs * xp.astype(spin, coord.dtype)], axis=1)


def _pair_vectors(inputs, coord, spin, box):
    return pair_vectors(virtual_coord(coord, spin, inputs["virtual_scale"]), box, inputs)


def fold_outputs(grad_out: dict, spin, virtual_scale, atomic_virial: bool = False) -> dict:
    """Spin outputs from the backbone's 2·nloc-atom force (nf, 2nloc, 3), virial (nf, 9) and, if
    ``atomic_virial``, atom_virial (nf, 2nloc, 9): force, force_mag (nf, nloc, 3), virial (nf, 9),
    atom_virial (nf, nloc, 9)."""
    F = grad_out["force"]
    xp = namespace(F)
    nf, nloc = spin.shape[0], spin.shape[1]
    vs = xp.astype(virtual_scale, F.dtype)[..., None]
    Fr, Fv = F[:, :nloc, :], F[:, nloc:, :]
    corr = -(vs * xp.astype(spin, F.dtype))
    corr_w = Fv[..., :, None] * corr[..., None, :]  # (nf, nloc, 3, 3): [k, d] = F'_v,k corr_d
    out = {"force": Fr + Fv, "force_mag": Fv * vs,
           "virial": grad_out["virial"] + xp.reshape(xp.sum(corr_w, axis=1), (nf, 9))}
    if atomic_virial:
        av = grad_out["atom_virial"]
        out["atom_virial"] = av[:, :nloc, :] + av[:, nloc:, :] + xp.reshape(corr_w, (nf, nloc, 9))
    return out


def _energy_outputs(e, inputs, nloc):
    xp = namespace(e)
    return {"atom_energy": e[:, :nloc, None], "energy": xp.sum(e, axis=1, keepdims=True),
            "mask": xp.astype(inputs["atom_mask"][:, :nloc], xp.int32),
            "mask_mag": (inputs["virtual_scale"] > 0.0)[..., None]}


def forward(cfg, params, inputs, blocks=None, *, do_force: bool = True, atomic_virial: bool = False):
    """Spin-model outputs with the core's analytic derivatives: atom_energy (nf, nloc, 1) eV, energy (nf, 1)
    eV, force (nf, nloc, 3) eV/Å, force_mag (nf, nloc, 3) eV/μB, virial (nf, 9) eV, atom_virial
    (nf, nloc, 9) eV (if requested), mask (nf, nloc) int32, mask_mag (nf, nloc, 1) bool.

    ``cfg``/``params``: the 2n-type backbone; ``blocks``: type blocks of the 2·nloc atoms or None.
    """
    coord, spin = inputs["coord"], inputs["spin"]
    nloc = coord.shape[1]
    rij = _pair_vectors(inputs, coord, spin, inputs.get("box"))
    e, cache = energy.atomic_energy(cfg, params, rij, inputs, blocks)
    out = _energy_outputs(e, inputs, nloc)
    if do_force or atomic_virial:
        g = energy.atomic_energy_vjp(cfg, params, cache, blocks)
        grad_out = energy.pair_grad_outputs(g, rij, inputs, atomic_virial)
        out.update(fold_outputs(grad_out, spin, inputs["virtual_scale"], atomic_virial))
    return out


def total_energy(cfg, params, inputs, coord, spin, box, blocks=None):
    """Scalar sum of all frames' energies as a function of coord, spin (nf, nloc, 3) and box (for autodiff)."""
    xp = namespace(coord)
    e, _ = energy.atomic_energy(cfg, params, _pair_vectors(inputs, coord, spin, box), inputs, blocks)
    return xp.sum(e)


def forward_autodiff(cfg, params, inputs, value_and_grad, blocks=None, *, atomic_virial: bool = False):
    """The outputs of :func:`forward` with derivatives by the backend's autodiff of the energy.

    ``value_and_grad(f, argnums)(*args)`` has JAX semantics.  ``force = -dE/dcoord``,
    ``force_mag = -dE/dspin``, ``W = -(dE/dcoord^T coord + dE/dbox^T box)`` (deformation of positions and
    cell, spins fixed); the per-atom virial from autodiff of the energy w.r.t. the backbone pair vectors,
    folded as in :func:`fold_outputs`.
    """
    inputs = pair_share.drop(inputs)  # differentiated slot by slot (see energy.forward_autodiff)
    coord, spin, box = inputs["coord"], inputs["spin"], inputs.get("box")
    xp = namespace(coord)
    nf, nloc = coord.shape[0], coord.shape[1]
    out = forward(cfg, params, inputs, blocks, do_force=False)
    if box is None:
        _, (gc, gs) = value_and_grad(lambda c, s: total_energy(cfg, params, inputs, c, s, None, blocks),
                                     (0, 1))(coord, spin)
        w = xp.matrix_transpose(gc) @ coord
    else:
        _, (gc, gs, gb) = value_and_grad(lambda c, s, b: total_energy(cfg, params, inputs, c, s, b, blocks),
                                         (0, 1, 2))(coord, spin, box)
        w = xp.matrix_transpose(gc) @ coord + xp.matrix_transpose(gb) @ box
    out["force"] = -gc
    out["force_mag"] = -gs
    out["virial"] = xp.reshape(-w, (nf, 9))
    if atomic_virial:
        rij = _pair_vectors(inputs, coord, spin, box)

        def energy_of_pairs(r):
            e, _ = energy.atomic_energy(cfg, params, r, inputs, blocks)
            return xp.sum(e)

        _, (g,) = value_and_grad(energy_of_pairs, (0,))(rij)
        grad_out = energy.pair_grad_outputs(g, rij, inputs, atomic_virial=True)
        out["atom_virial"] = fold_outputs(grad_out, spin, inputs["virtual_scale"], True)["atom_virial"]
    return out
