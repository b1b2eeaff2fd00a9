"""The spin model's derivatives (NumPy reference): force, magnetic force and virial against five-point finite
differences of the energy (also on a fresh model of DeePMD-kit's NiO example), and the antisymmetric virial."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from dpcore.conformance.cases import randomize_statistics
from dpcore.model.spin_model import SpinEnergyModel
from helpers import FD_TOL, TOL, random_fparam_aparam
from helpers.spin import MODELS, SYSTEMS, make_spin_model, spin_system

H = 1e-3  # finite-difference step (Å, μB, strain); five-point stencil as tests/test_physics.py
STENCIL = ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12))
NIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio_spin" / "data_0"


def _pairs_2n(model, coord, atype, spin, box, reach):
    """Distances of all pairs of the 2·nloc-atom system (magnetic virtual atoms only) within ``reach``."""
    from dpcore.nlist import build_neighbor_list
    from dpcore.pairs import pair_inputs, pair_vectors

    vs = model.virtual_scale_mask[atype]
    keep = np.concatenate([np.ones_like(vs, bool), vs > 0])
    c2 = np.concatenate([coord, coord + vs[None, :, None] * spin], axis=1)[:, keep]
    t2 = np.concatenate([atype, atype])[keep]
    nf = coord.shape[0]
    nl = build_neighbor_list(c2, np.broadcast_to(t2, (nf, t2.size)), box, reach, [400] * model.ntypes)
    pairs = pair_inputs(nl, np.broadcast_to(t2, (nf, t2.size)), model.ntypes)
    r = np.linalg.norm(pair_vectors(c2, None if box is None else box.reshape(-1, 3, 3), pairs), axis=-1)
    return r[pairs["nlist_mask"]]


def _step(model, coord, atype, spin, box, strain=False):
    """H, reduced so that no pair of the 2·nloc system crosses rcut during the stencil (a displacement moves a
    pair by up to 2 H, a spin change by up to vs H < H, a strain by up to 2 H rcut)."""
    rc = model.rcut
    gap = np.abs(_pairs_2n(model, coord, atype, spin, box, rc + 0.5) - rc).min()
    return min(H, gap / (4 * rc if strain else 4))


def _energy(model, coord, atype, spin, box, fparam, aparam):
    return model.evaluate(coord, atype, spin, box, fparam, aparam)["energy"][:, 0]


def _fd_grad(model, x_index, args):
    """-dE/dx by the five-point stencil, x = coord (x_index 0) or spin (x_index 2) of ``args``."""
    x = args[x_index]
    h = _step(model, *args[:4])
    fd = np.zeros_like(x)
    for i in range(x.shape[1]):
        for d in range(3):
            for o, w in STENCIL:
                moved = list(args)
                moved[x_index] = x.copy()
                moved[x_index][:, i, d] += o * h
                fd[:, i, d] -= w * _energy(model, *moved) / h
    return fd


def _fd_virial(model, coord, atype, spin, box, fparam, aparam):
    """W[k, d] = -dE/d eps_{dk} for r -> r (I + eps), box -> box (I + eps), spins FIXED."""
    h = _step(model, coord, atype, spin, box, strain=True)
    w = np.zeros((coord.shape[0], 3, 3))
    for a in range(3):
        for d in range(3):
            for o, wt in STENCIL:
                eps = np.eye(3)
                eps[a, d] += o * h
                b = None if box is None else (box.reshape(-1, 3, 3) @ eps).reshape(-1, 9)
                w[:, d, a] -= wt * _energy(model, coord @ eps, atype, spin, b, fparam, aparam) / h
    return w.reshape(-1, 9)


# ------------------------------------------------------------------------------------------------ derivatives
@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("model_name", MODELS)
def test_force_force_mag_virial_match_finite_differences(model_name, system):
    model = make_spin_model(model_name)
    model.params["out_bias"][:] = 0.0  # a constant offset only adds round-off to the differences
    coord, atype, spin, box = spin_system(model, system, seed=7)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    args = (coord, atype, spin, box, fparam, aparam)
    out = model.evaluate(*args, atomic=True)

    fd = _fd_grad(model, 0, args)
    assert np.abs(out["force"] - fd).max() <= FD_TOL * np.abs(fd).max()
    fdm = _fd_grad(model, 2, args)
    assert np.abs(fdm).max() > 0
    assert np.abs(out["force_mag"] - fdm).max() <= FD_TOL * np.abs(fdm).max()

    fdv = _fd_virial(model, *args)
    scale = np.abs(fdv).max()
    assert np.abs(out["virial"] - fdv).max() <= FD_TOL * scale
    # not symmetric (spins held fixed): both off-diagonal elements are checked above, and they differ
    w = out["virial"].reshape(-1, 3, 3)
    assert np.abs(w - np.swapaxes(w, 1, 2)).max() > 1e3 * FD_TOL * scale
    np.testing.assert_allclose(out["atom_virial"].sum(axis=1), out["virial"], rtol=0,
                               atol=TOL["float64"] * max(scale, 1.0))
    np.testing.assert_allclose(out["atom_energy"][..., 0].sum(axis=1), out["energy"][:, 0], rtol=TOL["float64"])


def test_antisymmetric_virial_is_the_spin_torque():
    """E is invariant under a joint rotation of positions, cell and spins, so the virial with spins held fixed
    has the antisymmetric part ``W - W^T = S^T Fm - Fm^T S`` (S, Fm: (natoms, 3) spins and magnetic forces)."""
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic", nframes=1, seed=3)
    out = model.evaluate(coord, atype, spin, box)
    w = out["virial"].reshape(3, 3)
    fm = out["force_mag"][0]
    torque = spin[0].T @ fm - fm.T @ spin[0]
    assert np.abs(torque).max() > 1e-3 * np.abs(w).max()
    np.testing.assert_allclose(w - w.T, torque, rtol=0, atol=TOL["float64"] * 100 * np.abs(w).max())


# ------------------------------------------------------------------------------------------------ NiO data
@pytest.mark.skipif(not NIO.is_dir(), reason=f"NiO spin data not found at {NIO}")
def test_nio_example_model_forces_match_finite_differences():
    """A fresh model of DeePMD-kit's spin example config on one NiO frame: FD on a few components."""
    cfg = {"type_map": ["Ni", "O"],
           "descriptor": {"type": "se_e2_a", "sel": [60, 60], "rcut_smth": 5.4, "rcut": 5.6, "neuron": [25, 50, 100],
                          "resnet_dt": False, "axis_neuron": 16, "type_one_side": True, "precision": "float64",
                          "seed": 1},
           "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64", "seed": 1},
           "spin": {"use_spin": [True, False], "virtual_scale": [0.3140]}}
    model = SpinEnergyModel.from_config(cfg)
    randomize_statistics(model.config, model.params, 3)
    model.params["out_bias"][:] = 0.0
    s = NIO / "set.000"
    coord, spin, box = (np.load(s / f"{k}.npy")[:1].reshape(1, -1, 3 if k != "box" else 9) for k in ("coord", "spin", "box"))
    box = box.reshape(1, 9)
    atype = np.loadtxt(NIO / "type.raw", dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sel overflow
        out = model.evaluate(coord, atype, spin, box, atomic=True)
    assert np.all(out["mask_mag"][0, :, 0] == (atype == 0))
    assert np.all(out["force_mag"][0, atype == 1] == 0)
    np.testing.assert_allclose(out["atom_virial"].sum(1), out["virial"], rtol=0,
                               atol=TOL["float64"] * np.abs(out["virial"]).max())
    h = _step(model, coord, atype, spin, box)
    for key, x_index, atom, d in (("force", 0, 3, 0), ("force", 0, 20, 2), ("force_mag", 2, 5, 1), ("force_mag", 2, 11, 2)):
        fd = 0.0
        for o, w in STENCIL:
            args = [coord, atype, spin, box]
            args[x_index] = args[x_index].copy()
            args[x_index][0, atom, d] += o * h
            fd -= w * model.evaluate(*args)["energy"][0, 0] / h
        assert abs(out[key][0, atom, d] - fd) <= FD_TOL * np.abs(out[key]).max(), (key, atom, d)
