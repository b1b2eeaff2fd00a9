"""Physics checks you can run on ANY model on ANY backend: derivatives, symmetries, smoothness, periodicity.

Like nequip's model test mixins and scikit-learn's ``check_array_api_input``, these are shipped, documented
checks, not only dpcore's tests.  Each returns a list of :class:`CheckResult` (``name``, ``output``,
``error``, ``tol``, ``passed``, ``backend``, ``system``, ``precision``, ``detail``) instead of asserting::

    from dpcore.conformance.checks import run_checks, format_table, assert_passed

    results = run_checks("frozen.dp", backend="torch")     # or an EnergyModel / SpinEnergyModel / model section
    print(format_table(results))
    assert_passed(results)                                  # AssertionError listing the failures

The checks (model: a model object, a ``.dp`` / ``.yaml`` file or an input.json ``model`` section; system: a
catalogue system name, a system spec or a dict of arrays ``coord``, ``atype``, ``box``, [``spin``, ``fparam``,
``aparam``], see :func:`~dpcore.conformance.checks_base.resolve_system`):

=============================  ==========================================================================
``check_finite_differences``   forces, magnetic forces (spin), virial vs five-point FD of the energy;
                               per-atom energy and virial sums (``sum_rules``)
``check_translation``          every output unchanged when all atoms move by one vector
``check_rotation``             energies invariant, forces ``F R``, virials ``R^T W R`` (spins rotated too)
``check_permutation``          totals invariant, per-atom outputs permuted
``check_periodic_images``      atoms moved by whole lattice vectors: every output unchanged
``check_batch``                a frame alone equals the same frame in a batch
``check_supercell``            2x2x2 supercell: 8x energy and virial, the same forces
``check_smoothness``           energy and forces continuous as a neighbour crosses rcut
=============================  ==========================================================================

Tolerances come from :mod:`dpcore.conformance.tolerances`, keyed by the model's precision.  Evaluation goes
through the model's public ``evaluate(..., backend=name)``, so a framework is imported only when its backend
is asked for.  ``dpcore conformance --physics`` runs :func:`run_checks` on every backend, each in its own
process (:mod:`dpcore.conformance.physics`).
"""

from __future__ import annotations

import warnings

from .checks_base import CheckResult, resolve_model, resolve_system
from .checks_fd import check_finite_differences
from .checks_symmetry import (check_batch, check_periodic_images, check_permutation, check_rotation, check_smoothness,
                              check_supercell, check_translation)

# name -> (function, needs a periodic system, needs >= 2 frames); smoothness builds its own cluster
SYSTEM_CHECKS = {
    "finite_differences": (check_finite_differences, False, False),
    "translation": (check_translation, False, False),
    "rotation": (check_rotation, False, False),
    "permutation": (check_permutation, False, False),
    "periodic_images": (check_periodic_images, True, False),
    "batch": (check_batch, False, True),
    "supercell": (check_supercell, True, False),
}
CHECKS = [*SYSTEM_CHECKS, "smoothness"]
DEFAULT_SYSTEMS = ("pbc_triclinic", "small_box", "cluster")


def autodiff_modes(backend: str) -> tuple:
    """("analytic", "autodiff") on backends with automatic differentiation, else ("analytic",)."""
    from dpcore.backends import get_backend

    return ("analytic", "autodiff") if get_backend(backend).capabilities.get("autodiff") else ("analytic",)


def _recorded(fn, *args, **kwargs) -> list[CheckResult]:
    """Run one check; warnings raised meanwhile (e.g. sel overflow) are added to each result's detail."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn(*args, **kwargs)
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    for r in res:
        r.detail = "; ".join(filter(None, [r.detail, *notes]))
    return res


def run_checks(model, backend: str = "numpy", *, systems=DEFAULT_SYSTEMS, checks=None, force_modes=None,
               fd_atoms=None) -> list[CheckResult]:
    """Every check of ``checks`` (default :data:`CHECKS`) on every system of ``systems`` it applies to
    (periodic checks on periodic systems, ``batch`` on several frames; ``smoothness`` once).

    ``force_modes``: derivative paths of the finite-difference check (default: "analytic", plus "autodiff" on
    backends that have it); ``fd_atoms``: limit the finite differences to these atom indices (cost).
    """
    model = resolve_model(model)
    checks = list(CHECKS if checks is None else checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {CHECKS}")
    modes = autodiff_modes(backend) if force_modes is None else force_modes
    out: list[CheckResult] = []
    for system in systems:
        name, s = resolve_system(system, model)
        s["name"] = name
        for check in checks:
            if check == "smoothness":
                continue
            fn, periodic, batch = SYSTEM_CHECKS[check]
            if (periodic and s.get("box") is None) or (batch and s["coord"].shape[0] < 2):
                continue
            kwargs = {"force_modes": modes, "atoms": fd_atoms} if check == "finite_differences" else {}
            if check == "finite_differences" and isinstance(system, str):
                out += _recorded(fn, model, system, backend, **kwargs)  # a generated system may be rescaled
            else:
                out += _recorded(fn, model, s, backend, **kwargs)
    if "smoothness" in checks:
        out += _recorded(check_smoothness, model, backend)
    return out


def failures(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.passed]


def format_table(results: list[CheckResult]) -> str:
    """Markdown table, one row per result: check, output, system, backend, error, tolerance, result."""
    lines = ["| check | output | system | backend | error | tol | result |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.output} | {r.system} | {r.backend} | {r.error:.1e} | {r.tol:.0e} | "
                     f"{'pass' if r.passed else '**FAIL**'} |")
    return "\n".join(lines) + "\n"


def assert_passed(results: list[CheckResult]) -> None:
    """Raise AssertionError listing every failed result (for use in a test suite)."""
    bad = failures(results)
    if bad:
        raise AssertionError(f"{len(bad)} physics check(s) failed:\n" + "\n".join(
            f"  {r.name} / {r.output} / {r.system} / {r.backend}: error {r.error:.2e} > tol {r.tol:.0e}"
            + (f" ({r.detail})" if r.detail else "") for r in bad))


__all__ = ["CHECKS", "CheckResult", "assert_passed", "check_batch", "check_finite_differences", "check_periodic_images",
           "check_permutation", "check_rotation", "check_smoothness", "check_supercell", "check_translation",
           "failures", "format_table", "run_checks"]
