"""The fused table kernel (backends/table_kernel.py) against the array version of dpcore.tabulated, and its use by
the NumPy backend: every branch of the table (below, inside both steps, beyond the end), float32, odd shapes, NaN
inputs (no read outside the table), the registration switch, and whole compressed models with and without it.
Framework backends: tests/isolated/test_table_kernel_backends.py."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import make_model, random_system

pytest.importorskip("numba")  # an optional extra (dpcore[fast]); CI installs it with [all]

from dpcore import xp as X  # noqa: E402
from dpcore.backends import get_backend, table_kernel  # noqa: E402
from dpcore.descriptor import tabulate as T  # noqa: E402
from dpcore.tabulated import table_geometry, tabulated_contraction, tabulated_contraction_vjp  # noqa: E402

OP = "tabulated_contraction"


def _table(dtype="float64", ng=7, seed=0):
    """A random table with the geometry of a compressed net: rows of step 0.1 on [-1, 2), 0.5 on [2, 5)."""
    info = [-1.0, 2.0, 5.0, 0.1, 0.5, -1.0]
    nspline = 30 + 6
    rng = np.random.default_rng(seed)
    return rng.normal(size=(nspline, 6, ng)).astype(dtype), info


def _rows(shape, seed=1, dtype="float64"):
    """Environment rows whose inputs r[..., 0] cover every branch: below lo, both steps, beyond xmax; in float64
    also the knots and ends exactly (a random table jumps there: float32 arithmetic may pick the other row, which a
    real, continuous table does not notice)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=shape + (4,))
    r[..., 0] = rng.uniform(-2.0, 7.0, size=shape)
    flat = r.reshape(-1, 4)
    if dtype == "float64":
        knots = [-1.0, 1.9999999, 2.0, 4.99, 5.0, 2.0 + 1e-15, -1.0 + 3 * 0.1]
        flat[:len(knots), 0] = knots[: len(flat)]
    return r.astype(dtype)


@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 4, 9), (13, 1), (2, 3, 0)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernel_equals_the_array_version(shape, dtype):
    table, info = _table(dtype)
    geometry = table_geometry(info, table.shape[0])
    r = _rows(shape, dtype=dtype)
    A_ref, cache = tabulated_contraction(table, info, r)
    A = table_kernel.contract(table, geometry, r)
    tol = 1e-12 if dtype == "float64" else 1e-4
    assert A.shape == A_ref.shape and A.dtype == A_ref.dtype
    np.testing.assert_allclose(A, A_ref, rtol=tol, atol=tol * max(1.0, np.abs(A_ref).max(initial=0.0)))
    gA = np.random.default_rng(2).normal(size=A.shape).astype(dtype)
    gr_ref = tabulated_contraction_vjp(gA, cache)
    gr = table_kernel.contract_vjp(table, geometry, r, gA)
    assert gr.shape == r.shape and gr.dtype == r.dtype
    np.testing.assert_allclose(gr, gr_ref, rtol=tol, atol=tol * max(1.0, np.abs(gr_ref).max(initial=0.0)))


def test_kernel_reads_only_the_table_whatever_the_input():
    """NaN and infinite inputs: NaN (or inf) results, never a read outside the table or a crash; a row of NaN
    input leaves the other centres' sums exact."""
    table, info = _table()
    geometry = table_geometry(info, table.shape[0])
    r = _rows((3, 4))
    r[0, 1, 0], r[1, 2, 0] = np.nan, np.inf
    A = table_kernel.contract(table, geometry, r)
    assert np.isnan(A[0]).all() and not np.isfinite(A[1]).all()
    np.testing.assert_allclose(A[2], tabulated_contraction(table, info, r[2:])[0][0], rtol=1e-12)
    gr = table_kernel.contract_vjp(table, geometry, r, np.ones_like(A))
    assert np.isnan(gr[0, 1]).all() and np.isfinite(gr[2]).all()


def _plain_and_compressed():
    model = make_model(descriptor={"sel": [20, 28], "rcut": 3.6, "rcut_smth": 0.4})
    return model, T.compress_model(copy.deepcopy(model), 0.8)


def test_numpy_backend_registers_and_uses_the_kernel():
    be = get_backend("numpy")
    assert be.settings["table_kernel"].startswith("numba ")
    assert X.kernel(be.namespace(), OP) is not None
    plain, compressed = _plain_and_compressed()
    assert be.table_kernel(compressed.config) and not be.table_kernel(plain.config)
    coord, atype, box = random_system(natoms=14, nframes=2, box_len=6.0, seed=5)
    calls = []
    fused = X.kernel(be.namespace(), OP)

    class Spy:
        def contract(self, *a):
            calls.append("contract")
            return fused.contract(*a)

        def contract_vjp(self, *a):
            calls.append("vjp")
            return fused.contract_vjp(*a)

    X.register_kernel("numpy", OP, Spy())
    try:
        out = compressed.evaluate(coord, atype, box, atomic=True)
        assert "contract" in calls and "vjp" in calls
        X.register_kernel("numpy", OP, None)  # the array version
        ref = compressed.evaluate(coord, atype, box, atomic=True)
    finally:
        X.register_kernel("numpy", OP, fused)
    for k in ("energy", "atom_energy", "force", "virial", "atom_virial"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-12, atol=1e-12 * np.abs(ref[k]).max(), err_msg=k)
    np.testing.assert_allclose(out["force"], plain.evaluate(coord, atype, box)["force"], atol=1e-10)


def test_dpcore_kernels_0_switches_the_kernel_off():
    code = ("import dpcore.backends as b, dpcore.xp as X; be = b.get_backend('numpy'); "
            "print(be.settings['table_kernel'], X.kernel(be.namespace(), 'tabulated_contraction') is None)")
    env = {**os.environ, "DPCORE_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["arrays", "(DPCORE_KERNELS=0)", "True"]


def test_tables_the_kernel_may_not_run_on_use_the_array_version():
    """A backend's ``usable`` says no (tensors autograd records, another device): ``contract`` gives None (the caller
    runs the array version) and ``contract_vjp`` computes the array version's backward itself."""
    table, info = _table()
    geometry = table_geometry(info, table.shape[0])
    r = _rows((2, 5))
    fused = table_kernel.TableKernel(usable=lambda *arrays: False)
    assert fused.contract(table, geometry, r) is None
    A, cache = tabulated_contraction(table, info, r)
    gA = np.random.default_rng(3).normal(size=A.shape)
    np.testing.assert_array_equal(fused.contract_vjp(table, geometry, r, gA), tabulated_contraction_vjp(gA, cache))
