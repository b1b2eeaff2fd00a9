"""Derivative checks: forces, magnetic forces and virials against five-point finite differences of the
energy, and the sum rules (per-atom energies and virials add up to the totals).

    f'(x) ~ [-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)] / (12 h)        (truncation O(h^4))

The step is ``FD_STEP[precision]``, reduced so that no pair distance crosses rcut inside the stencil
(descriptor ``exclude_types`` make the energy jump there by definition): a displacement by h moves a pair
by up to 2h, a strain by up to 2h rcut.  Every displaced configuration is one frame of a few batched
``evaluate`` calls on the backend being checked.
"""

from __future__ import annotations

import numpy as np

from .checks_base import CheckResult, Subject, cutoff_gap, rel_error, resolve_system, result
from .tolerances import FD_ROUNDOFF, FD_STEP, FD_TOLERANCES, TOLERANCES

STENCIL = ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12))  # (offset in h, weight)


def fd_gradient(subject: Subject, s: dict, key: str, h: float, atoms) -> np.ndarray:
    """``-dE/dx`` (nf, n, 3) for ``x = s[key]`` (``"coord"``: force in eV/Å at fixed spin; ``"spin"``:
    magnetic force in eV/μB), on the atoms ``atoms`` (zero elsewhere)."""
    x = s[key]
    variants = []
    for i in atoms:
        for d in range(3):
            for o, _ in STENCIL:
                moved = x.copy()
                moved[:, i, d] += o * h
                variants.append(dict(s, **{key: moved}))
    energy = subject.energies(variants).reshape(len(atoms), 3, len(STENCIL), x.shape[0])
    grad = np.zeros_like(x)
    grad[:, list(atoms)] = -np.einsum("ados,o->sad", energy, np.array([w for _, w in STENCIL])) / h
    return grad


def fd_virial(subject: Subject, s: dict, h: float) -> np.ndarray:
    """Virial (nf, 9) eV, ``W[k, d] = -dE/d eps_dk`` for ``r -> r (I + eps)``, ``box -> box (I + eps)``
    (spins held fixed), index ``3 k + d``."""
    variants = []
    for a in range(3):
        for d in range(3):
            for o, _ in STENCIL:
                eps = np.eye(3)
                eps[a, d] += o * h
                box = None if s.get("box") is None else (s["box"].reshape(-1, 3, 3) @ eps).reshape(-1, 9)
                variants.append(dict(s, coord=s["coord"] @ eps, box=box))
    nf = s["coord"].shape[0]
    energy = subject.energies(variants).reshape(3, 3, len(STENCIL), nf)
    w = -np.einsum("adof,o->fda", energy, np.array([w for _, w in STENCIL])) / h
    return w.reshape(nf, 9)


def _sum_rule(parts: np.ndarray, total: np.ndarray) -> float:
    """``max |sum_i parts_i - total| / max sum_i |parts_i|`` (the round-off scale of the sum)."""
    nf = parts.shape[0]
    parts, total = parts.reshape(nf, parts.shape[1], -1), total.reshape(nf, -1)
    err = float(np.max(np.abs(parts.sum(axis=1) - total)))
    scale = float(np.max(np.abs(parts).sum(axis=1)))
    return err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def fd_system(subject: Subject, system, h0: float) -> tuple[str, dict, float, str]:
    """(name, system dict, cutoff gap, note) for the finite differences.  A generated system (a catalogue name or
    a spec) is scaled uniformly by up to 5 % when a pair distance lies within ``4 h0 rcut`` of rcut, so that the
    step need not shrink (round-off grows as 1/h); a system given as arrays is used as it is."""
    name, s = resolve_system(system, subject.model)
    gap, want = cutoff_gap(subject, s), 4 * h0 * subject.rcut
    if gap >= want or (isinstance(system, dict) and "coord" in system):
        return name, s, gap, ""
    best = (gap, 1.0, s)
    for k in range(1, 11):
        for factor in (1 - 0.005 * k, 1 + 0.005 * k):
            t = dict(s, coord=s["coord"] * factor, box=None if s.get("box") is None else s["box"] * factor)
            g = cutoff_gap(subject, t)
            if g > best[0]:
                best = (g, factor, t)
        if best[0] >= want:
            break
    note = f"positions scaled by {best[1]:g} (a pair was {gap:.1e} Å from rcut); " if best[1] != 1 else ""
    return name, best[2], best[0], note


def check_finite_differences(model, system="pbc_triclinic", backend="numpy", *, force_modes=("analytic",),
                             atoms=None, step: float | None = None) -> list[CheckResult]:
    """Forces (and for spin models magnetic forces) and the virial of ``model`` on ``backend`` against
    five-point finite differences of its energy on the same backend; per-atom energies and virials against
    the totals (``sum_rules``, tolerance ``TOLERANCES``).

    ``system``: a catalogue system name, a system spec or a dict of arrays (see :func:`resolve_system`);
    ``force_modes``: "analytic" (the core's derivatives) and/or "autodiff" (the backend's); ``atoms``:
    indices of the atoms whose derivatives are checked (default: every real atom); ``step``: largest
    finite-difference step (default ``FD_STEP[precision]``).  Errors are relative to ``max |FD|``; the
    tolerance is ``FD_TOLERANCES[precision]``, or the round-off floor ``FD_ROUNDOFF eps sum_i |e_i| / (h max |FD|)``
    when that is larger (small forces, float32): the detail says so.
    """
    sub = Subject(model, backend)
    h0 = step or FD_STEP[sub.precision]
    name, s, gap, note = fd_system(sub, system, h0)
    if gap <= 0:
        raise ValueError(f"system {name}: a pair distance equals rcut exactly; finite differences are undefined")
    atype = np.broadcast_to(s["atype"], s["coord"].shape[:2])
    atoms = [i for i in range(atype.shape[1]) if np.any(atype[:, i] >= 0)] if atoms is None else list(atoms)
    h, hs = min(h0, gap / 4), min(h0, gap / (4 * sub.rcut))
    fd = {"force": fd_gradient(sub, s, "coord", h, atoms), "virial": fd_virial(sub, s, hs)}
    if sub.spin:
        fd["force_mag"] = fd_gradient(sub, s, "spin", h, atoms)
    steps = {"force": h, "virial": hs, "force_mag": h}
    out: list[CheckResult] = []
    for mode in (force_modes,) if isinstance(force_modes, str) else force_modes:
        got = sub.evaluate(s, force_mode=mode)
        tag = "" if mode == "analytic" else f" [{mode}]"
        energy_scale = float(np.max(np.abs(got["atom_energy"]).sum(axis=1)))
        for key, ref in fd.items():
            x, ref = (got[key], ref) if key == "virial" else (got[key][:, atoms], ref[:, atoms])
            floor = FD_ROUNDOFF * np.finfo(sub.precision).eps * energy_scale / (steps[key] * max(np.abs(ref).max(), 1e-300))
            tol = max(FD_TOLERANCES[sub.precision], floor)
            detail = note + f"h = {steps[key]:.1e}, {len(atoms)} atoms" + (
                f"; tolerance raised to the round-off floor {floor:.1e}" if floor > FD_TOLERANCES[sub.precision] else "")
            out.append(result("finite_differences", key + tag, rel_error(x, ref), tol, sub, name, detail))
        for part, total in (("atom_energy", "energy"), ("atom_virial", "virial")):
            out.append(result("sum_rules", f"{part}{tag}", _sum_rule(got[part], got[total]), TOLERANCES[sub.precision],
                              sub, name, f"sum over atoms vs {total}"))
    return out
