"""``SpinEnergyModel``: the "deepspin" virtual-atom spin model (SPEC 7.1, 13.6) around a 2n-type backbone.

Host side (NumPy): the ``model.spin`` section forms, the backbone construction, (de)serialisation, and
the preparation of the 2·nloc-atom neighbour list.  The math is :mod:`dpcore.model.spin`.

``model.spin`` forms (SPEC 7.1, 11.4):

* ``use_spin``: per-type bools (one per ``type_map`` entry), or magnetic type indices, or element symbols;
* ``virtual_scale`` (Å/μB): a float (all types), one float per type, or one per magnetic type (in type
  order); a JSON integer is refused as in DeePMD-kit ("Invalid virtual scale type"); magnetic types need
  ``virtual_scale > 0``;
* the TensorFlow form ``spin_norm`` + ``virtual_len`` (one per magnetic type) is converted,
  ``virtual_scale = virtual_len / spin_norm``, and, as in DeePMD-kit's TensorFlow model, the magnetic
  types must come first in ``type_map``.

Backbone (``get_spin_model`` of DeePMD-kit): type_map + ``"<name>_spin"`` (2n types; type ``t + n`` is
the virtual partner of ``t``, a *placeholder* when ``t`` is not magnetic); pair exclusions
``(placeholder, any type)`` + the model's ``pair_exclude_types``, used both as the model-level
``pair_exclude_types`` and as the descriptor ``exclude_types``; ``atom_exclude_types`` = all types ``>= n``
+ the user's; se_e2_a ``sel + sel``; ``env_protection`` 0.01 when missing or 0.0 (the PyTorch rule).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import warnings
from collections import OrderedDict

import numpy as np

from .energy_model import EnergyModel

class ZeroSpinWarning(UserWarning):
    """A magnetic atom has spin (0, 0, 0): its virtual atom coincides with it and the derivatives are NaN."""


PROTECTION_DEFAULT = 0.01  # env_protection of a spin model whose input has none (or 0.0), as DeePMD-kit PyTorch


# ------------------------------------------------------------------------------------------- the spin section
def normalize_use_spin(use_spin, type_map) -> list[bool]:
    """Per-type bools from any of the three ``use_spin`` forms (bools, type indices, element symbols)."""
    n = len(type_map)
    if not isinstance(use_spin, (list, tuple)):
        raise ValueError(f"model/spin/use_spin: expected a list, got {use_spin!r}")
    if all(isinstance(u, (bool, np.bool_)) for u in use_spin):
        if len(use_spin) != n:
            raise ValueError(f"model/spin/use_spin: expected {n} booleans (one per type in {list(type_map)}), "
                             f"got {list(use_spin)}")
        return [bool(u) for u in use_spin]
    if all(isinstance(u, str) for u in use_spin):
        unknown = [u for u in use_spin if u not in type_map]
        if unknown:
            raise ValueError(f"model/spin/use_spin: element(s) {unknown} absent from type_map {list(type_map)}")
        use_spin = [list(type_map).index(u) for u in use_spin]
    if all(isinstance(u, (int, np.integer)) and not isinstance(u, bool) for u in use_spin):
        bad = [u for u in use_spin if not 0 <= u < n]
        if bad:
            raise ValueError(f"model/spin/use_spin: type indices {bad} outside 0..{n - 1} (type_map {list(type_map)})")
        return [t in set(int(u) for u in use_spin) for t in range(n)]
    raise ValueError(f"model/spin/use_spin: expected booleans, type indices or element symbols (one form), "
                     f"got {list(use_spin)}")


def expand_virtual_scale(virtual_scale, use_spin: list[bool]) -> list[float]:
    """One virtual_scale per real type from a float, a per-type list or a per-magnetic-type list (SPEC 7.1)."""
    n, nspin = len(use_spin), sum(use_spin)
    if isinstance(virtual_scale, (list, tuple, np.ndarray)):
        vs = [float(v) for v in virtual_scale]
        if len(vs) == n:
            out = vs
        elif len(vs) == nspin:
            it = iter(vs)
            out = [next(it) if u else 0.0 for u in use_spin]
        else:
            raise ValueError(f"model/spin/virtual_scale: Invalid length of virtual_scale for spin atoms: expected "
                             f"{n} (one per type) or {nspin} (one per magnetic type) but got {len(vs)}")
    elif isinstance(virtual_scale, (float, np.floating)):
        out = [float(virtual_scale)] * n
    else:
        hint = f" (write {float(virtual_scale)!r})" if isinstance(virtual_scale, int) and not isinstance(virtual_scale, bool) else ""
        raise ValueError(f"model/spin/virtual_scale: Invalid virtual scale type: {type(virtual_scale).__name__} "
                         f"{virtual_scale!r}; expected a float or a list of floats{hint}")
    bad = [t for t, (u, v) in enumerate(zip(use_spin, out)) if u and not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"model/spin/virtual_scale: magnetic type(s) {bad} need a finite virtual_scale > 0 "
                         f"(the virtual atom would sit on the real atom), got {out}")
    return out


def spin_settings(spin_cfg: dict, type_map) -> dict:
    """``{"use_spin": [bool]*n, "virtual_scale": [float]*n}`` from a (normalised) ``model.spin`` section."""
    use_spin = normalize_use_spin(spin_cfg["use_spin"], type_map)
    if spin_cfg.get("scheme", "deepspin") != "deepspin":
        raise ValueError(f"model/spin/scheme: only 'deepspin' is supported, got {spin_cfg.get('scheme')!r}")
    if spin_cfg.get("allow_missing_label", False):
        raise ValueError("model/spin/allow_missing_label: must be false for the deepspin scheme "
                         "(a system without spin.npy cannot be used)")
    vs = spin_cfg.get("virtual_scale")
    if "spin_norm" in spin_cfg or "virtual_len" in spin_cfg:
        nspin = sum(use_spin)
        if use_spin != [True] * nspin + [False] * (len(use_spin) - nspin):
            raise ValueError(f"model/spin/use_spin: the TensorFlow form (spin_norm, virtual_len) needs the magnetic "
                             f"types first in type_map, as in DeePMD-kit's TensorFlow spin model; got use_spin "
                             f"{use_spin} for type_map {list(type_map)}. Reorder type_map, or give virtual_scale "
                             "instead of spin_norm/virtual_len")
        sn, vl = spin_cfg.get("spin_norm"), spin_cfg.get("virtual_len")
        if sn is None or vl is None or len(sn) != nspin or len(vl) != nspin:
            raise ValueError(f"model/spin: the TensorFlow form needs spin_norm and virtual_len with one value per "
                             f"magnetic type ({nspin}), got spin_norm {sn}, virtual_len {vl}")
        conv = [float(a) / float(b) for a, b in zip(vl, sn)]
        if vs is not None and not (isinstance(vs, list) and len(vs) == nspin
                                   and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(vs, conv))):
            raise ValueError(f"model/spin/virtual_scale: {vs} contradicts virtual_len / spin_norm = {conv}; give one form")
        vs = conv
    if vs is None:
        raise ValueError("model/spin/virtual_scale: required for the deepspin model "
                         "(or give the TensorFlow form spin_norm + virtual_len)")
    return {"use_spin": use_spin, "virtual_scale": expand_virtual_scale(vs, use_spin)}


def backbone_config(model_cfg: dict, use_spin: list[bool]) -> dict:
    """The 2n-type backbone ``model`` section (SPEC 7.1 construction steps 1-5) of a normalised spin model
    section (``sel`` already a list); the ``spin`` key is dropped."""
    cfg = copy.deepcopy(model_cfg)
    cfg.pop("spin", None)
    type_map = list(cfg["type_map"])
    n = len(type_map)
    d = cfg["descriptor"]
    if isinstance(d["sel"], str):
        raise ValueError(f"model/descriptor/sel is {d['sel']!r}: it is resolved from the training data by `dpcore "
                         "train` (see `dpcore neighbor-stat`); give one integer per type to build a model directly")
    if d.get("exclude_types"):
        raise ValueError(f"model/descriptor/exclude_types {d['exclude_types']}: a spin model takes its pair "
                         "exclusions from model/pair_exclude_types (DeePMD-kit replaces the descriptor's own list "
                         "by it, silently); move them there")
    placeholder = [t + n for t in range(n) if not use_spin[t]]
    pairs = [[p, q] for p in placeholder for q in range(2 * n)]
    pairs += [[int(a), int(b)] for a, b in cfg.get("pair_exclude_types") or []]
    cfg["type_map"] = type_map + [name + "_spin" for name in type_map]
    cfg["pair_exclude_types"] = copy.deepcopy(pairs)
    d["exclude_types"] = copy.deepcopy(pairs)
    cfg["atom_exclude_types"] = sorted(set(range(n, 2 * n)) | {int(t) for t in cfg.get("atom_exclude_types") or []})
    if not d.get("env_protection"):
        d["env_protection"] = PROTECTION_DEFAULT
    d["sel"] = list(d["sel"]) + list(d["sel"])  # se_e2_a: one block per backbone type
    pob = cfg.get("preset_out_bias")
    if pob:
        cfg["preset_out_bias"] = {k: list(v) + [None] * n for k, v in pob.items()}
    return cfg


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


def prepare(model: "SpinEnergyModel", coord, atype, spin, box=None, fparam=None, aparam=None):
    """Host-side preparation of a spin evaluation: checks, type sorting, the 2·nloc-atom neighbour list.

    Returns ``inputs`` (NumPy arrays for :func:`dpcore.model.spin.forward`), the type ``blocks`` of the
    2·nloc atoms and the permutation applied to the real atoms (None if not reordered).
    """
    from ..by_type import blocks_for
    from ..infer.inputs import check_inputs
    from ..nlist import build_neighbor_list
    from ..pairs import pair_inputs

    cfg = model.config
    d, f = cfg["descriptor"], cfg["fitting_net"]
    n = model.ntypes
    coord, atype, box, fparam, aparam = check_inputs(coord, atype, box, fparam, aparam, n,
                                                     f["numb_fparam"], f["numb_aparam"])
    spin = _check_spin(spin, coord.shape)
    perm = None
    if atype.min(initial=0) >= 0 and np.all(atype == atype[:1]):
        perm = np.argsort(atype[0], kind="stable")
        coord, atype, spin = coord[:, perm], atype[:, perm], spin[:, perm]
        aparam = None if aparam is None else aparam[:, perm]
    real = atype >= 0
    vs = np.where(real, model.virtual_scale_mask[np.where(real, atype, 0)], 0.0)
    zero = (vs > 0) & np.all(spin == 0.0, axis=-1)
    if np.any(zero):
        warnings.warn(f"spin model: {int(zero.sum())} magnetic atom(s) with zero spin; the virtual atom sits on its "
                      "real atom (distance 0), so force, force_mag and virial are NaN (the energy is defined; "
                      "DeePMD-kit behaves the same)", ZeroSpinWarning, stacklevel=3)
    atype2 = np.concatenate([atype, np.where(real, atype + n, -1)], axis=1)
    coord2 = np.concatenate([coord, coord + vs[..., None] * spin], axis=1)
    blocks = blocks_for(atype2[0]) if perm is not None else None
    nl = build_neighbor_list(coord2, atype2, box, d["rcut"], d["sel"], cfg.get("pair_exclude_types", ()))
    inputs = pair_inputs(nl, atype2, 2 * n, d.get("exclude_types", ()), cfg.get("atom_exclude_types", ()))
    inputs.update(coord=coord, spin=np.ascontiguousarray(spin), virtual_scale=vs,
                  box=None if box is None else box.reshape(-1, 3, 3))
    if fparam is not None:
        inputs["fparam"] = fparam
    if aparam is not None:
        inputs["aparam"] = np.concatenate([aparam, np.zeros_like(aparam)], axis=1)
    return inputs, blocks, perm


# Backends whose adapter compiles its energy-model forward (backends/jax.py: eager JAX is ~10 s per call on a
# 24-atom spin system, jit 5 s once then 10 ms); the spin forward makes the same choice.  TensorFlow's adapter
# does not compile (eager 0.2 s, tf.function tracing 10 s per input shape), so neither does this.
JIT_FORWARD = ("jax",)
_MAX_COMPILED = 8
_compiled: OrderedDict = OrderedDict()


def model_forward(backend, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False,
                  force_mode: str = "analytic", create_graph: bool = False) -> dict:
    """Spin-model outputs on ``backend`` (an adapter object): the core's analytic derivatives
    (``force_mode="analytic"``, every backend) or the backend's autodiff (``"autodiff"``);
    ``create_graph`` keeps the autodiff graph (to differentiate a force loss again).
    Compiled with ``backend.jit`` on the backends of :data:`JIT_FORWARD` (config, blocks, modes static)."""
    if force_mode not in ("analytic", "autodiff"):
        raise ValueError(f"force_mode must be 'analytic' or 'autodiff', got {force_mode!r}")
    if backend.name not in JIT_FORWARD:
        return _forward(backend, cfg, params, inputs, blocks, atomic_virial, force_mode, create_graph)
    key = (backend.name, str(backend.device), json.dumps(cfg, sort_keys=True, default=repr), blocks, atomic_virial,
           force_mode, create_graph)
    fn = _compiled.pop(key, None)
    if fn is None:
        fn = backend.jit(functools.partial(_forward, backend, copy.deepcopy(cfg), blocks=blocks,
                                           atomic_virial=atomic_virial, force_mode=force_mode,
                                           create_graph=create_graph))
    _compiled[key] = fn
    while len(_compiled) > _MAX_COMPILED:
        _compiled.popitem(last=False)
    return fn(params, inputs)


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
        return np.asarray(self.spin["virtual_scale"], dtype=np.float64) * np.asarray(self.spin["use_spin"], dtype=np.float64)

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
                 force_mode="analytic", device=None) -> dict:
        """Energy, forces, magnetic forces and virial of frames.

        coord: (nf, natoms, 3) or (nf, natoms*3) Å; atype: (natoms,) or (nf, natoms) int (-1 = padding);
        spin: (nf, natoms, 3) or (nf, natoms*3) μB; box: (nf, 9) Å (rows = lattice vectors) or None;
        fparam (nf, numb_fparam); aparam (nf, natoms, numb_aparam); ``backend`` by name on ``device``
        (framework device string); ``force_mode`` "analytic" (the core's derivatives, every backend) or
        "autodiff" (the backend's automatic differentiation; not on numpy / array_api_strict).
        Returns NumPy arrays: atom_energy (nf, natoms, 1) eV, energy (nf, 1) eV, force (nf, natoms, 3) eV/Å
        (``-dE/dr`` at fixed spin), force_mag (nf, natoms, 3) eV/μB (``-dE/ds``, exactly 0 for non-magnetic
        atoms), virial (nf, 9) eV (spins held fixed, not symmetric, index 3k+d), mask (nf, natoms) int32,
        mask_mag (nf, natoms, 1) bool, and atom_virial (nf, natoms, 9) eV if ``atomic``.
        """
        from ..backends import get_backend
        from ..infer.inputs import unpermute

        be = get_backend(backend, device=device)
        inputs, blocks, perm = self.prepare(coord, atype, spin, box, fparam, aparam)
        out = model_forward(be, self.config, self.backend_params(be), be.tree_asarray(inputs), blocks,
                            atomic_virial=atomic, force_mode=force_mode)
        out = {k: np.asarray(be.to_numpy(v)) for k, v in out.items()}
        return unpermute(out, perm)


__all__ = ["SpinEnergyModel", "backbone_config", "spin_settings", "normalize_use_spin", "expand_virtual_scale",
           "prepare", "model_forward"]
