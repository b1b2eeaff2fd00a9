"""``paddle.nn.Layer`` view of a :class:`dpcore.EnergyModel`: same parameter dict, same core function.

The nested parameter dict becomes a tree of sub-layers, so ``state_dict()`` keys are the documented
dpcore keys (``descriptor.embedding.0.1.w``, ``fitting.nets.0.2.b``, ``out_bias``, ...).
Trainable arrays (embedding nets unless ``descriptor.trainable`` is false; fitting-net layers per
``fitting_net.trainable``, a bool or one bool per layer) are parameters; statistics (``davg``, ``dstd``,
``bias_atom_e``, ``fparam_*``/``aparam_*``, ``case_embd``, ``out_bias``, ``out_std``) are buffers.

``forward`` does the host-side preparation of :func:`dpcore.infer.inputs.prepare` (neighbour list in NumPy:
coordinates are data, not differentiated) and then calls :func:`dpcore.model.energy.forward` or
``forward_autodiff`` on the Paddle tensors of this layer, so the outputs are differentiable with
respect to the parameters (forces included, in both force modes).
"""

from __future__ import annotations

import functools

import numpy as np

from .frameworks import load_framework as _load_framework

_load_framework("paddle")  # quiet, and refused where it would crash the process
import paddle  # noqa: E402

from dpcore.backends import get_backend
from dpcore.infer.inputs import prepare
from dpcore.model import energy

_PER_FRAME = ("energy", "virial")


def is_trainable(cfg: dict, path: tuple) -> bool:
    """Whether the parameter at ``path`` (tuple of dict keys) is trained, from the model config."""
    if path[:2] == ("descriptor", "embedding"):
        return bool(cfg["descriptor"].get("trainable", True))
    if path[:2] == ("fitting", "nets"):
        tr = cfg["fitting_net"].get("trainable", True)
        return bool(tr[int(path[3])] if isinstance(tr, (list, tuple)) else tr)
    return False


class _Group(paddle.nn.Layer):
    """One level of the parameter dict: sub-layers for sub-dicts, parameters/buffers for arrays."""

    def __init__(self, tree: dict, cfg: dict, path: tuple = ()):
        super().__init__()
        self._dpcore_keys = list(tree)
        for key, value in tree.items():
            key_path = path + (key,)
            if isinstance(value, dict):
                self.add_sublayer(key, _Group(value, cfg, key_path))
                continue
            arr = np.array(value, order="C")
            if is_trainable(cfg, key_path):
                p = self.create_parameter(list(arr.shape), dtype=str(arr.dtype),
                                          default_initializer=paddle.nn.initializer.Assign(arr))
                self.add_parameter(key, p)
            else:
                self.register_buffer(key, paddle.to_tensor(arr))

    def tree(self) -> dict:
        out = {}
        for key in self._dpcore_keys:
            v = getattr(self, key)
            out[key] = v.tree() if isinstance(v, _Group) else v
        return out


class PaddleEnergyModel(_Group):
    """A Paddle layer around an :class:`~dpcore.model.energy_model.EnergyModel`'s parameters.

    ``force_mode``: "analytic" (the core's hand-written backward) or "autodiff" (``paddle.grad`` of the
    energy, with ``create_graph`` when gradients are enabled so that force losses can be trained).
    """

    def __init__(self, model, force_mode: str = "analytic", device=None):
        if force_mode not in ("analytic", "autodiff"):
            raise ValueError(f"force_mode must be 'analytic' or 'autodiff', got {force_mode!r}")
        backend = get_backend("paddle", device)
        super().__init__(model.params, model.config)
        if backend.place is not None:
            self.to(device=backend.place)
        self.energy_model = model
        self.force_mode = force_mode
        self.backend = backend

    def params_dict(self) -> dict:
        """The nested parameter dict of the core, holding this layer's parameters and buffers."""
        return self.tree()

    def forward(self, coord, atype, box=None, fparam=None, aparam=None, atomic_virial: bool = False) -> dict:
        """Model outputs as Paddle tensors: energy (nf, 1) eV, force (nf, natoms, 3) eV/Å, virial (nf, 9) eV,
        atom_energy (nf, natoms, 1) eV, mask (nf, natoms) and atom_virial (nf, natoms, 9) if ``atomic_virial``.

        Inputs as in :meth:`EnergyModel.evaluate` (NumPy arrays or tensors; they are data, not differentiated).
        """
        host = [None if a is None else (a.numpy() if isinstance(a, paddle.Tensor) else np.asarray(a))
                for a in (coord, atype, box, fparam, aparam)]
        inputs, blocks, perm = prepare(self.energy_model, *host)
        be, cfg = self.backend, self.energy_model.config
        inputs, params = be.tree_asarray(inputs), self.params_dict()
        if self.force_mode == "analytic":
            out = energy.forward(cfg, params, inputs, blocks, atomic_virial=atomic_virial)
        else:
            create_graph = paddle.is_grad_enabled() and any(not p.stop_gradient for p in self.parameters())
            vg = functools.partial(be.value_and_grad, create_graph=create_graph)
            out = energy.forward_autodiff(cfg, params, inputs, vg, blocks, atomic_virial=atomic_virial)
        if perm is None:
            return out
        inv = be.asarray(np.argsort(perm))
        nloc = perm.size
        return {k: (paddle.index_select(v, inv, axis=1) if k not in _PER_FRAME and v.ndim >= 2 and v.shape[1] == nloc
                    else v) for k, v in out.items()}

    def write_back(self, model=None):
        """Copy the current parameters and buffers into ``model`` (default: the wrapped EnergyModel) as NumPy."""
        model = self.energy_model if model is None else model
        model.set_params(self.backend.tree_to_numpy(self.params_dict()))
        return model


__all__ = ["PaddleEnergyModel", "is_trainable"]
