"""Symmetry and locality checks: the model's outputs of transformed inputs against the transformed outputs.

* translation: energies, forces and virials unchanged when every atom moves by the same vector;
* rotation: positions, cell (and spins) rotated by R: energies unchanged, forces and magnetic forces
  ``F R``, virials ``R^T W R`` (per atom too);
* permutation: atoms relabelled: totals unchanged, per-atom outputs permuted;
* periodic images: atoms moved by whole lattice vectors: every output unchanged;
* batch: each frame evaluated alone equals the same frame in the batch;
* supercell: the 2x2x2 supercell has 8x the energy and virial, and every copy the forces of the cell;
* smoothness: energy and forces continuous as a neighbour crosses rcut (every pair of types).

Errors are ``max |x - expected| / max |expected|`` per output; tolerances from
:mod:`dpcore.conformance.tolerances` (``INVARIANCE_TOLERANCES``, ``PERIODIC_IMAGE_TOLERANCES``,
``SMOOTHNESS_TOLERANCES``), keyed by the model's precision.
"""

from __future__ import annotations

import numpy as np

from .checks_base import CheckResult, Subject, frames, resolve_system, result, results
from .tolerances import INVARIANCE_TOLERANCES, PERIODIC_IMAGE_TOLERANCES, SMOOTHNESS_TOLERANCES

PER_ATOM = ("atom_energy", "force", "atom_virial", "force_mag")  # axis 1 runs over the atoms


def _outputs(sub: Subject) -> list[str]:
    return ["energy", "atom_energy", "force", "virial", "atom_virial"] + (["force_mag"] if sub.spin else [])


def _setup(model, system, backend):
    sub = Subject(model, backend)
    name, s = resolve_system(system, sub.model)
    return sub, name, s, sub.evaluate(s)


def _periodic(s: dict, check: str) -> np.ndarray:
    if s.get("box") is None:
        raise ValueError(f"the {check} check needs a periodic system (a box)")
    return s["box"].reshape(-1, 3, 3)


def check_translation(model, system="pbc_triclinic", backend="numpy", *, shift=(0.3, -1.7, 2.2)) -> list[CheckResult]:
    """Every atom moved by ``shift`` (Å): every output unchanged."""
    sub, name, s, ref = _setup(model, system, backend)
    out = sub.evaluate(dict(s, coord=s["coord"] + np.asarray(shift, dtype=np.float64)))
    return results("translation", {k: (out[k], ref[k]) for k in _outputs(sub)},
                   INVARIANCE_TOLERANCES[sub.precision], sub, name)


def rotate_tensor(w: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``R^T W R`` of virials stored as (..., 9) with index ``3 k + d``."""
    return np.einsum("ki,...kl,lj->...ij", rot, w.reshape(w.shape[:-1] + (3, 3)), rot).reshape(w.shape)


def check_rotation(model, system="pbc_triclinic", backend="numpy", *, seed: int = 5) -> list[CheckResult]:
    """Positions, cell and spins rotated by a random orthogonal R (``r -> r R``): energies unchanged, forces and
    magnetic forces ``F R``, virials and per-atom virials ``R^T W R``."""
    sub, name, s, ref = _setup(model, system, backend)
    rot, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    moved = dict(s, coord=s["coord"] @ rot)
    if s.get("box") is not None:
        moved["box"] = (s["box"].reshape(-1, 3, 3) @ rot).reshape(-1, 9)
    if sub.spin:
        moved["spin"] = s["spin"] @ rot
    out = sub.evaluate(moved)
    expect = {k: (ref[k] @ rot if k in ("force", "force_mag") else rotate_tensor(ref[k], rot)
                  if k in ("virial", "atom_virial") else ref[k]) for k in _outputs(sub)}
    return results("rotation", {k: (out[k], expect[k]) for k in expect}, INVARIANCE_TOLERANCES[sub.precision], sub, name)


def check_permutation(model, system="pbc_triclinic", backend="numpy", *, seed: int = 6) -> list[CheckResult]:
    """Atoms relabelled by a random permutation: totals unchanged, per-atom outputs permuted alike."""
    sub, name, s, ref = _setup(model, system, backend)
    perm = np.random.default_rng(seed).permutation(s["coord"].shape[1])
    moved = {k: (v if v is None or k in ("box", "fparam") else v[..., perm] if k == "atype" else v[:, perm])
             for k, v in s.items()}
    out = sub.evaluate(moved)
    pairs = {k: (out[k], ref[k][:, perm] if k in PER_ATOM else ref[k]) for k in _outputs(sub)}
    return results("permutation", pairs, INVARIANCE_TOLERANCES[sub.precision], sub, name)


def check_periodic_images(model, system="pbc_triclinic", backend="numpy", *, seed: int = 1) -> list[CheckResult]:
    """Every atom moved by a random whole number (-3..3) of each lattice vector: every output unchanged."""
    sub, name, s, ref = _setup(model, system, backend)
    cells = _periodic(s, "periodic_images")
    n = np.random.default_rng(seed).integers(-3, 4, size=s["coord"].shape[1:])
    out = sub.evaluate(dict(s, coord=s["coord"] + np.einsum("id,fdk->fik", n.astype(float), cells)))
    return results("periodic_images", {k: (out[k], ref[k]) for k in _outputs(sub)},
                   PERIODIC_IMAGE_TOLERANCES[sub.precision], sub, name)


def check_batch(model, system="pbc_triclinic", backend="numpy") -> list[CheckResult]:
    """Each frame evaluated alone against the same frame in the batch."""
    sub, name, s, ref = _setup(model, system, backend)
    alone = [sub.evaluate(frames(s, slice(f, f + 1))) for f in range(s["coord"].shape[0])]
    pairs = {k: (np.concatenate([a[k] for a in alone]), ref[k]) for k in _outputs(sub)}
    return results("batch", pairs, INVARIANCE_TOLERANCES[sub.precision], sub, name)


def check_supercell(model, system="pbc_triclinic", backend="numpy") -> list[CheckResult]:
    """The 2x2x2 supercell (8 copies, cell 2 x box): energy and virial / 8 equal the cell's, and every copy's
    per-atom outputs equal the cell's."""
    sub, name, s, ref = _setup(model, system, backend)
    cells = _periodic(s, "supercell")
    copies = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=float)
    nf, n = s["coord"].shape[:2]
    coord = (s["coord"][:, None] + np.einsum("cd,fdk->fck", copies, cells)[:, :, None]).reshape(nf, 8 * n, 3)
    big = dict(s, coord=coord, box=2 * s["box"], atype=np.tile(s["atype"], (1,) * (s["atype"].ndim - 1) + (8,)))
    for key in ("spin", "aparam"):
        if s.get(key) is not None:
            big[key] = np.tile(s[key], (1, 8, 1))
    out = sub.evaluate(big)
    pairs = {}
    for k in _outputs(sub):
        if k in PER_ATOM:
            pairs[k] = (out[k], np.tile(ref[k], (1, 8) + (1,) * (ref[k].ndim - 2)))
        else:
            pairs[f"{k} / 8"] = (out[k] / 8, ref[k])
    return results("supercell", pairs, INVARIANCE_TOLERANCES[sub.precision], sub, name)


def check_smoothness(model, backend="numpy", *, steps=(1e-12, 1e-4), inner: float = 1.0) -> list[CheckResult]:
    """A three-atom cluster: atoms 0 and 1 ``inner`` Å apart, atom 2 on the x axis at ``rcut - d`` and ``rcut + d``
    from atom 0, for every pair of types (spins along z) except the descriptor's ``exclude_types``, where the
    energy jumps at rcut by definition (SPEC "Decisions", like a ``sel`` smaller than the neighbour count).  For each ``d`` in ``steps``: the energy change
    relative to ``max sum_i |e_i|`` and the force change relative to ``max |F|``.  se_e2_a's switch is C2, so
    both vanish to round-off at d = 1e-12 Å, and the energy change is O(d^3) at d = 1e-4 Å.  The force change
    is reported for the smallest step only (it is O(d^2))."""
    sub = Subject(model, backend)
    nt, rc = sub.model.ntypes, sub.rcut
    excluded = {tuple(p) for p in sub.model.config["descriptor"].get("exclude_types", [])}
    types = [(a, b) for a in range(nt) for b in range(nt) if (a, b) not in excluded and (b, a) not in excluded]
    if not types:
        return []
    signs = (-1.0, 1.0)
    coord = np.array([[[0.0, 0.0, 0.0], [0.0, inner, 0.0], [rc + sgn * d, 0.0, 0.0]]
                      for _ in types for d in steps for sgn in signs])
    nf = coord.shape[0]
    s = {"coord": coord, "atype": np.array([[a, a, b] for a, b in types for _ in steps for _ in signs]), "box": None}
    fcfg = sub.model.config["fitting_net"]
    rng = np.random.default_rng(0)
    if fcfg.get("numb_fparam", 0):
        s["fparam"] = np.repeat(rng.normal(size=(1, fcfg["numb_fparam"])), nf, axis=0)
    if fcfg.get("numb_aparam", 0):
        s["aparam"] = np.repeat(rng.normal(size=(1, 3, fcfg["numb_aparam"])), nf, axis=0)
    if sub.spin:
        s["spin"] = np.tile(np.array([0.0, 0.0, 1.0]), (nf, 3, 1))
    out = sub.evaluate(s)
    shape = (len(types), len(steps), len(signs))
    energy = out["energy"].reshape(shape)
    force = out["force"].reshape(shape + (3, 3))
    e_scale = float(np.max(np.abs(out["atom_energy"]).sum(axis=1)))
    f_scale = float(np.max(np.abs(out["force"])))
    tol, res = SMOOTHNESS_TOLERANCES[sub.precision], []

    def ratio(change, scale):
        return change / scale if scale > 0 else (0.0 if change == 0 else float("inf"))

    for k, d in enumerate(steps):
        de = float(np.max(np.abs(energy[:, k, 1] - energy[:, k, 0])))
        res.append(result("smoothness", f"energy (rcut ± {d:g} Å)", ratio(de, e_scale), tol, sub, "3-atom cluster",
                          f"{len(types)} type pairs, max |dE| = {de:.1e} eV"))
        if k == 0:
            df = float(np.max(np.abs(force[:, k, 1] - force[:, k, 0])))
            res.append(result("smoothness", f"force (rcut ± {d:g} Å)", ratio(df, f_scale), tol, sub, "3-atom cluster",
                              f"{len(types)} type pairs, max |dF| = {df:.1e} eV/Å"))
    return res
