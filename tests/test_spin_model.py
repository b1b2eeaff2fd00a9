"""The spin model on the NumPy reference: invariances (rotation of positions, spins and cell; translation;
permutation), non-magnetic atoms, padding atoms and per-frame types, input errors."""

import warnings

import numpy as np
import pytest

from helpers import TOL, random_fparam_aparam
from helpers.spin import SYSTEMS, make_spin_model, spin_system


# ------------------------------------------------------------------------------------------------ invariances
@pytest.mark.parametrize("system", SYSTEMS)
def test_rotation_of_positions_spins_and_cell(system):
    model = make_spin_model("three_types")
    coord, atype, spin, box = spin_system(model, system, nframes=1)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    rot, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
    b = None if box is None else (box.reshape(-1, 3, 3) @ rot).reshape(-1, 9)
    out = model.evaluate(coord @ rot, atype, spin @ rot, b, fparam, aparam, atomic=True)
    tol = TOL["float64"] * 10
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    np.testing.assert_allclose(out["atom_energy"], ref["atom_energy"], rtol=0, atol=tol * np.abs(ref["atom_energy"]).max())
    for key in ("force", "force_mag"):
        np.testing.assert_allclose(out[key], ref[key] @ rot, rtol=0, atol=tol * np.abs(ref[key]).max())
    vr = rot.T @ ref["virial"].reshape(3, 3) @ rot
    np.testing.assert_allclose(out["virial"].reshape(3, 3), vr, rtol=0, atol=tol * np.abs(vr).max())
    avr = rot.T @ ref["atom_virial"].reshape(-1, 3, 3) @ rot
    np.testing.assert_allclose(out["atom_virial"].reshape(-1, 3, 3), avr, rtol=0, atol=tol * np.abs(avr).max())
    # rotating the positions alone (spins fixed) changes the energy: the model sees the spin directions
    out = model.evaluate(coord @ rot, atype, spin, b, fparam, aparam)
    assert abs(out["energy"][0, 0] - ref["energy"][0, 0]) > 1e3 * tol * abs(ref["energy"][0, 0])


def test_translation_and_permutation():
    model = make_spin_model("three_types")
    coord, atype, spin, box = spin_system(model, "pbc_triclinic", nframes=1)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    tol = TOL["float64"] * 10
    out = model.evaluate(coord + np.array([0.3, -1.7, 2.2]), atype, spin, box, fparam, aparam)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    np.testing.assert_allclose(out["force_mag"], ref["force_mag"], rtol=0, atol=tol * np.abs(ref["force_mag"]).max())
    perm = np.random.default_rng(6).permutation(coord.shape[1])
    out = model.evaluate(coord[:, perm], atype[perm], spin[:, perm], box, fparam, aparam[:, perm], atomic=True)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    for key in ("force", "force_mag", "atom_virial", "mask_mag"):
        np.testing.assert_allclose(out[key], ref[key][:, perm], rtol=0, atol=tol * np.abs(ref[key]).max())


def test_non_magnetic_atoms():
    """force_mag exactly 0 and mask_mag False for non-magnetic atoms; their spins change nothing at all."""
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    out = model.evaluate(coord, atype, spin, box, atomic=True)
    magnetic = atype == 0
    assert out["mask_mag"].dtype == np.bool_ and out["mask_mag"].shape == coord.shape[:2] + (1,)
    assert np.all(out["mask_mag"][:, :, 0] == magnetic[None])
    assert np.all(out["force_mag"][:, ~magnetic] == 0.0)
    assert np.all(np.abs(out["force_mag"][:, magnetic]).max(axis=-1) > 0)
    assert out["mask"].dtype == np.int32 and np.all(out["mask"] == 1)
    other = spin.copy()
    other[:, ~magnetic] = np.random.default_rng(1).normal(size=other[:, ~magnetic].shape)
    again = model.evaluate(coord, atype, other, box, atomic=True)
    for k in out:
        np.testing.assert_array_equal(again[k], out[k])


def test_frames_with_padding_atoms_and_per_frame_types():
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    one = model.evaluate(coord[:1], atype, spin[:1], box[:1], atomic=True)
    pad = np.concatenate([coord[:1], np.zeros((1, 2, 3))], axis=1)
    pad_spin = np.concatenate([spin[:1], np.ones((1, 2, 3))], axis=1)
    padded = model.evaluate(pad, np.concatenate([atype, [-1, -1]]), pad_spin, box[:1], atomic=True)
    tol = TOL["float64"]
    np.testing.assert_allclose(padded["energy"], one["energy"], rtol=tol)
    for key in ("force", "force_mag", "atom_virial"):
        np.testing.assert_allclose(padded[key][:, :-2], one[key], rtol=0, atol=tol * np.abs(one[key]).max())
        assert np.all(padded[key][:, -2:] == 0)
    assert padded["mask"][0, -2:].tolist() == [0, 0] and not padded["mask_mag"][0, -2:].any()
    # per-frame types (no type sorting) give the numbers of each frame alone
    atypes = np.stack([atype, np.roll(atype, 1)])
    batch = model.evaluate(coord, atypes, spin, box, atomic=True)
    for f in range(2):
        single = model.evaluate(coord[f:f + 1], atypes[f], spin[f:f + 1], box[f:f + 1], atomic=True)
        for key in ("energy", "force", "force_mag", "virial", "atom_virial"):
            np.testing.assert_allclose(batch[key][f:f + 1], single[key], rtol=0,
                                       atol=tol * max(np.abs(single[key]).max(), 1.0))


def test_spin_input_errors():
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    with pytest.raises(ValueError, match=r"needs spin of shape \(nframes, natoms, 3\)"):
        model.evaluate(coord, atype, None, box)
    with pytest.raises(ValueError, match=r"spin must have shape \(nframes, natoms, 3\) = \(2, 8, 3\)"):
        model.evaluate(coord, atype, spin[:, :-1], box)
    bad = spin.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="spin contains NaN"):
        model.evaluate(coord, atype, bad, box)
    with pytest.raises(ValueError, match="model has 2 types"):
        model.evaluate(coord, np.full_like(atype, 2), spin, box)  # a virtual type is not an input type
    with pytest.raises(ValueError, match="force_mode must be"):
        model.evaluate(coord, atype, spin, box, force_mode="numeric")
    with pytest.raises(NotImplementedError, match="no automatic differentiation"):
        model.evaluate(coord, atype, spin, box, force_mode="autodiff")


def test_zero_spin_of_a_magnetic_atom_warns():
    from dpcore.model.spin_model import ZeroSpinWarning

    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    spin[:, np.flatnonzero(atype == 1)] = 0.0  # non-magnetic: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.evaluate(coord, atype, spin, box)
    spin[0, np.flatnonzero(atype == 0)[0]] = 0.0
    with pytest.warns(ZeroSpinWarning, match="1 magnetic atom"), np.errstate(divide="ignore", invalid="ignore"):
        out = model.evaluate(coord, atype, spin, box)
    assert np.all(np.isfinite(out["energy"])) and not np.all(np.isfinite(out["force"]))
