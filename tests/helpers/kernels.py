"""Fixtures that run a test with each implementation of a computation the backends may replace by a kernel."""

import numpy as np
import pytest


@pytest.fixture(autouse=True, params=["arrays", "numba"])
def both_neighbor_rows(request):
    """The test runs with the whole-array neighbour rows of dpcore.nlist (the definition), then with the Numba kernel
    the backends register (backends/nlist_kernel.py; numba is an optional extra, installed in CI). Import it into
    a test module to apply it to every test there."""
    from dpcore.xp import kernel, register_kernel

    before = kernel(np, "neighbor_rows")
    if request.param == "numba":
        pytest.importorskip("numba")
        from dpcore.backends import nlist_kernel

        register_kernel("numpy", "neighbor_rows", nlist_kernel.neighbor_rows)
    else:
        register_kernel("numpy", "neighbor_rows", None)
    yield request.param
    register_kernel("numpy", "neighbor_rows", before)
