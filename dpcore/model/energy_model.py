"""``EnergyModel``: a model config plus its parameter dict, with evaluation, loading and saving."""

from __future__ import annotations

import copy

import numpy as np

from . import energy
from .init import init_params, validate


class EnergyModel:
    """A se_e2_a + energy-fitting model (SPEC 4-6).

    ``config``: the normalised ``model`` section of input.json (plain dict).
    ``params``: nested dict of NumPy arrays (see :mod:`dpcore.model.energy`).
    """

    model_type = "standard"

    def __init__(self, config: dict, params: dict, model_def_script: dict | None = None):
        validate(config)
        self.config = config
        self.params = params
        self.model_def_script = model_def_script if model_def_script is not None else copy.deepcopy(config)
        self._backend_params: dict = {}

    @classmethod
    def from_config(cls, model_config: dict, seed=None) -> "EnergyModel":
        """Freshly initialised model from the ``model`` section of an input.json (deterministic for ``seed``)."""
        from ..config import normalize_model

        if isinstance(model_config, dict) and model_config.get("spin") is not None and cls is EnergyModel:
            raise ValueError("this model section has a 'spin' section: build it with dpcore.SpinEnergyModel.from_config "
                             "(or dpcore.model_from_config, which picks the model type)")
        cfg = normalize_model(model_config)
        return cls(cfg, init_params(cfg, seed), model_def_script=copy.deepcopy(model_config))

    # -- properties ---------------------------------------------------------------------------------------
    @property
    def type_map(self) -> list[str]:
        return list(self.config["type_map"])

    @property
    def ntypes(self) -> int:
        return len(self.config["type_map"])

    @property
    def rcut(self) -> float:
        return float(self.config["descriptor"]["rcut"])

    @property
    def sel(self) -> list[int]:
        sel = self.config["descriptor"]["sel"]
        return [sel] if isinstance(sel, int) else list(sel)  # DPA-1: one int (mixed types), as DeePMD-kit's [sel]

    def set_params(self, params: dict) -> None:
        """Replace the parameter dict (NumPy arrays); drops cached backend copies."""
        self.params = params
        self._backend_params = {}

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The DeePMD-kit serialized model dict (SPEC 13.2)."""
        from .serialize import model_to_dict

        return model_to_dict(self.config, self.params)

    @classmethod
    def from_dict(cls, data: dict, model_def_script: dict | None = None) -> "EnergyModel":
        from .serialize import model_from_dict

        cfg, params = model_from_dict(data)
        return cls(cfg, params, model_def_script)

    def save(self, path) -> None:
        """Write a DeePMD-kit model file (``.dp`` HDF5 or ``.yaml``) that DeePMD-kit can read."""
        from ..io import write_model_file

        write_model_file(path, {"model": self.to_dict(), "model_def_script": self.model_def_script})

    # -- evaluation --------------------------------------------------------------------------------------------
    def backend_params(self, backend):
        """The parameter dict as ``backend`` arrays on its device (cached per backend object)."""
        key = (backend.name, str(backend.device))
        if key not in self._backend_params:
            self._backend_params[key] = backend.tree_asarray(self.params)
        return self._backend_params[key]

    def evaluate(self, coord, atype, box=None, fparam=None, aparam=None, backend="numpy", atomic=False,
                 force_mode="analytic", device=None, chunk_size=None, max_memory=None) -> dict:
        """Energy, forces and virial of frames.

        coord: (nf, natoms, 3) or (nf, natoms*3) Å; atype: (natoms,) or (nf, natoms) int (-1 = padding atom);
        box: (nf, 9) Å, rows = lattice vectors, or None (non-periodic); fparam (nf, numb_fparam);
        aparam (nf, natoms, numb_aparam).  ``backend`` by name (numpy, torch, ...) on ``device``
        (framework device string, e.g. "cpu", "cuda:0"); ``force_mode`` "analytic" (the core's backward) or
        "autodiff" (the backend's automatic differentiation; not on numpy).
        Memory: one model call holds at most ``max_memory`` bytes of working memory (a number or a size such as
        "2GB"; default 256 MiB) or ``chunk_size`` centre atoms; larger systems are evaluated in chunks of centre
        atoms with the same results (:mod:`dpcore.infer.chunked`).
        Returns NumPy arrays: atom_energy (nf, natoms, 1) eV, energy (nf, 1) eV, force (nf, natoms, 3) eV/Å,
        virial (nf, 9) eV, mask (nf, natoms) int32, and atom_virial (nf, natoms, 9) eV if ``atomic``.
        """
        from ..backends import get_backend
        from ..infer import chunked
        from ..infer.inputs import check_inputs, prepare, unpermute

        be = get_backend(backend, device=device)
        per_call = chunked.centres_per_call(self.config, chunk_size, max_memory)
        f = self.config["fitting_net"]
        coord, atype, box, fparam, aparam = check_inputs(coord, atype, box, fparam, aparam, self.ntypes,
                                                         f["numb_fparam"], f["numb_aparam"])
        if atype.shape[1] > per_call:
            system = {"coord": coord, "atype": atype, "box": box, "fparam": fparam, "aparam": aparam,
                      "first_type": atype[:, 0]}
            res = chunked.evaluate_centres(be, self.config, self.backend_params(be), system, per_call=per_call,
                                           atomic=atomic, force_mode=force_mode)
            return chunked.energy_outputs(res, atomic)

        def one_pass(frames):
            inputs, blocks, perm = prepare(self, coord[frames], atype[frames], None if box is None else box[frames],
                                           None if fparam is None else fparam[frames],
                                           None if aparam is None else aparam[frames])
            trim = be.slot_trim(self.config)
            blocks = trim(blocks, inputs["nlist_mask"])  # (dpcore.slot_trim)
            inputs = trim.share(inputs, blocks, self.params["descriptor"])  # (dpcore.pair_share)
            out = be.model_forward(self.config, self.backend_params(be), be.forward_inputs(inputs), blocks,
                                   atomic_virial=atomic, force_mode=force_mode)
            return unpermute({k: np.asarray(be.to_numpy(v)) for k, v in out.items()}, perm)

        return chunked.by_frames(one_pass, *atype.shape, per_call)


__all__ = ["EnergyModel"]
