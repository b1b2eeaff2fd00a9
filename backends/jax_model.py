"""A pure-function JAX view of an :class:`dpcore.EnergyModel` for ``jax.jit`` / ``jax.grad``.

    params, fn = energy_fn(model)
    nbr = neighbors(model, coord, atype, box)          # host side (NumPy neighbour list)
    out = jax.jit(fn)(params, coord, box, nbr)         # energy, atom_energy, force, virial, mask

``params`` is the model's parameter dict as a pytree of ``jax.Array`` (same keys);
``fn(params, coord, box, nbr, fparam=None, aparam=None)`` calls the same core function as every
backend.  ``nbr`` (:class:`Neighbors`) is a pytree whose leaves are the integer/shift pair arrays
and whose static part is the type blocks and the atom permutation, so ``jax.jit`` recompiles only
when the composition changes.  The pair data is valid while no atom crosses ``rcut`` (rebuild it,
or add a skin to ``rcut`` yourself, as in an MD neighbour list).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dpcore.infer.inputs import prepare, unpermute

from . import get_backend

_PAIR_KEYS = ("nlist_mask", "nei_owner", "pair_shift", "nei_type", "centre_type", "atom_mask", "exclude_mask")


@jax.tree_util.register_pytree_node_class
class Neighbors:
    """Host-built pair data: ``pairs`` (dict of arrays, the pytree leaves), ``blocks`` and ``perm`` (static)."""

    def __init__(self, pairs: dict, blocks=None, perm=None):
        self.pairs, self.blocks, self.perm = pairs, blocks, perm

    def tree_flatten(self):
        return (self.pairs,), (self.blocks, self.perm)

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(children[0], *static)


def neighbors(model, coord, atype, box=None, device=None) -> Neighbors:
    """Neighbour data of frames (coord (nf, natoms, 3) Å, atype (natoms,) or (nf, natoms), box (nf, 9) Å or None)."""
    f = model.config["fitting_net"]
    coord = np.asarray(coord, dtype=np.float64)
    nf = coord.shape[0] if coord.ndim == 3 else 1
    aparam = np.zeros((nf, np.shape(atype)[-1], f["numb_aparam"])) if f["numb_aparam"] > 0 else None
    inputs, blocks, perm = prepare(model, coord, atype, None if box is None else np.asarray(box), None, aparam)
    be = get_backend("jax", device)
    pairs = {k: be.asarray(inputs[k]) for k in _PAIR_KEYS if k in inputs}
    return Neighbors(pairs, blocks, None if perm is None else tuple(int(i) for i in perm))


def energy_fn(model, *, force_mode: str = "analytic", atomic_virial: bool = False, device=None):
    """``(params, fn)``: the parameter pytree and ``fn(params, coord, box, nbr, fparam=None, aparam=None) -> dict``.

    ``fn`` is pure (jit/grad/vmap-able in ``params``, ``coord``, ``box``, ``fparam``, ``aparam``); outputs as
    :meth:`dpcore.EnergyModel.evaluate` (jax arrays, atoms in the caller's order).
    """
    be = get_backend("jax", device)
    cfg = model.config
    params = be.tree_asarray(model.params)

    def fn(params, coord, box, nbr: Neighbors, fparam=None, aparam=None):
        nf, nloc = nbr.pairs["centre_type"].shape
        perm = None if nbr.perm is None else np.asarray(nbr.perm)
        coord = jnp.reshape(jnp.asarray(coord, dtype=jnp.float64), (nf, nloc, 3))
        inputs = dict(nbr.pairs)
        inputs["coord"] = coord if perm is None else coord[:, perm]
        inputs["box"] = None if box is None else jnp.broadcast_to(jnp.reshape(jnp.asarray(box, dtype=jnp.float64), (-1, 3, 3)), (nf, 3, 3))
        if fparam is not None:
            fparam = jnp.asarray(fparam, dtype=jnp.float64)
            inputs["fparam"] = jnp.broadcast_to(jnp.reshape(fparam, (-1, fparam.shape[-1])), (nf, fparam.shape[-1]))
        if aparam is not None:
            aparam = jnp.reshape(jnp.asarray(aparam, dtype=jnp.float64), (nf, nloc, -1))
            inputs["aparam"] = aparam if perm is None else aparam[:, perm]
        out = be.model_forward(cfg, params, inputs, nbr.blocks, atomic_virial=atomic_virial, force_mode=force_mode)
        return unpermute(out, perm)

    return params, fn


def params_to_numpy(params) -> dict:
    """A JAX parameter pytree as a nested dict of NumPy arrays (to write back with ``EnergyModel.set_params``)."""
    return jax.tree_util.tree_map(np.asarray, params)
