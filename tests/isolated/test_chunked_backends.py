"""Evaluation in chunks of centre atoms on the autodiff backends (``BACKENDS``, one per process): the energy and
spin models in chunks equal one pass with analytic and autodiff forces, periodic and not, with per-atom virials
and an uneven last chunk (NumPy: tests/test_chunked_eval.py).  JAX compiles once per chunk type-block layout
(~10 s each on a loaded 2-core machine), so it runs one case whose chunks share their layout; PyTorch runs all."""

import numpy as np
import pytest

from helpers import make_model, random_fparam_aparam, random_system
from helpers.isolation import backend_under_test, import_framework
from helpers.spin import make_spin_model, spin_system

BACKENDS = ("jax", "torch")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)

CHUNK_TOL = 1e-12  # chunked vs one pass, relative to the largest |value| of each output (float64)


def assert_same(got: dict, ref: dict):
    assert set(got) == set(ref)
    for key, want in ref.items():
        want = want.astype(np.float64)
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
        assert float(np.abs(got[key].astype(np.float64) - want).max(initial=0.0)) <= CHUNK_TOL * scale, key


TORCH_ONLY = pytest.mark.backends("torch")
ENERGY_CASES = [pytest.param("autodiff", True, 5, id="autodiff-pbc-2x5")] + [
    pytest.param(mode, periodic, 4, id=f"{mode}-{'pbc' if periodic else 'cluster'}-3x4", marks=TORCH_ONLY)
    for mode in ("analytic", "autodiff") for periodic in (True, False)]


@pytest.mark.parametrize("force_mode, periodic, chunk_size", ENERGY_CASES)  # 10 atoms, 5 of each type
def test_energy_model_chunks_equal_one_pass(force_mode, periodic, chunk_size):
    model = make_model(descriptor={"sel": [16, 16]}, fitting={"numb_aparam": 1})
    coord, atype, box = random_system(natoms=10, nframes=1, box_len=6.0, seed=3)
    box = box if periodic else None
    _, aparam = random_fparam_aparam(model, 1, 10)
    kw = dict(backend=BACKEND, force_mode=force_mode, atomic=True)
    ref = model.evaluate(coord, atype, box, aparam=aparam, chunk_size=100, **kw)
    assert_same(model.evaluate(coord, atype, box, aparam=aparam, chunk_size=chunk_size, **kw), ref)  # 4: last padded
    numpy_ref = model.evaluate(coord, atype, box, aparam=aparam, atomic=True, chunk_size=chunk_size)
    assert_same(ref, numpy_ref)


@TORCH_ONLY
@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_spin_model_chunks_equal_one_pass(force_mode):
    model = make_spin_model("three_types")
    coord, atype, spin, box = spin_system(model, "pbc_triclinic", nframes=1)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    kw = dict(backend=BACKEND, force_mode=force_mode, atomic=True)
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, chunk_size=100, **kw)
    assert_same(model.evaluate(coord, atype, spin, box, fparam, aparam, chunk_size=3, **kw), ref)
