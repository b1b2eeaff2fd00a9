"""``TFEnergyModel``: a ``tf.Module`` view of a :class:`dpcore.EnergyModel` (same core function, TF variables).

The parameter dict becomes a nested dict of ``tf.Variable`` with the same keys (names are the dotted
paths, e.g. ``descriptor.embedding.0.1.w``).  Network weights (``w``, ``b``, ``idt``) are trainable,
following the config's ``trainable`` flags (descriptor: one flag; fitting net: one flag or one per
layer); statistics (``davg``, ``dstd``, ``bias_atom_e``, ``out_bias``, ``out_std``, fparam/aparam
normalisation, ``case_embd``) are non-trainable variables.

``model(coord, atype, box)`` runs the host-side neighbour list through ``tf.numpy_function`` (index
data only: gradients flow through ``coord`` and ``box`` inside the core), so the call works eagerly
and inside ``tf.function`` with static shapes.  Atoms are not reordered by type (``blocks=None``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .frameworks import load_framework as _load_framework

_load_framework("tensorflow")  # quiet, and refused where it would crash the process
import tensorflow as tf  # noqa: E402

from dpcore.descriptor import get_descriptor
from dpcore.model import energy
from dpcore.nlist import build_neighbor_list
from dpcore.pairs import pair_inputs

from . import get_backend

_STAT_KEYS = ("davg", "dstd", "bias_atom_e", "out_bias", "out_std", "fparam_avg", "fparam_inv_std",
              "aparam_avg", "aparam_inv_std", "case_embd")


def _is_trainable(cfg, path: tuple) -> bool:
    if path[-1] in _STAT_KEYS:
        return False
    if path[:2] == ("descriptor", "embedding"):
        return bool(cfg["descriptor"].get("trainable", True))
    if path[:2] == ("fitting", "nets"):
        flag = cfg["fitting_net"].get("trainable", True)
        return bool(flag[int(path[3])] if isinstance(flag, list) else flag)
    return False


def _to_variables(cfg, tree, path=()):
    if isinstance(tree, Mapping):
        return {k: _to_variables(cfg, v, path + (k,)) for k, v in tree.items()}
    return tf.Variable(np.asarray(tree), trainable=_is_trainable(cfg, path), name=".".join(path))


def _read(tree):
    """Plain nested dict of tensors (current variable values, recorded by any active tape)."""
    if isinstance(tree, Mapping):
        return {k: _read(tree[k]) for k in tree}
    return tf.convert_to_tensor(tree)


class TFEnergyModel(tf.Module):
    """tf.Module view of ``model`` (an :class:`~dpcore.model.energy_model.EnergyModel`).

    ``force_mode``: "analytic" (core backward, default) or "autodiff" (``tf.GradientTape`` of the energy);
    ``atomic_virial``: also return ``atom_virial`` (nf, nloc, 9) eV.
    """

    def __init__(self, model, force_mode: str = "analytic", atomic_virial: bool = False, device=None, name=None):
        super().__init__(name=name or "tf_energy_model")
        self._backend = get_backend("tensorflow", device)  # registers the shim namespace
        self._source = model  # not a trackable: config and the model written back to
        self.force_mode = force_mode
        self.atomic_virial = atomic_virial
        with tf.device(self._backend.tf_device or ""):
            self.params = _to_variables(model.config, model.params)

    @property
    def config(self) -> dict:
        return self._source.config

    def param_tensors(self) -> dict:
        """The parameter dict (plain nested dict of tensors) for the core functions."""
        return _read(self.params)

    def numpy_params(self) -> dict:
        """Current parameters as a nested dict of NumPy arrays (dtypes kept)."""
        return self._backend.tree_to_numpy(self.param_tensors())

    def write_back(self, model=None):
        """Copy the current variable values into ``model`` (default: the EnergyModel this view was built from)."""
        model = self._source if model is None else model
        model.set_params(self.numpy_params())
        return model

    def _pair_inputs(self, coord, atype, box):
        """Neighbour-list index data (nf, nloc, nnei) computed on the host by ``tf.numpy_function``."""
        cfg = self.config
        d = cfg["descriptor"]
        ntypes = len(cfg["type_map"])
        nf, nloc = coord.shape[0], coord.shape[1]
        sel = get_descriptor(d["type"]).nlist_sel(d)
        nnei = sel if isinstance(sel, int) else sum(sel)
        keys = ["nlist_mask", "nei_owner", "pair_shift", "nei_type", "centre_type", "atom_mask"]
        shapes = [(nf, nloc, nnei), (nf, nloc, nnei), (nf, nloc, nnei, 3), (nf, nloc, nnei), (nf, nloc), (nf, nloc)]
        dtypes = [tf.bool, tf.int64, tf.float64, tf.int64, tf.int64, tf.bool]
        if d.get("exclude_types"):
            keys, shapes, dtypes = keys + ["exclude_mask"], shapes + [(nf, nloc, nnei)], dtypes + [tf.float64]

        def host(c, a, *b):
            if np.max(a, initial=-1) >= ntypes:
                raise ValueError(f"atype contains type {np.max(a)} but the model has {ntypes} types")
            nl = build_neighbor_list(c, a, b[0].reshape(nf, 9) if b else None, d["rcut"], sel,
                                     cfg.get("pair_exclude_types", ()))
            out = pair_inputs(nl, a, ntypes, d.get("exclude_types", ()), cfg.get("atom_exclude_types", ()))
            return [np.asarray(out[k], dtype=dt.as_numpy_dtype) for k, dt in zip(keys, dtypes)]

        args = [tf.stop_gradient(coord), atype] + ([] if box is None else [tf.stop_gradient(box)])
        values = tf.numpy_function(host, args, dtypes, stateful=False)
        for v, s in zip(values, shapes):
            v.set_shape(s)
        return dict(zip(keys, values))

    def __call__(self, coord, atype, box=None, fparam=None, aparam=None) -> dict:
        """Energy model outputs as tensors.

        coord (nf, nloc, 3) or (nf, nloc*3) Å; atype (nloc,) or (nf, nloc) int, -1 = padding atom;
        box (nf, 9) or (nf, 3, 3) Å (rows = lattice vectors) or None; fparam (nf, numb_fparam);
        aparam (nf, nloc, numb_aparam).  Returns energy (nf, 1) eV, force (nf, nloc, 3) eV/Å, virial (nf, 9) eV,
        atom_energy (nf, nloc, 1) eV, mask (nf, nloc) int32 and, if ``atomic_virial``, atom_virial (nf, nloc, 9) eV.
        """
        atype = tf.convert_to_tensor(atype, dtype=tf.int64)
        nloc = atype.shape[-1]
        coord = tf.convert_to_tensor(coord, dtype=tf.float64)
        nf = coord.shape[0]
        coord = tf.reshape(coord, (nf, nloc, 3))
        atype = tf.broadcast_to(atype, (nf, nloc))
        if box is not None:
            box = tf.broadcast_to(tf.reshape(tf.convert_to_tensor(box, dtype=tf.float64), (-1, 3, 3)), (nf, 3, 3))
        inputs = self._pair_inputs(coord, atype, box)
        inputs.update(coord=coord, box=box)
        f = self.config["fitting_net"]
        if fparam is not None:
            inputs["fparam"] = tf.reshape(tf.convert_to_tensor(fparam, dtype=tf.float64), (nf, f["numb_fparam"]))
        if aparam is not None:
            inputs["aparam"] = tf.reshape(tf.convert_to_tensor(aparam, dtype=tf.float64), (nf, nloc, f["numb_aparam"]))
        params = self.param_tensors()
        if self.force_mode == "analytic":
            out = energy.forward(self.config, params, inputs, None, atomic_virial=self.atomic_virial)
        elif self.force_mode == "autodiff":
            vg = self._backend.value_and_grad
            out = energy.forward_autodiff(self.config, params, inputs, vg, None, atomic_virial=self.atomic_virial)
        else:
            raise ValueError(f"force_mode must be 'analytic' or 'autodiff', got {self.force_mode!r}")
        return out
