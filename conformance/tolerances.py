"""THE tolerance tables, shared by the conformance suite, the shipped physics checks and dpcore's tests.

Every table is keyed by precision: the least precise of the model's network precisions
(:func:`compute_precision`) and, in the cross-backend comparison, the output dtype.  An error is always
relative to the largest magnitude of the quantity, ``max |x - r| / max |r|`` (never entry by entry).

``TOLERANCES``: a backend's output against the NumPy reference (:mod:`dpcore.conformance.compare`); also
the sum rules of the physics checks (per-atom energies and virials sum to the totals).

``FD_TOL`` / ``FD_TOLERANCES``: analytic derivatives (forces, magnetic forces, virials) against five-point
finite differences of the energy with step ``FD_STEP`` (Å, μB, strain), relative to the largest component
of the finite-difference result.  Truncation is O(h^4); round-off ~ eps |E| / h dominates in float32, where
the check can only catch errors of a few per cent.

``INVARIANCE_TOLERANCES``: outputs of transformed inputs (translation, rotation, permutation, frames
evaluated alone, the 2x2x2 supercell) against the transformed outputs.  Rotating or shifting positions
changes them by round-off ~ |r| eps, amplified by the model: 10 x ``TOLERANCES``.

``PERIODIC_IMAGE_TOLERANCES``: atoms moved by whole lattice vectors (up to 3 cells, |r| ~ 10 Å): 100 x
``TOLERANCES``.

``SMOOTHNESS_TOLERANCES``: energy and force changes as a neighbour crosses rcut (from rcut - d to rcut + d,
d = 1e-12 and 1e-4 Å), relative to the energy scale sum_i |e_i| and the largest force.  With the C2 switch
of se_e2_a the change over 1e-4 Å is O(1e-12); a switch that is only C0 or C1 changes it by O(1e-4) or
O(1e-8).
"""

TOLERANCES = {"float64": 1e-12, "float32": 1e-5}
FD_TOL = 1e-8
FD_TOLERANCES = {"float64": FD_TOL, "float32": 5e-3}
FD_STEP = {"float64": 1e-3, "float32": 1e-2}
FD_ROUNDOFF = 1.0
INVARIANCE_TOLERANCES = {"float64": 1e-11, "float32": 1e-4}
PERIODIC_IMAGE_TOLERANCES = {"float64": 1e-10, "float32": 1e-4}
SMOOTHNESS_TOLERANCES = {"float64": 1e-10, "float32": 1e-5}

# least to most precise
PRECISION_ORDER = ["float16", "bfloat16", "float32", "float64"]


def compute_precision(config: dict) -> str:
    """The least precise network precision of a model config (float16 < bfloat16 < float32 < float64)."""
    from dpcore.precision import precision_name

    names = [precision_name(config["descriptor"]["precision"]), precision_name(config["fitting_net"]["precision"])]
    return min(names, key=PRECISION_ORDER.index)
