"""``SpinEnergyModel``: the "deepspin" virtual-atom spin model (SPEC 7.1, 13.6) around a 2n-type backbone.

Host side (NumPy): (de)serialisation and the preparation of the 2·nloc-atom neighbour list; the ``model.spin``
forms, the backbone construction and the virtual atoms are :mod:`dpcore.model.spin_settings`; the math is
:mod:`dpcore.model.spin`.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np

from .energy_model import EnergyModel
from .spin_settings import backbone_config, expand_virtual_scale, spin_settings, virtual_atoms, virtual_scale_mask


class ZeroSpinWarning(UserWarning):
    """A magnetic atom has spin (0, 0, 0): its virtual atom coincides with it and the derivatives are NaN."""


# ------------------------------------------------------------------------------------------- host-side inputs
def _check_spin(spin, coord_shape) -> np.ndarray:
    nf, nloc, _ = coord_shape
    if spin is None:
        raise ValueError(f"a spin model needs spin of shape (nframes, natoms, 3) = ({nf}, {nloc}, 3) (μB)")
    spin = np.asarray(spin, dtype=np.float64)
    if spin.size == nloc * 3 and nf > 1:
        spin = np.broadcast_to(spin.reshape(1, nloc, 3), (nf, nloc, 3))
    if spin.size != nf * nloc * 3:
        raise ValueError(f"spin must have shape (nframes, natoms, 3) = ({nf}, {nloc}, 3) to match coord, got {spin.shape}")
    spin = spin.reshape(nf, nloc, 3)
    if not np.all(np.isfinite(spin)):
        raise ValueError("spin contains NaN or inf")
    return spin


def virtual_system(model: "SpinEnergyModel", coord, atype, spin, aparam=None):
    """The backbone's 2·nloc atoms of checked inputs (coord, spin (nf, nloc, 3), atype (nf, nloc), aparam or
    None): coord', atype' (:func:`virtual_atoms`), the per-atom scale vs (nf, nloc) and aparam' (zeros for the
    virtual atoms); warns (:class:`ZeroSpinWarning`) about magnetic atoms with zero spin."""
    coord2, atype2, vs = virtual_atoms(coord, atype, spin, model.virtual_scale_mask)
    zero = (vs > 0) & np.all(spin == 0.0, axis=-1)
    if np.any(zero):
        warnings.warn(f"spin model: {int(zero.sum())} magnetic atom(s) with zero spin; the virtual atom sits on its "
                      "real atom (distance 0), so force, force_mag and virial are NaN (the energy is defined; "
                      "DeePMD-kit behaves the same)", ZeroSpinWarning, stacklevel=4)
    aparam2 = None if aparam is None else np.concatenate([aparam, np.zeros_like(aparam)], axis=1)
    return coord2, atype2, vs, aparam2


def prepare(model: "SpinEnergyModel", coord, atype, spin, box=None, fparam=None, aparam=None):
    """Host-side preparation of a spin evaluation: checks, type sorting, the 2·nloc-atom neighbour list.

    Returns ``inputs`` (NumPy arrays for :func:`dpcore.model.spin.forward`), the type ``blocks`` of the
    2·nloc atoms and the permutation applied to the real atoms (None if not reordered).
    """
    from ..by_type import blocks_for
    from ..descriptor import get_descriptor
    from ..infer.inputs import check_inputs
    from ..nlist import build_neighbor_list
    from ..pairs import pair_inputs

    cfg = model.config
    d, f = cfg["descriptor"], cfg["fitting_net"]
    n = model.ntypes
    coord, atype, box, fparam, aparam = check_inputs(coord, atype, box, fparam, aparam, n,
                                                     f["numb_fparam"], f["numb_aparam"])
    spin = _check_spin(spin, coord.shape)
    first_type = atype[:, 0].copy()  # mixed-type descriptors type empty slots with it (SPEC_DPA1 0.2)
    perm = None
    if atype.min(initial=0) >= 0 and np.all(atype == atype[:1]):
        perm = np.argsort(atype[0], kind="stable")
        coord, atype, spin = coord[:, perm], atype[:, perm], spin[:, perm]
        aparam = None if aparam is None else aparam[:, perm]
    coord2, atype2, vs, aparam2 = virtual_system(model, coord, atype, spin, aparam)
    blocks = blocks_for(atype2[0]) if perm is not None else None
    nl = build_neighbor_list(coord2, atype2, box, d["rcut"], get_descriptor(d["type"]).nlist_sel(d), cfg.get("pair_exclude_types", ()))
    inputs = pair_inputs(nl, atype2, 2 * n, d.get("exclude_types", ()), cfg.get("atom_exclude_types", ()),
                         first_type=first_type if get_descriptor(d["type"]).MIXED_TYPES else None)
    inputs.update(coord=coord, spin=np.ascontiguousarray(spin), virtual_scale=vs,
                  box=None if box is None else box.reshape(-1, 3, 3))
    if fparam is not None:
        inputs["fparam"] = fparam
    if aparam2 is not None:
        inputs["aparam"] = aparam2
    return inputs, blocks, perm


def model_forward(backend, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False,
                  force_mode: str = "analytic", create_graph: bool = False) -> dict:
    """Spin-model outputs on ``backend`` (an adapter object): the core's analytic derivatives
    (``force_mode="analytic"``, every backend) or the backend's autodiff (``"autodiff"``);
    ``create_graph`` keeps the autodiff graph (to differentiate a force loss again).
    Compiled where the backend registry says model forwards are (:meth:`Backend.compiled`; config, blocks and
    modes static)."""
    if force_mode not in ("analytic", "autodiff"):
        raise ValueError(f"force_mode must be 'analytic' or 'autodiff', got {force_mode!r}")
    return backend.compiled("spin", _forward, cfg, blocks=blocks, atomic_virial=atomic_virial, force_mode=force_mode,
                            create_graph=create_graph)(params, inputs)


def _forward(backend, cfg, params, inputs, blocks=None, atomic_virial=False, force_mode="analytic",
             create_graph=False):
    from . import spin

    if force_mode == "analytic":
        return spin.forward(cfg, params, inputs, blocks, atomic_virial=atomic_virial)

    def vg(f, argnums=(0,)):
        return backend.value_and_grad(f, argnums, create_graph=create_graph)

    return spin.forward_autodiff(cfg, params, inputs, vg, blocks, atomic_virial=atomic_virial)


# ------------------------------------------------------------------------------------------- the model
class SpinEnergyModel:
    """A spin energy model: a 2n-type :class:`EnergyModel` backbone plus the per-type spin settings.

    ``config`` / ``params`` are the backbone's (2n types); ``type_map``, ``ntypes``, ``sel`` are the real
    atoms' (n types); ``spin = {"use_spin": [bool]*n, "virtual_scale": [float]*n}``.
    """

    model_type = "spin_ener"

    def __init__(self, backbone: EnergyModel, spin: dict, model_def_script: dict | None = None):
        tm = backbone.type_map
        if len(tm) % 2:
            raise ValueError(f"spin model: the backbone has {len(tm)} types; expected 2n (real types + '<name>_spin')")
        n = len(tm) // 2
        use_spin = [bool(u) for u in spin["use_spin"]]
        if len(use_spin) != n:
            raise ValueError(f"spin model: use_spin has {len(use_spin)} entries for {n} real types {tm[:n]}")
        self.backbone = backbone
        self.spin = {"use_spin": use_spin, "virtual_scale": expand_virtual_scale(spin["virtual_scale"], use_spin)}
        self.model_def_script = model_def_script if model_def_script is not None else {}

    @classmethod
    def from_config(cls, model_config: dict, seed=None) -> "SpinEnergyModel":
        """Freshly initialised spin model from a ``model`` section with a ``spin`` key (deterministic for ``seed``)."""
        from ..config import normalize_model
        from .init import init_params

        if not isinstance(model_config, dict) or "spin" not in model_config:
            raise ValueError("SpinEnergyModel.from_config: the model section has no 'spin' key")
        cfg = normalize_model(model_config)
        settings = spin_settings(cfg["spin"], cfg["type_map"])
        bcfg = backbone_config(cfg, settings["use_spin"])
        backbone = EnergyModel(bcfg, init_params(bcfg, seed))
        return cls(backbone, settings, model_def_script=copy.deepcopy(model_config))

    # -- properties ---------------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The backbone's normalised model section (2n types)."""
        return self.backbone.config

    @property
    def params(self) -> dict:
        return self.backbone.params

    @params.setter
    def params(self, value: dict) -> None:
        self.backbone.set_params(value)

    def set_params(self, params: dict) -> None:
        self.backbone.set_params(params)

    @property
    def type_map(self) -> list[str]:
        return self.backbone.type_map[: self.ntypes]

    @property
    def ntypes(self) -> int:
        return self.backbone.ntypes // 2

    @property
    def rcut(self) -> float:
        return self.backbone.rcut

    @property
    def sel(self) -> list[int]:
        """Neighbour capacities of the real types (the backbone holds ``sel + sel``)."""
        return self.backbone.sel[: self.ntypes]

    @property
    def use_spin(self) -> list[bool]:
        return list(self.spin["use_spin"])

    @property
    def virtual_scale_mask(self) -> np.ndarray:
        """(n,) float64: virtual_scale of magnetic types, 0 for the others."""
        return virtual_scale_mask(self.spin)

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The DeePMD-kit serialized spin model dict (SPEC 13.6)."""
        return {"type": "spin_ener", "backbone_model": self.backbone.to_dict(),
                "spin": {"use_spin": list(self.spin["use_spin"]), "virtual_scale": list(self.spin["virtual_scale"])}}

    @classmethod
    def from_dict(cls, data: dict, model_def_script: dict | None = None) -> "SpinEnergyModel":
        if not isinstance(data, dict) or data.get("type") != "spin_ener":
            raise ValueError(f"expected a spin model dict with type 'spin_ener', got type {getattr(data, 'get', dict().get)('type')!r}")
        for key in ("backbone_model", "spin"):
            if not isinstance(data.get(key), dict):
                raise ValueError(f"model/{key}: missing from the spin_ener model dict")
        sp = data["spin"]
        if sp.get("virtual_scale") is None:
            raise ValueError("model/spin/virtual_scale: null; dpcore supports the deepspin scheme, which needs it")
        backbone = EnergyModel.from_dict(data["backbone_model"])
        return cls(backbone, {"use_spin": list(sp["use_spin"]), "virtual_scale": sp["virtual_scale"]},
                   model_def_script)

    def save(self, path) -> None:
        """Write a DeePMD-kit model file (``.dp`` HDF5 or ``.yaml``)."""
        from ..io import write_model_file

        write_model_file(path, {"model": self.to_dict(), "model_def_script": self.model_def_script})

    # -- evaluation --------------------------------------------------------------------------------------------
    def backend_params(self, backend):
        return self.backbone.backend_params(backend)

    def prepare(self, coord, atype, spin, box=None, fparam=None, aparam=None):
        """See :func:`prepare`."""
        return prepare(self, coord, atype, spin, box, fparam, aparam)

    def evaluate(self, coord, atype, spin, box=None, fparam=None, aparam=None, backend="numpy", atomic=False,
                 force_mode="analytic", device=None, chunk_size=None, max_memory=None) -> dict:
        """Energy, forces, magnetic forces and virial of frames.

        coord: (nf, natoms, 3) or (nf, natoms*3) Å; atype: (natoms,) or (nf, natoms) int (-1 = padding);
        spin: (nf, natoms, 3) or (nf, natoms*3) μB; box: (nf, 9) Å (rows = lattice vectors) or None;
        fparam (nf, numb_fparam); aparam (nf, natoms, numb_aparam); ``backend`` by name on ``device``
        (framework device string); ``force_mode`` "analytic" (the core's derivatives, every backend) or
        "autodiff" (the backend's automatic differentiation; not on numpy / array_api_strict).
        ``chunk_size`` / ``max_memory``: as :meth:`dpcore.EnergyModel.evaluate` (counted in real atoms).
        Returns NumPy arrays: atom_energy (nf, natoms, 1) eV, energy (nf, 1) eV, force (nf, natoms, 3) eV/Å
        (``-dE/dr`` at fixed spin), force_mag (nf, natoms, 3) eV/μB (``-dE/ds``, exactly 0 for non-magnetic
        atoms), virial (nf, 9) eV (spins held fixed, not symmetric, index 3k+d), mask (nf, natoms) int32,
        mask_mag (nf, natoms, 1) bool, and atom_virial (nf, natoms, 9) eV if ``atomic``.
        """
        from ..backends import get_backend
        from ..infer import chunked
        from ..infer.inputs import check_inputs, unpermute

        be = get_backend(backend, device=device)
        per_call = chunked.centres_per_call(self.config, chunk_size, max_memory)
        f = self.config["fitting_net"]
        coord, atype, box, fparam, aparam = check_inputs(coord, atype, box, fparam, aparam, self.ntypes,
                                                         f["numb_fparam"], f["numb_aparam"])
        spin = _check_spin(spin, coord.shape)
        if atype.shape[1] > per_call:
            return self._evaluate_chunked(be, coord, atype, spin, box, fparam, aparam, per_call, atomic, force_mode)

        def one_pass(frames):
            inputs, blocks, perm = self.prepare(coord[frames], atype[frames], spin[frames],
                                                None if box is None else box[frames],
                                                None if fparam is None else fparam[frames],
                                                None if aparam is None else aparam[frames])
            trim = be.slot_trim(self.config)
            blocks = trim(blocks, inputs["nlist_mask"])  # (dpcore.slot_trim)
            inputs = trim.share(inputs, blocks, self.backbone.params["descriptor"])  # (dpcore.pair_share)
            out = model_forward(be, self.config, self.backend_params(be), be.forward_inputs(inputs), blocks,
                                atomic_virial=atomic, force_mode=force_mode)
            return unpermute({k: np.asarray(be.to_numpy(v)) for k, v in out.items()}, perm)

        return chunked.by_frames(one_pass, *atype.shape, per_call)

    def _evaluate_chunked(self, be, coord, atype, spin, box, fparam, aparam, per_call, atomic, force_mode):
        """The backbone on the 2·nloc atoms in chunks of real centres, then the spin outputs folded
        (:func:`dpcore.model.spin.fold_outputs`, linear in the backbone's forces and virials)."""
        from ..infer import chunked
        from .spin import fold_outputs

        coord2, atype2, vs, aparam2 = virtual_system(self, coord, atype, spin, aparam)
        system = {"coord": coord2, "atype": atype2, "box": box, "fparam": fparam, "aparam": aparam2,
                  "first_type": atype[:, 0]}
        res = chunked.evaluate_centres(be, self.config, self.backend_params(be), system, per_call=per_call,
                                       atomic=atomic, force_mode=force_mode)
        nloc = coord.shape[1]
        out = fold_outputs(res, spin, vs, atomic)
        out.update(atom_energy=res["atom_energy"][:, :nloc, None],
                   energy=np.sum(res["atom_energy"], axis=1, keepdims=True),
                   mask=res["atom_mask"][:, :nloc].astype(np.int32), mask_mag=(vs > 0.0)[..., None])
        return out


__all__ = ["SpinEnergyModel", "ZeroSpinWarning", "model_forward", "prepare", "virtual_system"]
