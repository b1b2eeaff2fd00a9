"""The real water data (../shared/data/water): derivatives on a 192-atom periodic DFT frame."""

from pathlib import Path

import numpy as np
import pytest

from helpers import FD_TOL, TOL, make_model

WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water" / "data_0"
H = 1e-4  # Å; truncation error O(H^2) ~ 1e-10 here, round-off ~ 1e-16 |E| / H


@pytest.fixture(scope="module")
def water():
    if not (WATER / "type.raw").exists():
        pytest.skip(f"water data not found at {WATER} (the shared DFT data sits beside the repository)")
    s = WATER / "set.000"
    coord = np.load(s / "coord.npy")[:2].reshape(2, -1, 3).astype(np.float64)  # stored as float32
    box = np.load(s / "box.npy")[:2].astype(np.float64)
    atype = np.loadtxt(WATER / "type.raw", dtype=int)
    model = make_model(descriptor={"sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5, "neuron": [25, 50, 100],
                                   "axis_neuron": 16, "type_one_side": True},
                       fitting={"neuron": [240, 240, 240]})
    # a zero energy offset keeps |E| small, so central differences resolve the forces to ~1e-10 eV/Å
    model.params["out_bias"][:] = 0.0
    model.params["fitting"]["bias_atom_e"][:] = 0.0
    return model, coord, atype, box


def test_water_forces_virial_finite_differences(water):
    model, coord, atype, box = water
    out = model.evaluate(coord[:1], atype, box[:1], atomic=True)
    assert out["force"].shape == (1, 192, 3) and out["atom_virial"].shape == (1, 192, 9)
    rng = np.random.default_rng(0)
    scale = np.abs(out["force"]).max()
    # FD round-off bound: a few ulps of |E| divided by the step
    noise = 8 * np.finfo(np.float64).eps * abs(out["energy"][0, 0]) / H
    for i, d in zip(rng.integers(0, 192, 6), rng.integers(0, 3, 6)):
        cp, cm = coord[:1].copy(), coord[:1].copy()
        cp[0, i, d] += H
        cm[0, i, d] -= H
        fd = -(model.evaluate(cp, atype, box[:1])["energy"] - model.evaluate(cm, atype, box[:1])["energy"])[0, 0] / (2 * H)
        assert abs(fd - out["force"][0, i, d]) <= FD_TOL * scale + noise
    eps = np.zeros((3, 3))
    eps[0, 1] = H
    e = [model.evaluate(coord[:1] @ (np.eye(3) + s * eps), atype, (box[:1].reshape(3, 3) @ (np.eye(3) + s * eps)).reshape(1, 9))["energy"][0, 0] for s in (1, -1)]
    w10 = -(e[0] - e[1]) / (2 * H)  # W[k=1, d=0] = -dE/d eps_{01}
    assert abs(w10 - out["virial"][0, 3]) <= FD_TOL * np.abs(out["virial"]).max() + noise
    np.testing.assert_allclose(out["atom_virial"].sum(1), out["virial"], rtol=0, atol=TOL["float64"] * np.abs(out["virial"]).max())


def test_water_batch_matches_single_frames(water):
    model, coord, atype, box = water
    both = model.evaluate(coord, atype, box)
    for f in range(2):
        one = model.evaluate(coord[f:f + 1], atype, box[f:f + 1])
        np.testing.assert_allclose(both["energy"][f], one["energy"][0], rtol=TOL["float64"])
        np.testing.assert_allclose(both["force"][f], one["force"][0], rtol=0, atol=TOL["float64"] * np.abs(one["force"]).max())
