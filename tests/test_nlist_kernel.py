"""The Numba neighbour-row kernel (backends/nlist_kernel.py) against the whole-array NumPy rows of dpcore.nlist:
the same rows and overflow counts, bit for bit, on dense and sparse cell lists, ties, padding atoms, overflowing
and mixed-type lists, pair exclusions and chunks of centres; and its registration by the backends.
tests/test_nlist.py runs every brute-force comparison with both."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")  # an optional extra (dpcore[fast]); CI installs it with [all]

from dpcore import xp as X  # noqa: E402
from dpcore.backends import get_backend, nlist_kernel  # noqa: E402
from dpcore.nlist import build_neighbor_list, cell_list, centre_neighbors  # noqa: E402

OP = "neighbor_rows"
WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water" / "data_0"


@pytest.fixture
def restore_registry():
    before = X.kernel(np, OP)
    yield
    X.register_kernel("numpy", OP, before)


def both(fn):
    """fn() with the array rows, then with the kernel's."""
    X.register_kernel("numpy", OP, None)
    arrays = fn()
    X.register_kernel("numpy", OP, nlist_kernel.neighbor_rows)
    return arrays, fn()


def assert_same_rows(coord, atype, box, rcut, sel, centres=None, pair_exclude_types=(), mixed_types=False):
    cells = cell_list(coord, np.asarray(atype), box, rcut)
    centres = np.arange(len(atype)) if centres is None else centres
    (rows_a, most_a), (rows_k, most_k) = both(
        lambda: centre_neighbors(cells, centres, sel, pair_exclude_types, mixed_types=mixed_types))
    np.testing.assert_array_equal(rows_k, rows_a)
    np.testing.assert_array_equal(most_k, most_a)
    assert rows_k.dtype == np.int64 and rows_k.shape == (len(centres), int(np.sum(sel)))
    return cells, rows_k, most_k


def random_periodic(seed, nloc, box, ntypes=2):
    rng = np.random.default_rng(seed)
    box = np.asarray(box, dtype=float)
    return rng.uniform(-0.3, 1.3, size=(nloc, 3)) @ box, rng.integers(0, ntypes, size=nloc), box


@pytest.mark.usefixtures("restore_registry")
@pytest.mark.parametrize(("box", "nloc", "rcut", "sel"), [
    (np.diag([10.0, 10.0, 10.0]), 80, 4.5, [30, 40]),
    (np.array([[8.0, 0.0, 0.0], [6.5, 5.0, 0.0], [-5.5, 4.0, 5.5]]), 40, 5.0, [60, 60]),
    (np.array([[2.6, 0.0, 0.0], [1.1, 2.4, 0.0], [0.7, -0.9, 2.2]]), 3, 6.0, [300, 300]),  # several image shells
], ids=["cubic", "triclinic", "cell-smaller-than-rcut"])
def test_periodic_rows_equal(box, nloc, rcut, sel):
    coord, atype, box = random_periodic(7, nloc, box)
    _, rows, most = assert_same_rows(coord, atype, box, rcut, sel)
    assert np.sum(rows >= 0) > 0 and most[-1] > 0


@pytest.mark.usefixtures("restore_registry")
def test_sparse_cell_list_rows_equal():
    rng = np.random.default_rng(4)
    coord = np.concatenate([rng.uniform(0, 5, (12, 3)), rng.uniform(0, 5, (12, 3)) + [3000.0, -2000.0, 500.0]])
    cells, rows, _ = assert_same_rows(coord, rng.integers(0, 3, 24), None, 3.0, [10, 10, 10])
    assert cells.starts is None  # the binary-search branch of the kernel


@pytest.mark.usefixtures("restore_registry")
def test_ties_keep_the_candidate_order():
    # a simple cubic lattice: every centre has 6 neighbours at exactly 2 Å, 12 at 2 sqrt 2, ...
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.0
    atype = np.arange(len(grid)) % 2
    _, rows, most = assert_same_rows(grid, atype, np.diag([8.0] * 3), 4.1, [20, 20])
    assert most[-1] == 6 + 12 + 8 + 6  # 2, 2.83, 3.46 and 4 Å shells


@pytest.mark.usefixtures("restore_registry")
def test_padding_overflow_mixed_and_excluded_rows_equal():
    coord, atype, box = random_periodic(11, 60, np.diag([9.0, 9.0, 9.0]), ntypes=3)
    atype[[2, 17]] = -1
    assert_same_rows(coord, atype, box, 5.0, [4, 3, 2])  # overflowing every type block
    assert_same_rows(coord, atype, box, 5.0, [25, 25, 25], pair_exclude_types=[[0, 1], [2, 2]])
    _, rows, most = assert_same_rows(coord, atype, box, 5.0, 12, mixed_types=True)
    assert most[-1] > 12 and np.all(rows[[2, 17]] == -1)


@pytest.mark.usefixtures("restore_registry")
def test_chunks_of_centres_give_the_rows_of_the_full_list():
    coord, atype, box = random_periodic(3, 50, np.diag([9.5, 8.0, 10.5]))
    cells, full, _ = assert_same_rows(coord, atype, box, 4.0, [20, 20])
    centres = np.random.default_rng(0).permutation(50)[:17]
    _, part, _ = assert_same_rows(coord, atype, box, 4.0, [20, 20], centres=centres)
    np.testing.assert_array_equal(part, full[centres])
    _, empty, most = assert_same_rows(coord, atype, box, 4.0, [20, 20], centres=np.zeros(0, dtype=np.int64))
    assert empty.shape == (0, 40) and np.all(most == 0)


@pytest.mark.usefixtures("restore_registry")
@pytest.mark.skipif(not WATER.exists(), reason="../shared/data/water not present")
def test_water_neighbor_list_equal():
    coord = np.load(WATER / "set.000" / "coord.npy")[:2].reshape(2, -1, 3)
    box = np.load(WATER / "set.000" / "box.npy")[:2]
    atype = np.loadtxt(WATER / "type.raw", dtype=int)
    a, k = both(lambda: build_neighbor_list(coord, np.tile(atype, (2, 1)), box, 6.0, [46, 92]))
    for name in ("nlist", "mapping", "shift"):
        np.testing.assert_array_equal(getattr(k, name), getattr(a, name))


@pytest.mark.usefixtures("restore_registry")
def test_build_neighbor_list_runs_the_registered_kernel():
    calls = []

    def spy(*args):
        calls.append(args[1].shape)
        return nlist_kernel.neighbor_rows(*args)

    X.register_kernel("numpy", OP, spy)
    coord, atype, box = random_periodic(5, 20, np.diag([7.0] * 3))
    build_neighbor_list(coord[None], atype, box.reshape(1, 9), 3.5, [20, 20])
    assert calls == [(20,)]


def test_backends_register_it_unless_switched_off():
    backend = get_backend("numpy")
    assert backend.settings["nlist_kernel"].startswith("numba ")
    assert X.kernel(np, OP) is nlist_kernel.neighbor_rows
    code = ("import numpy as np; from dpcore import xp; from dpcore.backends import get_backend; "
            "b = get_backend('numpy'); print(b.settings['nlist_kernel'], xp.kernel(np, 'neighbor_rows'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "DPCORE_KERNELS": "0"}).stdout
    assert out.strip() == "arrays (DPCORE_KERNELS=0) None"
