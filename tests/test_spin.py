"""The "deepspin" spin model (SPEC 7.1, 13.6) on the NumPy reference: derivatives vs finite differences,
invariances, config forms and their errors, model files, DeePMD-kit energies, NiO data, and the
conformance of every spin output on all six backends."""

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import random_fparam_aparam, FD_TOL, TOL, random_system

import dpcore
from dpcore.config import ConfigError
from dpcore.conformance.cases import randomize_statistics
from dpcore.model.spin_model import SpinEnergyModel, backbone_config, spin_settings

H = 1e-3  # finite-difference step (Å, μB, strain); five-point stencil as tests/test_physics.py
STENCIL = ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12))
FIXTURES = Path(__file__).parent / "fixtures" / "spin"
NIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio_spin" / "data_0"

BASE = {
    "type_map": ["Ni", "O"],
    "descriptor": {"type": "se_e2_a", "sel": [40, 40], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8, 16],
                   "axis_neuron": 4, "type_one_side": False, "precision": "float64"},
    "fitting_net": {"neuron": [16, 16], "precision": "float64"},
    "spin": {"use_spin": [True, False], "virtual_scale": [0.3]},
}


def spin_config(**over) -> dict:
    cfg = copy.deepcopy(BASE)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict) and k != "spin":
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


MODELS = {
    "two_side": {},
    "three_types": dict(type_map=["Fe", "Ni", "O"], descriptor={"sel": [30, 30, 30], "type_one_side": True,
                                                                "activation_function": "gelu", "resnet_dt": True},
                        fitting_net={"numb_fparam": 1, "numb_aparam": 2, "activation_function": "silu"},
                        pair_exclude_types=[[0, 2]], atom_exclude_types=[1],
                        spin={"use_spin": ["Fe", "Ni"], "virtual_scale": [0.25, 0.4]}),
}


def make_spin_model(name="two_side", seed=1, stats_seed=2) -> SpinEnergyModel:
    """A spin model with random networks and non-trivial statistics (davg/dstd/out_bias/fparam stats)."""
    model = SpinEnergyModel.from_config(spin_config(**MODELS[name]), seed=seed)
    randomize_statistics(model.config, model.params, stats_seed)
    # smaller dstd: larger normalised environments, forces ~0.01-0.1 eV/Å instead of ~1e-4, so the
    # finite-difference round-off (eps |E| / H ~ 1e-12) stays far below FD_TOL x max|force|
    model.params["descriptor"]["dstd"] *= 0.3
    return model


SYSTEMS = {
    "pbc_triclinic": dict(natoms=8, box_len=4.5),
    "small_box": dict(natoms=3, box_len=2.6, min_dist=0.8),  # several image shells for rcut 4
    "cluster": dict(natoms=8, box_len=4.0),
}


def spin_system(model, name, nframes=2, seed=0):
    """coord, atype, spin, box (None for the cluster); every real/virtual pair >= 0.3 Å apart."""
    rng = np.random.default_rng(seed + 100)
    for attempt in range(200):
        coord, atype, box = random_system(nframes=nframes, seed=seed + attempt, ntypes=model.ntypes, **SYSTEMS[name])
        direction = rng.normal(size=coord.shape)
        spin = direction / np.linalg.norm(direction, axis=-1, keepdims=True) * rng.uniform(0.6, 1.6, coord.shape[:2] + (1,))
        box = None if name == "cluster" else box
        if _min_pair_distance(model, coord, atype, spin, box) >= 0.3:
            return coord, atype, spin, box
    raise RuntimeError("could not place a spin system")


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


def _min_pair_distance(model, coord, atype, spin, box):
    """Smallest distance between the real and virtual atoms of different atoms (nearest images)."""
    import itertools

    vs = model.virtual_scale_mask[atype]
    shifts = np.zeros((1, 3)) if box is None else np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ box.reshape(-1, 3, 3)
    shifts = np.broadcast_to(shifts, (coord.shape[0],) + shifts.shape[-2:])
    n = coord.shape[1]
    best = np.inf
    for f in range(coord.shape[0]):
        pts = np.concatenate([coord[f], coord[f] + vs[:, None] * spin[f]])[np.concatenate([np.ones(n, bool), vs > 0])]
        owner = np.concatenate([np.arange(n), np.arange(n)[vs > 0]])
        r = np.linalg.norm(pts[None, :, None] - pts[:, None, None] + shifts[f][None, None], axis=-1).min(-1)
        best = min(best, r[owner[:, None] != owner[None, :]].min())
    return best


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


# ------------------------------------------------------------------------------------------------ config forms
def _settings(spin, type_map=("Ni", "O", "Fe")):
    cfg = spin_config(type_map=list(type_map), descriptor={"sel": [10] * len(type_map)}, spin=spin)
    return SpinEnergyModel.from_config(cfg, seed=0)


def test_use_spin_forms_are_equivalent():
    ref = _settings({"use_spin": [True, False, True], "virtual_scale": [0.3, 0.5]})
    for use in ([0, 2], ["Ni", "Fe"], ["Fe", "Ni"], [2, 0, 2]):
        m = _settings({"use_spin": use, "virtual_scale": [0.3, 0.5]})
        assert m.spin == ref.spin and m.config == ref.config
    assert ref.spin == {"use_spin": [True, False, True], "virtual_scale": [0.3, 0.0, 0.5]}


def test_virtual_scale_forms():
    use = [True, False, True]
    assert _settings({"use_spin": use, "virtual_scale": 0.3}).spin["virtual_scale"] == [0.3, 0.3, 0.3]
    m = _settings({"use_spin": use, "virtual_scale": [0.3, 0.9, 0.5]})  # one per type: kept, masked on use
    assert m.spin["virtual_scale"] == [0.3, 0.9, 0.5]
    np.testing.assert_array_equal(m.virtual_scale_mask, [0.3, 0.0, 0.5])
    assert _settings({"use_spin": use, "virtual_scale": [0.3, 0.5]}).spin["virtual_scale"] == [0.3, 0.0, 0.5]


def test_tensorflow_form_is_converted():
    m = _settings({"use_spin": [True, True, False], "spin_norm": [1.2737, 2.0], "virtual_len": [0.4, 0.5]},
                  type_map=("Ni", "Fe", "O"))
    assert m.spin["virtual_scale"] == pytest.approx([0.4 / 1.2737, 0.25, 0.0], rel=1e-15)
    # the DeePMD-kit example: virtual_len 0.4 / spin_norm 1.2737 = 0.3140 of the PyTorch input
    m2 = _settings({"use_spin": [True, False], "spin_norm": [1.2737], "virtual_len": [0.4]}, type_map=("Ni", "O"))
    assert m2.spin["virtual_scale"][0] == pytest.approx(0.3140, abs=1e-4)


def test_tensorflow_form_needs_magnetic_types_first():
    with pytest.raises(ValueError, match="magnetic types first in type_map"):
        _settings({"use_spin": [False, True], "spin_norm": [1.2737], "virtual_len": [0.4]}, type_map=("O", "Ni"))
    with pytest.raises(ValueError, match="magnetic types first in type_map"):
        _settings({"use_spin": ["Fe"], "spin_norm": [1.2737], "virtual_len": [0.4]})
    # the same types with virtual_scale are fine
    assert _settings({"use_spin": [False, True], "virtual_scale": [0.3]}, type_map=("O", "Ni")).use_spin == [False, True]


@pytest.mark.parametrize("spin, error, match", [
    ({"use_spin": ["Co"], "virtual_scale": 0.3}, ValueError, r"use_spin.*\['Co'\]"),
    ({"use_spin": [True, False], "virtual_scale": 0.3}, ValueError, "expected 3 booleans"),
    ({"use_spin": [5], "virtual_scale": 0.3}, ValueError, "type indices"),
    ({"use_spin": [0, "O"], "virtual_scale": 0.3}, ValueError, "use_spin"),
    ({"use_spin": [True, False, True], "virtual_scale": [0.3, 0.4, 0.5, 0.6]}, ValueError,
     r"virtual_scale.*expected 3 \(one per type\) or 2 \(one per magnetic type\)"),
    ({"use_spin": [True, False, True], "virtual_scale": 1}, ValueError, "Invalid virtual scale type: int"),
    ({"use_spin": [True, False, True]}, ValueError, "virtual_scale: required"),
    ({"use_spin": [True, False, True], "virtual_scale": [0.3, 0.0]}, ValueError, "need a finite virtual_scale > 0"),
    ({"use_spin": [True, False, True], "virtual_scale": -0.3}, ValueError, "need a finite virtual_scale > 0"),
    ({"use_spin": [True, False, True], "spin_norm": [1.0, 1.0]}, ValueError, "needs both 'spin_norm' and 'virtual_len'"),
    ({"use_spin": [True, False, True], "virtual_scale": 0.3, "allow_missing_label": True}, ValueError,
     "allow_missing_label"),
    ({"use_spin": [True, False, True], "virtual_scale": 0.3, "scheme": "native"}, ValueError, "deepspin"),
])
def test_spin_section_errors(spin, error, match):
    with pytest.raises(error, match=match):
        _settings(spin)


def test_config_errors_are_config_errors_where_the_schema_catches_them():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="model/spin/use_spin"):
        _settings({"use_spin": ["Co"], "virtual_scale": 0.3})


def test_backbone_construction():
    """SPEC 7.1 steps 1-5, with the user's model-level exclusions merged in."""
    m = SpinEnergyModel.from_config(spin_config(**MODELS["three_types"]), seed=0)
    c = m.config
    assert c["type_map"] == ["Fe", "Ni", "O", "Fe_spin", "Ni_spin", "O_spin"]
    placeholder = [[5, q] for q in range(6)]
    assert c["pair_exclude_types"] == placeholder + [[0, 2]]
    assert c["descriptor"]["exclude_types"] == placeholder + [[0, 2]]
    assert c["atom_exclude_types"] == [1, 3, 4, 5]
    assert c["descriptor"]["sel"] == [30] * 6 and m.sel == [30, 30, 30]
    assert m.type_map == ["Fe", "Ni", "O"] and m.ntypes == 3
    assert "spin" not in c
    with pytest.raises(ValueError, match="exclude_types.*model/pair_exclude_types"):
        SpinEnergyModel.from_config(spin_config(descriptor={"exclude_types": [[0, 1]]}))
    with pytest.raises(ValueError, match="sel is 'auto'"):
        SpinEnergyModel.from_config(spin_config(descriptor={"sel": "auto"}))


@pytest.mark.parametrize("given, expected", [(None, 0.01), (0.0, 0.01), (0.05, 0.05)])
def test_env_protection_default(given, expected):
    cfg = spin_config()
    if given is not None:
        cfg["descriptor"]["env_protection"] = given
    m = SpinEnergyModel.from_config(cfg, seed=0)
    assert m.config["descriptor"]["env_protection"] == expected
    assert m.to_dict()["backbone_model"]["descriptor"]["env_mat"]["protection"] == expected


def test_helpers_match_from_config():
    from dpcore.config import normalize_model

    cfg = normalize_model(spin_config())
    settings = spin_settings(cfg["spin"], cfg["type_map"])
    assert backbone_config(cfg, settings["use_spin"]) == SpinEnergyModel.from_config(spin_config()).config


# ------------------------------------------------------------------------------------------------ model files
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_save_load_round_trip(tmp_path, suffix):
    model = make_spin_model("three_types")
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    path = tmp_path / f"spin{suffix}"
    model.save(path)
    loaded = dpcore.load(path)
    assert isinstance(loaded, SpinEnergyModel) and loaded.spin == model.spin
    assert loaded.model_def_script == model.model_def_script
    out = loaded.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])
    d = loaded.to_dict()
    assert set(d) == {"type", "backbone_model", "spin"} and d["type"] == "spin_ener"
    assert d["spin"] == {"use_spin": [True, True, False], "virtual_scale": [0.25, 0.4, 0.0]}
    assert d["backbone_model"]["type_map"] == ["Fe", "Ni", "O", "Fe_spin", "Ni_spin", "O_spin"]


def test_from_dict_errors():
    d = make_spin_model().to_dict()
    with pytest.raises(ValueError, match="virtual_scale: null"):
        SpinEnergyModel.from_dict({**d, "spin": {"use_spin": [True, False], "virtual_scale": None}})
    with pytest.raises(ValueError, match="use_spin has 3 entries for 2 real types"):
        SpinEnergyModel.from_dict({**d, "spin": {"use_spin": [True, False, True], "virtual_scale": [0.3]}})
    with pytest.raises(ValueError, match="backbone_model: missing"):
        SpinEnergyModel.from_dict({"type": "spin_ener", "spin": d["spin"]})


def test_reproduces_deepmd_kit_spin_energies():
    """tests/fixtures/spin/spin_ener.*: made, saved, reloaded and evaluated by DeePMD-kit 3.2.0
    (tests/fixtures/make_spin_fixture.py)."""
    model = dpcore.load(FIXTURES / "spin_ener.yaml")
    assert isinstance(model, SpinEnergyModel)
    ref = np.load(FIXTURES / "spin_ener.npz")
    for prefix in ("", "cluster_"):
        box = ref[f"{prefix}box"] if f"{prefix}box" in ref.files else None
        out = model.evaluate(ref[f"{prefix}coord"], ref[f"{prefix}atype"], ref[f"{prefix}spin"], box, atomic=True)
        for key in ("energy", "atom_energy"):
            err = np.abs(out[key] - ref[f"{prefix}{key}"]).max() / np.abs(ref[f"{prefix}{key}"]).max()
            assert err <= TOL["float64"], (prefix, key, err)
        np.testing.assert_array_equal(out["mask_mag"], ref[f"{prefix}mask_mag"])


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
    np.testing.assert_allclose(out["atom_virial"].sum(1), out["virial"], rtol=0, atol=1e-12 * np.abs(out["virial"]).max())
    h = _step(model, coord, atype, spin, box)
    for key, x_index, atom, d in (("force", 0, 3, 0), ("force", 0, 20, 2), ("force_mag", 2, 5, 1), ("force_mag", 2, 11, 2)):
        fd = 0.0
        for o, w in STENCIL:
            args = [coord, atype, spin, box]
            args[x_index] = args[x_index].copy()
            args[x_index][0, atom, d] += o * h
            fd -= w * model.evaluate(*args)["energy"][0, 0] / h
        assert abs(out[key][0, atom, d] - fd) <= FD_TOL * np.abs(out[key]).max(), (key, atom, d)


# ------------------------------------------------------------------------------------------------ conformance
ALL = ["numpy", "array_api_strict", "torch", "jax", "tensorflow", "paddle"]
AUTODIFF = ["torch", "jax", "tensorflow", "paddle"]
SPIN_ROWS = ["atom_energy", "energy", "force", "force_mag", "virial", "atom_virial", "mask_mag"]


def test_spin_cases_in_the_catalogue():
    from dpcore.conformance import cases as C

    spin = C.catalogue("spin")
    assert spin and all(c in C.catalogue("full") for c in spin)
    assert json.loads(json.dumps(spin)) == spin
    models = [C.build_model(c["model"]) for c in spin]
    assert all(isinstance(m, SpinEnergyModel) for m in models)
    assert {m.config["descriptor"]["precision"] for m in models} == {"float32", "float64"}
    assert {c["system"]["kind"] for c in spin} == {"periodic", "cluster"}
    for case, model in zip(spin, models):
        system = C.build_system(case["system"], model)
        assert system["spin"].shape == system["coord"].shape
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no sel overflow
            C.prepare_case(model, system)


def test_conformance_of_spin_outputs_on_all_six_backends():
    from dpcore.conformance import runner
    from dpcore.conformance.report import to_markdown

    report = runner.run(ALL, catalogue="spin", echo=lambda line: None)
    md = to_markdown(report)
    print("\n" + md)
    assert report["passed"], md
    table = {(r["backend"], r["output"]): r for r in report["summary"]}
    ncases = len(report["cases"])
    for b in ALL:
        for out in SPIN_ROWS:
            assert table[(b, f"{out} [spin]")]["cases"] == ncases
            assert ((b, f"{out} [spin_autodiff]") in table) == (b in AUTODIFF)
        assert (b, "force") not in table  # standard kinds do not apply to spin models
    for b in ALL[1:]:
        for kind in ("spin", "spin_autodiff"):
            row = table.get((b, f"force_mag [{kind}]"))
            if row is not None:
                assert set(row["errors"]) == {"float64", "float32"}
