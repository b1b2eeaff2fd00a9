"""One model call on a chunk of centre atoms: the chunk's atomic energies and its share of forces and virials.

A chunk holds ``nc`` centres of a frame and every atom of the frame (``coord`` (nf, natoms, 3)); its pair data
(:func:`dpcore.pairs.pair_inputs` with ``centres``) has ``centre_index`` (nf, nc) and neighbour owners indexing the
``natoms`` atoms.  The energy is a sum over centres, ``E = sum_chunks E_c``, so every derivative is a sum over
chunks too: each call returns its ``E_c``'s force on *all* atoms (nf, natoms, 3), virial (nf, 9) and per-atom
virial (nf, natoms, 9), and the host adds them up (:mod:`dpcore.infer.chunked`).  The math is the model's
(:func:`dpcore.model.energy.atomic_energy` and its backward); only the reduction from pair gradients to atoms
differs from :func:`dpcore.model.energy.pair_grad_outputs`, which assumes the centres are all the atoms.

The function is compiled where the registry says model forwards are (:meth:`Backend.compiled`), once per
(model config, type blocks, modes) and input shapes: chunks of one system share their shapes.
"""

from __future__ import annotations


from .. import pair_share
from ..model import energy
from ..pairs import pair_vectors
from ..xp import namespace, scatter_to_atoms

def pair_sums(g, rij, inputs, natoms: int, atomic_virial: bool = False) -> dict:
    """Force (nf, natoms, 3) eV/Å, virial (nf, 9) eV and, if ``atomic_virial``, atom_virial (nf, natoms, 9) eV of
    a chunk from ``g = dE_c/dr_ij`` (nf, nc, nnei, 3): ``F_i = sum_(i centre) g - sum_(i owner) g`` and the pair
    virials ``-g ⊗ r_ij`` on the neighbour's owner (SPEC 6.4)."""
    xp = namespace(g)
    nf, nc, nnei, _ = g.shape
    owner = xp.reshape(inputs["nei_owner"], (nf, nc * nnei))
    force = scatter_to_atoms(xp, xp.sum(g, axis=2), inputs["centre_index"], natoms) - scatter_to_atoms(
        xp, xp.reshape(g, (nf, nc * nnei, 3)), owner, natoms)
    pair_w = -(g[..., :, None] * rij[..., None, :])  # (nf, nc, nnei, 3, 3): [k, d] = -g_k r_d
    out = {"force": force, "virial": xp.reshape(xp.sum(pair_w, axis=(1, 2)), (nf, 9))}
    if atomic_virial:
        out["atom_virial"] = scatter_to_atoms(xp, xp.reshape(pair_w, (nf, nc * nnei, 9)), owner, natoms)
    return out


def _forward(backend, cfg, params, inputs, blocks=None, atomic_virial=False, force_mode="analytic"):
    """atom_energy (nf, nc) eV of the chunk's centres (masked), force, virial, atom_virial as :func:`pair_sums`."""
    coord, box = inputs["coord"], inputs.get("box")
    xp = namespace(coord)
    natoms = coord.shape[1]

    def energy_of_pairs(rij):
        e, _ = energy.atomic_energy(cfg, params, rij, inputs, blocks)
        return xp.sum(e)

    if force_mode == "analytic":
        rij = pair_vectors(coord, box, inputs)
        e, cache = energy.atomic_energy(cfg, params, rij, inputs, blocks)
        out = pair_sums(energy.atomic_energy_vjp(cfg, params, cache, blocks), rij, inputs, natoms, atomic_virial)
        out["atom_energy"] = e
        return out

    # autodiff: force = -dE_c/dcoord, W = -(dE_c/dcoord^T coord + dE_c/dbox^T box), as energy.forward_autodiff
    inputs = pair_share.drop(inputs)
    def total(c, b=None):
        e, _ = energy.atomic_energy(cfg, params, pair_vectors(c, b, inputs), inputs, blocks)
        return xp.sum(e), e

    args = (coord,) if box is None else (coord, box)
    (_, e), grads = backend.value_and_grad(total, tuple(range(len(args))), has_aux=True)(*args)
    w = sum(xp.matrix_transpose(g) @ a for g, a in zip(grads, args))
    out = {"atom_energy": e, "force": -grads[0], "virial": xp.reshape(-w, (coord.shape[0], 9))}
    if atomic_virial:
        rij = pair_vectors(coord, box, inputs)
        _, (g,) = backend.value_and_grad(energy_of_pairs, (0,))(rij)
        out["atom_virial"] = pair_sums(g, rij, inputs, natoms, True)["atom_virial"]
    return out


def chunk_forward(backend, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False,
                  force_mode: str = "analytic") -> dict:
    """The chunk's outputs on ``backend`` (an adapter object): atom_energy (nf, nc), force (nf, natoms, 3),
    virial (nf, 9), atom_virial (nf, natoms, 9) if ``atomic_virial``; framework arrays.

    ``cfg``/``params``: an energy model (a spin model's 2n-type backbone); ``inputs``: coord, box, fparam, aparam
    and the chunk's pair data (with ``centre_index``); ``blocks``: type blocks of the chunk's centres.
    """
    if force_mode not in ("analytic", "autodiff"):
        raise ValueError(f"force_mode must be 'analytic' or 'autodiff', got {force_mode!r}")
    return backend.compiled("chunk", _forward, cfg, blocks=blocks, atomic_virial=atomic_virial,
                            force_mode=force_mode)(params, inputs)
