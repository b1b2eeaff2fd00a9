"""Shared pieces of the physics checks (:mod:`dpcore.conformance.checks`): the result record, the model and
system a check runs on, batched evaluation through the model's public ``evaluate``, the error measure.

Host side (NumPy); a framework is imported only by ``model.evaluate(..., backend=name)``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .tolerances import TOLERANCES, compute_precision

PAIR_BUDGET = 200_000  # atoms x neighbours per evaluate call when many displaced frames are stacked


@dataclass
class CheckResult:
    """One measured quantity of one check: ``error`` (relative, see each check) against ``tol``.

    ``name``: the check ("finite_differences", "rotation", ...); ``output``: the quantity ("force",
    "virial", "force [autodiff]", ...); ``system``: the system it ran on; ``backend``: the backend name.
    """

    name: str
    output: str
    error: float
    tol: float
    passed: bool
    backend: str = "numpy"
    system: str = ""
    precision: str = ""
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def rel_error(x, ref) -> float:
    """``max |x - ref| / max |ref|`` (0 when both vanish, inf when only ``ref`` does); inf for NaN."""
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"shape {x.shape} != reference shape {ref.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(ref))):
        return float("inf")
    err = float(np.max(np.abs(x - ref), initial=0.0))
    scale = float(np.max(np.abs(ref), initial=0.0))
    return err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def result(name: str, output: str, error: float, tol: float, subject: "Subject", system: str,
           detail: str = "") -> CheckResult:
    return CheckResult(name, output, float(error), float(tol), bool(error <= tol), subject.backend, system,
                       subject.precision, detail)


def results(name: str, pairs: dict, tol: float, subject: "Subject", system: str, detail: str = "") -> list[CheckResult]:
    """One :class:`CheckResult` per ``{output: (x, ref)}`` of a check, error :func:`rel_error`."""
    return [result(name, output, rel_error(x, ref), tol, subject, system, detail) for output, (x, ref) in pairs.items()]


# ------------------------------------------------------------------------------------------------ the subject
def resolve_model(model):
    """A model object: an ``EnergyModel`` / ``SpinEnergyModel`` (or anything with their ``evaluate``), a model
    file (``.dp`` / ``.yaml``, :func:`dpcore.load`) or an input.json ``model`` section (fresh, seed 1)."""
    import dpcore

    if isinstance(model, (str, Path)):
        return dpcore.load(model)
    if isinstance(model, dict):
        return dpcore.model_from_config(model, seed=1)
    if not hasattr(model, "evaluate"):
        raise TypeError(f"expected a model, a model file or a model section, got {type(model).__name__}")
    return model


def is_spin(model) -> bool:
    return getattr(model, "model_type", "standard") == "spin_ener"


class Subject:
    """A model on a backend: evaluation of system dicts (coord, atype, box, [spin, fparam, aparam]) as NumPy."""

    def __init__(self, model, backend: str = "numpy", force_mode: str = "analytic"):
        self.model = resolve_model(model)
        self.backend = getattr(backend, "name", backend)
        self.force_mode = force_mode
        self.spin = is_spin(self.model)
        self.precision = compute_precision(self.model.config)
        if self.precision not in TOLERANCES:
            raise ValueError(f"no physics-check tolerances for precision {self.precision} (known: {sorted(TOLERANCES)})")
        self.rcut = float(self.model.rcut)

    def evaluate(self, s: dict, force_mode: str | None = None, atomic: bool = True) -> dict:
        """All outputs of the frames of system dict ``s`` (NumPy arrays, see ``EnergyModel.evaluate``)."""
        args = (s["coord"], s["atype"]) + ((s["spin"],) if self.spin else ())
        return self.model.evaluate(*args, s.get("box"), s.get("fparam"), s.get("aparam"), backend=self.backend,
                                   atomic=atomic, force_mode=force_mode or self.force_mode)

    def energies(self, variants: list[dict]) -> np.ndarray:
        """Energies (len(variants), nf) of many variants of one system, stacked as frames, in chunks."""
        nf, n = variants[0]["coord"].shape[:2]
        nnei = sum(self.model.sel) * (2 if self.spin else 1)
        chunk = max(1, PAIR_BUDGET // max(1, nf * n * nnei))
        out = []
        for k in range(0, len(variants), chunk):
            group = variants[k:k + chunk]
            stacked = {key: (None if group[0][key] is None else np.concatenate([v[key] for v in group]))
                       for key in group[0] if key != "atype"}
            atype = group[0]["atype"]
            stacked["atype"] = atype if atype.ndim == 1 else np.concatenate([v["atype"] for v in group])
            out.append(self.evaluate(stacked, atomic=False)["energy"][:, 0].reshape(len(group), nf))
        return np.concatenate(out)


def resolve_system(system, model) -> tuple[str, dict]:
    """(name, system dict) of a catalogue system name (``"pbc_triclinic"``, ``"small_box"``, ``"cluster"``, ...,
    sized from the model's rcut and sel, see :mod:`dpcore.conformance.cases`), a system spec or a dict of arrays
    ``coord`` (nf, n, 3) Å, ``atype`` (n,) or (nf, n), ``box`` (nf, 9) Å or None, and ``spin`` (nf, n, 3) μB,
    ``fparam``, ``aparam`` where the model needs them."""
    from .cases import SYSTEMS, build_system

    if isinstance(system, str):
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; catalogue systems: {sorted(SYSTEMS)}")
        return system, build_system(SYSTEMS[system], model)
    if "coord" not in system:
        return system.get("name", "custom"), build_system(system, model)
    s = {"coord": np.asarray(system["coord"], dtype=np.float64), "atype": np.asarray(system["atype"]),
         "box": None if system.get("box") is None else np.asarray(system["box"], np.float64).reshape(-1, 9)}
    for key in ("spin", "fparam", "aparam"):
        if system.get(key) is not None:
            s[key] = np.asarray(system[key], dtype=np.float64)
    nf = s["coord"].shape[0]
    if s["box"] is not None and s["box"].shape[0] != nf:
        s["box"] = np.broadcast_to(s["box"], (nf, 9)).copy()
    if "fparam" in s and s["fparam"].ndim == 1:  # one fparam for every frame
        s["fparam"] = np.broadcast_to(s["fparam"], (nf, s["fparam"].size)).copy()
    if is_spin(model) and "spin" not in s:
        raise ValueError("a spin model needs spin (nf, natoms, 3) in the system")
    return system.get("name", "custom"), s


def frames(s: dict, index) -> dict:
    """The frames ``index`` (a slice) of system dict ``s``."""
    return {k: (v if v is None or (k == "atype" and v.ndim == 1) else v[index]) for k, v in s.items()}


# ------------------------------------------------------------------------------------------------ geometry
_SHELL = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def points(subject: Subject, s: dict, f: int) -> np.ndarray:
    """(m, 3) positions the model sees in frame ``f``: the real atoms (no padding) and, for spin models, the
    magnetic virtual atoms ``r + virtual_scale * s``."""
    atype = np.broadcast_to(s["atype"], s["coord"].shape[:2])[f]
    real = atype >= 0
    x = s["coord"][f][real]
    if not subject.spin:
        return x
    vs = subject.model.virtual_scale_mask[atype[real]]
    return np.concatenate([x, (x + vs[:, None] * s["spin"][f][real])[vs > 0]])


def cutoff_gap(subject: Subject, s: dict, reach: float = 0.5) -> float:
    """Smallest ``|r - rcut|`` over pair distances r < rcut + reach (all periodic images): how far positions
    may move before a neighbour crosses rcut (descriptor exclusions make the energy jump there)."""
    rc, gap = subject.rcut, np.inf
    for f in range(s["coord"].shape[0]):
        x = points(subject, s, f)
        d = x[None, :, :] - x[:, None, :]
        if s.get("box") is None:
            shifts = np.zeros((1, 3))
        else:
            cell = s["box"][f].reshape(3, 3)
            d = d - np.round(d @ np.linalg.inv(cell)) @ cell
            heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
            nmax = np.ceil((rc + reach) / heights).astype(int)
            grid = itertools.product(*(range(-k, k + 1) for k in nmax))
            shifts = np.array(list(grid), dtype=float) @ cell
        r = np.linalg.norm(d[:, :, None, :] + shifts[None, None], axis=-1)
        r = r[(r > 0) & (r < rc + reach)]
        if r.size:
            gap = min(gap, float(np.abs(r - rc).min()))
    return gap
