"""The spin model on JAX (own process): both force modes equal NumPy; the compiled forward is cached."""

import numpy as np
import pytest

pytest.importorskip("jax")

from dpcore.model import spin_model  # noqa: E402
from helpers import TOL  # noqa: E402
from test_spin import make_spin_model, spin_system  # noqa: E402

KEYS = ("energy", "atom_energy", "force", "force_mag", "virial", "atom_virial", "mask_mag", "mask")


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_evaluate_equals_numpy_and_reuses_the_compiled_forward(force_mode):
    model = make_spin_model("three_types")
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    rng = np.random.default_rng(0)
    fparam, aparam = rng.normal(size=(2, 1)), rng.normal(size=(2, coord.shape[1], 2))
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    out = model.evaluate(coord, atype, spin, box, fparam, aparam, backend="jax", atomic=True, force_mode=force_mode)
    for k in KEYS:
        assert out[k].dtype == ref[k].dtype and out[k].shape == ref[k].shape, k
        scale = max(np.abs(ref[k]).max(), 1e-300)
        assert np.abs(out[k].astype(float) - ref[k].astype(float)).max() <= TOL["float64"] * scale, k
    compiled = dict(spin_model._compiled)
    model.evaluate(coord + 0.01, atype, spin, box, fparam, aparam, backend="jax", atomic=True, force_mode=force_mode)
    assert spin_model._compiled.keys() == compiled.keys()  # same config, blocks and modes: no new compilation
    assert all(spin_model._compiled[k] is compiled[k] for k in compiled)
