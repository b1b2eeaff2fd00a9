"""Physics of the NumPy reference: derivatives, invariances, smoothness, periodic images, precision."""

import warnings

import numpy as np
import pytest

from helpers import random_fparam_aparam, FD_TOL, TOL, make_model, random_system

H = 1e-3  # finite-difference step, Å (five-point stencil: truncation O(H^4), round-off ~ eps |E| / H)
STENCIL = ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12))  # (offset in H, weight): f' = sum w f(x + o H) / H

MODELS = {
    "two_side": {},
    "one_side": {"descriptor": {"type_one_side": True}},
    "exclude": {"descriptor": {"exclude_types": [[0, 1]]}},
    "fparam_aparam": {"fitting": {"numb_fparam": 2, "numb_aparam": 1}},
    "resnet_gelu": {"descriptor": {"neuron": [2, 4, 8], "resnet_dt": True, "activation_function": "gelu"},
                    "fitting": {"neuron": [16, 32], "activation_function": "silu"}},
    "softplus_protect": {"descriptor": {"activation_function": "softplus", "env_protection": 0.1},
                         "fitting": {"activation_function": "relu6"}},
    "atom_excl_vacuum": {"descriptor": {"set_davg_zero": True}, "fitting": {"atom_ener": [1.0, None]},
                         "atom_exclude_types": [1], "pair_exclude_types": [[1, 1]]},
}
SYSTEMS = {
    "pbc_triclinic": dict(natoms=12, box_len=5.0),
    "small_box": dict(natoms=3, box_len=2.6, min_dist=0.8),  # several image shells for rcut 4
    "cluster": dict(natoms=10, box_len=4.5),
}


def _system(name, nframes=2, seed=0):
    coord, atype, box = random_system(nframes=nframes, seed=seed, **SYSTEMS[name])
    return coord, atype, (None if name == "cluster" else box)


def _energy(model, coord, atype, box, fparam, aparam):
    return model.evaluate(coord, atype, box, fparam, aparam)["energy"][:, 0]


def _step(model, coord, atype, box, strain=False):
    """H, reduced so that no pair distance crosses rcut during the stencil (descriptor exclude_types make
    the energy jump there by definition, SPEC "Decisions"); a displacement moves a pair by up to 2 H,
    a strain by up to 2 H rcut."""
    from dpcore.nlist import build_neighbor_list
    from dpcore.pairs import pair_inputs, pair_vectors

    rc = model.config["descriptor"]["rcut"]
    nl = build_neighbor_list(coord, np.broadcast_to(atype, coord.shape[:2]), box, rc + 0.5, [200, 200])
    pairs = pair_inputs(nl, np.broadcast_to(atype, coord.shape[:2]), 2)
    r = np.linalg.norm(pair_vectors(coord, None if box is None else box.reshape(-1, 3, 3), pairs), axis=-1)
    gap = np.abs(r[pairs["nlist_mask"]] - rc).min()
    return min(H, gap / (4 * rc if strain else 4))


def _fd_forces(model, coord, atype, box, fparam, aparam):
    h = _step(model, coord, atype, box)
    fd = np.zeros_like(coord)
    for i in range(coord.shape[1]):
        for d in range(3):
            for o, w in STENCIL:
                c = coord.copy()
                c[:, i, d] += o * h
                fd[:, i, d] -= w * _energy(model, c, atype, box, fparam, aparam) / h
    return fd


def _fd_virial(model, coord, atype, box, fparam, aparam):
    """W[k, d] = -dE/d eps_{dk} for r -> r (I + eps), box -> box (I + eps)."""
    h = _step(model, coord, atype, box, strain=True)
    w = np.zeros((coord.shape[0], 3, 3))
    for a in range(3):
        for d in range(3):
            for o, wt in STENCIL:
                eps = np.eye(3)
                eps[a, d] += o * h
                b = None if box is None else (box.reshape(-1, 3, 3) @ eps).reshape(-1, 9)
                w[:, d, a] -= wt * _energy(model, coord @ eps, atype, b, fparam, aparam) / h
    return w.reshape(-1, 9)


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("model_name", MODELS)
def test_forces_and_virial_match_finite_differences(model_name, system):
    model = make_model(**MODELS[model_name])
    model.params["out_bias"][:] = 0.0  # a constant offset only adds round-off to the differences
    coord, atype, box = _system(system, seed=35)  # no pair near rcut: stencil steps >= 4.5e-4 Å
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    out = model.evaluate(coord, atype, box, fparam, aparam, atomic=True)
    fd = _fd_forces(model, coord, atype, box, fparam, aparam)
    scale = np.abs(fd).max()
    assert scale > 0
    assert np.abs(out["force"] - fd).max() <= FD_TOL * scale
    fdv = _fd_virial(model, coord, atype, box, fparam, aparam)
    assert np.abs(out["virial"] - fdv).max() <= FD_TOL * np.abs(fdv).max()
    np.testing.assert_allclose(out["atom_virial"].sum(axis=1), out["virial"], rtol=0, atol=TOL["float64"] * max(np.abs(fdv).max(), 1.0))
    np.testing.assert_allclose(out["atom_energy"][..., 0].sum(axis=1), out["energy"][:, 0], rtol=TOL["float64"])


@pytest.mark.parametrize("system", SYSTEMS)
def test_translation_rotation_permutation_invariance(system):
    model = make_model(**MODELS["fparam_aparam"])
    coord, atype, box = _system(system, nframes=1)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    ref = model.evaluate(coord, atype, box, fparam, aparam, atomic=True)
    tol = TOL["float64"] * 10
    # translation
    out = model.evaluate(coord + np.array([0.3, -1.7, 2.2]), atype, box, fparam, aparam)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    np.testing.assert_allclose(out["force"], ref["force"], rtol=0, atol=tol * np.abs(ref["force"]).max())
    # rotation of positions and cell: energy invariant, forces and virial covariant
    rot, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
    b = None if box is None else (box.reshape(-1, 3, 3) @ rot).reshape(-1, 9)
    out = model.evaluate(coord @ rot, atype, b, fparam, aparam)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    np.testing.assert_allclose(out["force"], ref["force"] @ rot, rtol=0, atol=tol * np.abs(ref["force"]).max())
    vr = rot.T @ ref["virial"].reshape(3, 3) @ rot
    np.testing.assert_allclose(out["virial"].reshape(3, 3), vr, rtol=0, atol=tol * np.abs(vr).max())
    # permutation of atoms (per-atom outputs follow)
    perm = np.random.default_rng(6).permutation(coord.shape[1])
    out = model.evaluate(coord[:, perm], atype[perm], box, fparam, aparam[:, perm], atomic=True)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    np.testing.assert_allclose(out["force"], ref["force"][:, perm], rtol=0, atol=tol * np.abs(ref["force"]).max())
    np.testing.assert_allclose(out["atom_virial"], ref["atom_virial"][:, perm], rtol=0,
                               atol=tol * np.abs(ref["atom_virial"]).max())


@pytest.mark.parametrize("system", ["pbc_triclinic", "small_box"])
def test_wrapping_by_lattice_vectors(system):
    model = make_model()
    coord, atype, box = _system(system, nframes=1)
    ref = model.evaluate(coord, atype, box)
    n = np.random.default_rng(1).integers(-3, 4, size=(coord.shape[1], 3))
    moved = coord + (n @ box.reshape(3, 3))[None]
    out = model.evaluate(moved, atype, box)
    tol = TOL["float64"] * 100  # positions shifted by up to 3 cells: round-off of |r| ~ 10 Å
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=tol)
    np.testing.assert_allclose(out["force"], ref["force"], rtol=0, atol=tol * np.abs(ref["force"]).max())
    np.testing.assert_allclose(out["virial"], ref["virial"], rtol=0, atol=tol * np.abs(ref["virial"]).max())


def test_small_cell_equals_supercell():
    """A cell smaller than rcut (several image shells) and its 2x2x2 supercell give the same energy per atom."""
    model = make_model()
    coord, atype, box = _system("small_box", nframes=1)
    cell = box.reshape(3, 3)
    shifts = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)]) @ cell
    super_coord = (coord[0][None, :, :] + shifts[:, None, :]).reshape(1, -1, 3)
    super_atype = np.tile(atype, 8)
    model.config["descriptor"]["sel"] = [48, 48]
    model = make_model(descriptor={"sel": [48, 48]})
    small = model.evaluate(coord, atype, box)
    big = model.evaluate(super_coord, super_atype, (2 * cell).reshape(1, 9))
    np.testing.assert_allclose(big["energy"] / 8, small["energy"], rtol=TOL["float64"] * 10)
    np.testing.assert_allclose(big["force"][:, : coord.shape[1]], small["force"], rtol=0,
                               atol=TOL["float64"] * 10 * np.abs(small["force"]).max())
    np.testing.assert_allclose(big["virial"] / 8, small["virial"], rtol=0, atol=TOL["float64"] * 10 * np.abs(small["virial"]).max())


def test_cluster_in_large_box_equals_non_periodic():
    model = make_model()
    coord, atype, _ = _system("cluster", nframes=1)
    box = np.diag([40.0, 41.0, 42.0]).reshape(1, 9)
    a = model.evaluate(coord, atype, None)
    b = model.evaluate(coord + 10.0, atype, box)
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=TOL["float64"])
    np.testing.assert_allclose(b["force"], a["force"], rtol=0, atol=TOL["float64"] * np.abs(a["force"]).max())


def test_energy_is_smooth_when_a_neighbour_crosses_rcut():
    model = make_model()
    rc = model.config["descriptor"]["rcut"]
    atype = np.array([0, 1, 1])
    base = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    energies, forces = [], []
    for x in (rc - 1e-4, rc - 1e-12, rc + 1e-12, rc + 1e-4):
        c = base.copy()
        c[2, 0] = x
        out = model.evaluate(c[None], atype)
        energies.append(out["energy"][0, 0])
        forces.append(out["force"][0])
    # C2 switch: the energy change over 1e-4 Å at the cutoff is O(1e-12), the jump across it ~ 0
    assert abs(energies[1] - energies[2]) < 1e-13
    assert abs(energies[0] - energies[3]) < 1e-10
    assert np.abs(forces[1] - forces[2]).max() < 1e-10


def test_batch_independence():
    model = make_model(**MODELS["fparam_aparam"])
    coord, atype, box = _system("pbc_triclinic", nframes=3)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    batch = model.evaluate(coord, atype, box, fparam, aparam, atomic=True)
    for f in range(3):
        one = model.evaluate(coord[f:f + 1], atype, box[f:f + 1], fparam[f:f + 1], aparam[f:f + 1], atomic=True)
        for key in ("energy", "force", "virial", "atom_virial"):
            np.testing.assert_allclose(batch[key][f:f + 1], one[key], rtol=0,
                                       atol=TOL["float64"] * max(np.abs(one[key]).max(), 1.0))


def test_frames_with_different_types_and_padding():
    """Per-frame types (no type sorting) and padding atoms (atype -1) give the same numbers as the real atoms alone."""
    model = make_model(descriptor={"type_one_side": False})
    coord, atype, box = _system("pbc_triclinic", nframes=2)
    atypes = np.stack([atype, np.roll(atype, 1)])
    batch = model.evaluate(coord, atypes, box, atomic=True)
    for f in range(2):
        one = model.evaluate(coord[f:f + 1], atypes[f], box[f:f + 1], atomic=True)
        np.testing.assert_allclose(batch["energy"][f], one["energy"][0], rtol=TOL["float64"])
        np.testing.assert_allclose(batch["force"][f], one["force"][0], rtol=0, atol=TOL["float64"] * np.abs(one["force"]).max())
    padded_coord = np.concatenate([coord[:1], np.zeros((1, 2, 3))], axis=1)
    padded = model.evaluate(padded_coord, np.concatenate([atypes[0], [-1, -1]])[None], box[:1], atomic=True)
    one = model.evaluate(coord[:1], atypes[0], box[:1], atomic=True)
    np.testing.assert_allclose(padded["energy"], one["energy"], rtol=TOL["float64"])
    np.testing.assert_allclose(padded["force"][:, :-2], one["force"], rtol=0, atol=TOL["float64"] * np.abs(one["force"]).max())
    assert np.all(padded["force"][:, -2:] == 0) and np.all(padded["atom_energy"][:, -2:] == 0)
    assert padded["mask"][0, -2:].tolist() == [0, 0]


def test_float32_agrees_with_float64():
    m64 = make_model()
    m32 = make_model(descriptor={"precision": "float32"}, fitting={"precision": "float32"})
    coord, atype, box = _system("pbc_triclinic")
    a, b = m64.evaluate(coord, atype, box), m32.evaluate(coord, atype, box)
    assert b["energy"].dtype == np.float64 and b["virial"].dtype == np.float64
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=TOL["float32"])
    np.testing.assert_allclose(b["force"], a["force"], rtol=0, atol=TOL["float32"] * np.abs(a["force"]).max() * 10)
    np.testing.assert_allclose(b["virial"], a["virial"], rtol=0, atol=TOL["float32"] * np.abs(a["virial"]).max() * 10)


def test_sel_overflow_warns_with_counts():
    from dpcore.nlist import SelOverflowWarning

    model = make_model(descriptor={"sel": [2, 3]})
    coord, atype, box = _system("pbc_triclinic", nframes=1)
    with pytest.warns(SelOverflowWarning, match=r"sel\[\d\] = \d"):
        model.evaluate(coord, atype, box)
