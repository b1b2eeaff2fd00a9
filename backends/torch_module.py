"""``TorchEnergyModel``: a ``torch.nn.Module`` view of an :class:`dpcore.EnergyModel`.

The module holds the model's parameter dict, key for key: network weights (``w``, ``b``, ``idt``)
are ``nn.Parameter`` (``requires_grad`` from the config's ``trainable`` flags), statistics
(``davg``, ``dstd``, ``out_bias``, ``out_std``, ``bias_atom_e``, ``fparam_*``, ``aparam_*``,
``case_embd``) are buffers.  ``state_dict()`` keys are the documented dict keys
(``descriptor.embedding.0.1.w``).  ``forward`` calls the same core function as every other backend
(:meth:`Backend.model_forward`) on that dict; the neighbour list is built host-side by
:func:`dpcore.infer.inputs.prepare`.  Analytic forces are differentiable w.r.t. the parameters, so a force
loss trains the networks; ``torch.func.functional_call`` works since parameters are read through
the module attributes at every call.
"""

from __future__ import annotations

import numpy as np
import torch

from dpcore.infer.inputs import prepare, unpermute
from dpcore.model.energy_model import EnergyModel

from . import get_backend

_NETWORK_LEAVES = ("w", "b", "idt")


class _Node(torch.nn.Module):
    """One level of the nested parameter dict."""


def _build(node: torch.nn.Module, tree: dict, backend, trainable: dict, path: tuple = ()) -> dict:
    """Register ``tree`` on ``node`` (sub-dicts as sub-modules); returns its skeleton (leaves None/"none").

    ``trainable``: top-level key ("descriptor", "fitting") -> requires_grad of its network weights.
    """
    skeleton = {}
    for key, value in tree.items():
        where = path + (key,)
        if isinstance(value, dict):
            child = _Node()
            node.add_module(key, child)
            skeleton[key] = _build(child, value, backend, trainable, where)
        elif value is None:
            skeleton[key] = "none"
        else:
            t = backend.asarray(np.asarray(value)).clone()
            if key in _NETWORK_LEAVES and ("embedding" in path or "nets" in path):
                node.register_parameter(key, torch.nn.Parameter(t, requires_grad=trainable.get(where[0], False)))
            else:
                node.register_buffer(key, t)
            skeleton[key] = None
    return skeleton


def _read(node: torch.nn.Module, skeleton: dict) -> dict:
    return {k: (_read(getattr(node, k), s) if isinstance(s, dict) else None if s == "none" else getattr(node, k))
            for k, s in skeleton.items()}


class TorchEnergyModel(torch.nn.Module):
    """``torch.nn.Module`` around an :class:`~dpcore.EnergyModel` (same parameters, same core function).

    ``force_mode``: "analytic" (core backward, default) or "autodiff" (``torch.autograd`` of the energy).
    """

    def __init__(self, model: EnergyModel, device=None, force_mode: str = "analytic"):
        super().__init__()
        self.backend = get_backend("torch", device)
        self.config = model.config
        self.model_def_script = model.model_def_script
        self.force_mode = force_mode
        trainable = {"descriptor": self.config["descriptor"].get("trainable", True),
                     "fitting": self.config["fitting_net"].get("trainable", True)}
        # per-layer lists of flags: all-or-nothing here
        trainable = {k: bool(all(v) if isinstance(v, (list, tuple)) else v) for k, v in trainable.items()}
        self._skeleton = _build(self, model.params, self.backend, trainable)

    def params(self) -> dict:
        """The nested parameter dict of tensors (the module's current parameters and buffers)."""
        return _read(self, self._skeleton)

    def forward(self, coord, atype, box=None, fparam=None, aparam=None, atomic_virial: bool = False) -> dict:
        """Energy model outputs for frames: coord (nf, natoms, 3) Å, atype (natoms,) or (nf, natoms),
        box (nf, 9) Å or None, fparam (nf, numb_fparam), aparam (nf, natoms, numb_aparam); tensors or NumPy.

        Returns tensors: energy (nf, 1) eV, atom_energy (nf, natoms, 1), force (nf, natoms, 3) eV/Å,
        virial (nf, 9) eV, mask (nf, natoms), and atom_virial (nf, natoms, 9) if ``atomic_virial``.
        Gradients flow to the parameters and to coord/box/fparam/aparam tensors.
        """
        be = self.backend
        host = [None if x is None else be.to_numpy(x) for x in (coord, box, fparam, aparam)]
        inputs, blocks, perm = prepare(self, host[0], be.to_numpy(atype) if isinstance(atype, torch.Tensor) else atype,
                                       *host[1:])
        inputs = be.tree_asarray(inputs)
        order = slice(None) if perm is None else torch.as_tensor(perm, device=be.device)
        for key, x in (("coord", coord), ("box", box), ("fparam", fparam), ("aparam", aparam)):
            if isinstance(x, torch.Tensor) and inputs.get(key) is not None:  # keep the caller's graph
                shape = tuple(inputs[key].shape)
                x = torch.broadcast_to(torch.reshape(be.asarray(x).to(torch.float64), (-1,) + shape[1:]), shape)
                inputs[key] = x[:, order] if key in ("coord", "aparam") else x
        out = be.model_forward(self.config, self.params(), inputs, blocks, atomic_virial=atomic_virial,
                               force_mode=self.force_mode)
        return unpermute(out, perm)

    def to_numpy_params(self) -> dict:
        """The current parameters as a nested dict of NumPy arrays (copies)."""
        return self.backend.tree_to_numpy(_map_detach(self.params()))

    def write_to(self, model: EnergyModel) -> EnergyModel:
        """Write the trained parameters back into ``model`` (NumPy); returns it."""
        model.set_params(self.to_numpy_params())
        return model

    def to_energy_model(self) -> EnergyModel:
        """A new :class:`~dpcore.EnergyModel` holding a NumPy copy of the current parameters."""
        return EnergyModel(self.config, self.to_numpy_params(), self.model_def_script)


def _map_detach(tree):
    if isinstance(tree, dict):
        return {k: _map_detach(v) for k, v in tree.items()}
    return tree.detach().clone() if isinstance(tree, torch.Tensor) else tree
