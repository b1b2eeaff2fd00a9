"""ASE calculator ``DP``: a dpcore model (energy or spin) as an :class:`ase.calculators.calculator.Calculator`.

    from dpcore.calculator import DP
    atoms.calc = DP("model.dp")                      # or backend=..., device=...: any dpcore backend
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Properties (one frame, N atoms; everything from one :meth:`model.evaluate` call, cached until ASE's
``check_state`` sees a change of positions, numbers, cell, pbc, magnetic moments, ``fparam`` or ``aparam``):

    energy, free_energy   ()       eV      (the same number: the model has no electronic entropy)
    energies              (N,)     eV      per-atom energies
    forces                (N, 3)   eV/Å    -dE/dr (spin models: at fixed spins)
    virial                (3, 3)   eV      W[k, d] = sum_j F_jk r_jd, DeePMD-kit's sign and layout:
                                           ``virial.reshape(9)`` is ``model.evaluate(...)["virial"][0]``
                                           (index 3k+d); not symmetric for spin models
    stress                (6,)     eV/Å^3  ASE's Voigt order xx yy zz yz xz xy and sign: -sym(W) / V
    magnetic_forces       (N, 3)   eV/μB   spin models only: -dE/ds, exactly 0 on non-magnetic atoms

Periodicity: ``pbc`` all True uses the cell; all False is a non-periodic cluster (the cell is ignored; no
stress); mixed (a slab periodic in x, y; a wire) keeps the periodic cell vectors and replaces each
non-periodic one by a vector perpendicular to the periodic ones, longer than the atoms' extent plus ``rcut``,
so no atom sees an image across it. Stress then uses ASE's cell volume (as ASE's EMT does); it needs a
cell of rank 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import atomic_numbers
from ase.stress import full_3x3_to_voigt_6_stress

from .model.spin_model import SpinEnergyModel

__all__ = ["DP", "load_model", "model_box"]

VACUUM_MARGIN = 1.0  # Å added to extent + rcut along a non-periodic direction: a pair across it is > rcut apart
_MODEL_SUFFIXES = (".dp", ".yaml", ".yml")


def load_model(model):
    """A dpcore model from a loaded model, a ``.dp``/``.yaml`` file, or a training checkpoint (a ``.npz``
    file, the folder holding them, its ``checkpoint`` pointer, or the ``save_ckpt`` prefix)."""
    if hasattr(model, "evaluate") and hasattr(model, "type_map"):
        return model
    path = Path(model)
    if path.suffix.lower() in _MODEL_SUFFIXES:
        from .model.factory import load

        if not path.is_file():
            raise FileNotFoundError(f"DP: model file {str(path)!r} does not exist")
        return load(path)
    from .train.checkpoint import model_from_checkpoint, resolve_checkpoint  # only now: training imports

    try:
        resolve_checkpoint(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"DP: model {str(model)!r} is neither a model file ({', '.join(_MODEL_SUFFIXES)}) "
                                "nor a checkpoint (a .npz file, its folder, its 'checkpoint' pointer or its prefix)") from None
    return model_from_checkpoint(path)


def model_box(cell, pbc, points, rcut: float):
    """The model's box (9,) in Å (rows = lattice vectors) for ASE's ``cell`` (3, 3) and ``pbc`` (3,), or None.

    ``points`` (M, 3) Å are every position the neighbour list will see (atoms, and virtual atoms of a spin
    model). All periodic: the cell. None periodic: None. Mixed: the periodic rows are kept; each non-periodic
    row becomes a unit vector perpendicular to the periodic rows (and to each other) times
    ``extent + rcut + VACUUM_MARGIN``, so any image across it is more than ``rcut`` away along that normal.
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not pbc.any():
        return None
    for i in np.flatnonzero(pbc):
        if not np.linalg.norm(cell[i]) > 0:
            raise ValueError(f"DP: pbc[{i}] is True but cell vector {i} is zero: set the cell (atoms.cell) or "
                             "make that direction non-periodic (atoms.pbc)")
    periodic = cell[pbc]
    sv = np.linalg.svd(periodic, compute_uv=False)
    if sv.min() <= 1e-10 * sv.max():
        raise ValueError(f"DP: the periodic cell vectors {periodic.tolist()} are linearly dependent (flat cell)")
    if pbc.all():
        return cell.reshape(9)
    normals = np.linalg.svd(periodic)[2][pbc.sum():]  # orthonormal basis of the complement of the periodic rows
    box = cell.copy()
    for row, normal in zip(np.flatnonzero(~pbc), normals):
        height = np.asarray(points, dtype=np.float64) @ normal
        box[row] = normal * (np.ptp(height) + rcut + VACUUM_MARGIN)
    return box.reshape(9)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all(a == b))


class DP(Calculator):
    """ASE calculator for a dpcore energy or spin model (the name and arguments of DeePMD-kit's ``DP``).

    model: a loaded dpcore model, a ``.dp``/``.yaml`` model file, or a training checkpoint (file, folder or
        prefix, as :func:`dpcore.train.checkpoint.resolve_checkpoint` accepts); loaded once.
    backend, device: where ``model.evaluate`` runs (``"numpy"`` default; any dpcore backend name and that
        framework's device string). The model caches its parameters per backend and compiling backends
        compile once per system size, so MD on one system rebuilds nothing but the neighbour list.
    type_dict: element symbol -> model type index; default: the model's ``type_map`` (element symbols).
    force_mode: ``"analytic"`` (the core's derivatives, every backend) or ``"autodiff"``.
    chunk_size, max_memory: memory of one model call, as :meth:`dpcore.EnergyModel.evaluate` (default: at most
        256 MiB of working memory; large systems are evaluated in chunks of centre atoms, same results).
    Other keywords (``label``, ``directory``, ...) go to ASE's Calculator.

    Per-system inputs: ``atoms.info["fparam"]`` (numb_fparam,) for models with frame parameters (optional
    when the model has a ``default_fparam``), ``atoms.arrays["aparam"]`` (N, numb_aparam) (or (N,) for
    one) for atomic parameters (``atoms.set_array("aparam", a)``), and for spin models non-collinear
    magnetic moments (N, 3) in μB from ``atoms.set_initial_magnetic_moments`` (held fixed, as in
    DeePMD-kit's spin-lattice MD; 0 on non-magnetic atoms). See the module docstring for the properties.
    """

    def __init__(self, model, backend: str = "numpy", device=None, type_dict: dict | None = None,
                 force_mode: str = "analytic", chunk_size: int | None = None, max_memory=None, **kwargs):
        Calculator.__init__(self, **kwargs)
        from .backends import get_backend
        from .infer.chunked import centres_per_call

        self.model = load_model(model)
        self.backend, self.device, self.force_mode = backend, device, force_mode
        centres_per_call(self.model.config, chunk_size, max_memory)  # a bad value fails here, not mid-MD
        self.memory = {"chunk_size": chunk_size, "max_memory": max_memory}
        get_backend(backend, device=device)  # a missing framework or an unknown name fails here, not mid-MD
        self.is_spin = isinstance(self.model, SpinEnergyModel)
        props = ["energy", "free_energy", "energies", "forces", "virial", "stress"]
        self.implemented_properties = props + (["magnetic_forces"] if self.is_spin else [])
        type_map = list(self.model.type_map)
        self.type_dict = dict(type_dict) if type_dict is not None else {name: i for i, name in enumerate(type_map)}
        for name, t in self.type_dict.items():
            if not 0 <= int(t) < len(type_map):
                raise ValueError(f"DP: type_dict[{name!r}] = {t} is not a type of the model (0..{len(type_map) - 1}, "
                                 f"type_map {type_map})")
        self._type_of_number = np.full(max(atomic_numbers.values()) + 1, -1, dtype=np.int64)  # Z -> type
        for name, t in self.type_dict.items():
            if name in atomic_numbers:
                self._type_of_number[atomic_numbers[name]] = int(t)
        fit = self.model.config["fitting_net"]
        self._numb_fparam, self._numb_aparam = int(fit.get("numb_fparam", 0)), int(fit.get("numb_aparam", 0))
        self._has_default_fparam = fit.get("default_fparam") is not None

    # -- inputs ------------------------------------------------------------------------------------------------
    def atom_types(self, atoms) -> np.ndarray:
        """(N,) int64 model types of the atoms' elements; a clear error for an element the model lacks."""
        types = self._type_of_number[atoms.numbers]
        if np.any(types < 0):
            bad = int(np.flatnonzero(types < 0)[0])
            raise ValueError(f"DP: element {atoms.get_chemical_symbols()[bad]!r} (atom {bad}) is not in the model's "
                             f"type_map {list(self.model.type_map)}"
                             + ("" if list(self.type_dict) == list(self.model.type_map) else
                                f" (type_dict {self.type_dict})"))
        return types

    def frame_params(self, atoms):
        """fparam (1, numb_fparam) or None and aparam (1, N, numb_aparam) or None, from ``atoms``."""
        fparam, aparam = atoms.info.get("fparam"), atoms.arrays.get("aparam")
        nf, na = self._numb_fparam, self._numb_aparam
        if fparam is not None:
            if nf == 0:
                raise ValueError("DP: atoms.info['fparam'] is set but the model takes no frame parameters (numb_fparam = 0)")
            fparam = np.asarray(fparam, dtype=np.float64)
            if fparam.size != nf:
                raise ValueError(f"DP: atoms.info['fparam'] has shape {fparam.shape}; the model needs numb_fparam = "
                                 f"{nf} values, shape ({nf},)")
            fparam = fparam.reshape(1, nf)
        elif nf > 0 and not self._has_default_fparam:
            raise ValueError(f"DP: the model needs {nf} frame parameter(s) and has no default_fparam: set "
                             f"atoms.info['fparam'] to an array of shape ({nf},)")
        if aparam is not None:
            if na == 0:
                raise ValueError("DP: atoms.arrays['aparam'] is set but the model takes no atomic parameters (numb_aparam = 0)")
            aparam = np.asarray(aparam, dtype=np.float64)
            if aparam.size != len(atoms) * na:
                raise ValueError(f"DP: atoms.arrays['aparam'] has shape {aparam.shape}; the model needs numb_aparam = "
                                 f"{na} per atom, shape ({len(atoms)}, {na})")
            aparam = aparam.reshape(1, len(atoms), na)
        elif na > 0:
            raise ValueError(f"DP: the model needs {na} atomic parameter(s) per atom: "
                             f"atoms.set_array('aparam', a) with a of shape ({len(atoms)}, {na})")
        return fparam, aparam

    def spins(self, atoms) -> np.ndarray:
        """(N, 3) float64 magnetic moments in μB (spin models): ``atoms.get_initial_magnetic_moments()``."""
        if not atoms.has("initial_magmoms"):
            raise ValueError(f"DP: this is a spin model (magnetic types {self._magnetic_types()}): set the magnetic "
                             f"moments with atoms.set_initial_magnetic_moments(m), m of shape ({len(atoms)}, 3) in μB")
        spin = np.asarray(atoms.get_initial_magnetic_moments(), dtype=np.float64)
        if spin.shape != (len(atoms), 3):
            hint = (" (collinear moments: replace them with atoms.set_initial_magnetic_moments(None), then "
                    "atoms.set_initial_magnetic_moments(np.outer(m, [0, 0, 1])) for moments along z)") if spin.ndim == 1 else ""
            raise ValueError(f"DP: a spin model needs non-collinear magnetic moments of shape ({len(atoms)}, 3) in μB, "
                             f"got shape {spin.shape}{hint}")
        return spin

    def _magnetic_types(self) -> list[str]:
        return [name for name, magnetic in zip(self.model.type_map, self.model.use_spin) if magnetic]

    # -- ASE protocol ------------------------------------------------------------------------------------------
    def check_state(self, atoms, tol=1e-15):
        """ASE's changes plus ``fparam`` (atoms.info) and ``aparam`` (atoms.arrays), which ASE does not track."""
        changes = Calculator.check_state(self, atoms, tol)
        if self.atoms is not None:
            if not _same(self.atoms.info.get("fparam"), atoms.info.get("fparam")):
                changes.append("fparam")
            if not _same(self.atoms.arrays.get("aparam"), atoms.arrays.get("aparam")):
                changes.append("aparam")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Evaluate every property of the current atoms at once (one model call) into ``self.results``."""
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        atype = self.atom_types(atoms)
        fparam, aparam = self.frame_params(atoms)
        coord = atoms.positions
        kw = dict(fparam=fparam, aparam=aparam, backend=self.backend, device=self.device, force_mode=self.force_mode,
                  **self.memory)
        if self.is_spin:
            spin = self.spins(atoms)
            virtual = coord + self.model.virtual_scale_mask[atype][:, None] * spin  # the neighbour list sees these too
            box = model_box(atoms.cell, atoms.pbc, np.concatenate([coord, virtual]), self.model.rcut)
            box = None if box is None else box[None]
            out = self.model.evaluate(coord[None], atype, spin[None], box, **kw)
        else:
            box = model_box(atoms.cell, atoms.pbc, coord, self.model.rcut)
            out = self.model.evaluate(coord[None], atype, None if box is None else box[None], **kw)
        energy = float(out["energy"][0, 0])
        virial = out["virial"][0].reshape(3, 3)
        self.results = {"energy": energy, "free_energy": energy, "energies": out["atom_energy"][0, :, 0],
                        "forces": out["force"][0], "virial": virial}
        if self.is_spin:
            self.results["magnetic_forces"] = out["force_mag"][0]
        why_not = self._no_stress_reason(atoms)
        if why_not is None:
            # W[k, d] = -dE/d eps[d, k]; ASE's stress is +dE/d eps / V for a symmetric strain
            self.results["stress"] = full_3x3_to_voigt_6_stress(-0.5 * (virial + virial.T) / atoms.get_volume())
        elif "stress" in properties:
            raise PropertyNotImplementedError(f"DP: no stress: {why_not}")

    @staticmethod
    def _no_stress_reason(atoms) -> str | None:
        if not np.any(atoms.pbc):
            return "the system is not periodic (atoms.pbc all False); the virial is in results['virial']"
        if atoms.cell.rank < 3:
            return f"the cell has rank {atoms.cell.rank}, so no volume; the virial is in results['virial']"
        return None

    def get_magnetic_forces(self, atoms=None) -> np.ndarray:
        """(N, 3) magnetic forces -dE/ds in eV/μB (spin models) of ``atoms`` (default: the last calculated)."""
        return self.get_property("magnetic_forces", self._atoms_or_last(atoms))

    def get_virial(self, atoms=None) -> np.ndarray:
        """(3, 3) virial W[k, d] in eV (DeePMD-kit's sign; ``-V * stress`` for non-spin models)."""
        return self.get_property("virial", self._atoms_or_last(atoms))

    def _atoms_or_last(self, atoms):
        if atoms is None and self.atoms is None:
            raise ValueError("DP: nothing calculated yet: pass the atoms, e.g. calc.get_magnetic_forces(atoms)")
        return atoms
