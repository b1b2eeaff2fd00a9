"""examples/spin: make_data.py labels a toy spin-lattice model exactly (forces, magnetic forces and virial
against finite differences of its energy) and writes deterministic deepmd/npy spin data that dpcore reads."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import TOL, load_example_script
from dpcore.data import label_specs, load_systems

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "spin"
H = 1e-5  # central differences; the model is smooth (C2) and O(1) eV, so the error is ~1e-9


make_data = load_example_script("spin")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("spin")
    make_data.make_data(out, seed=3, frames=3, valid_frames=2)
    return out


@pytest.fixture(scope="module")
def frame():
    """One frame with antisites (Fe on an Al site) and a strained, non-orthogonal cell."""
    rng = np.random.default_rng(5)
    atype = np.array([0] * 8 + [1] * 8)
    atype[[9, 13]] = 0
    coord, box, spin = make_data.random_frame(atype, rng)
    return coord, box, atype, spin


def _energy(coord, box, atype, spin):
    return make_data.labels(coord, box, atype, spin)["energy"]


def test_force_and_force_mag_are_minus_the_energy_gradient(frame):
    coord, box, atype, spin = frame
    lab = make_data.labels(coord, box, atype, spin)
    fd_f, fd_fm = np.zeros_like(coord), np.zeros_like(spin)
    for i in range(len(coord)):
        for d in range(3):
            e = np.zeros_like(coord)
            e[i, d] = H
            fd_f[i, d] = -(_energy(coord + e, box, atype, spin) - _energy(coord - e, box, atype, spin)) / (2 * H)
            fd_fm[i, d] = -(_energy(coord, box, atype, spin + e) - _energy(coord, box, atype, spin - e)) / (2 * H)
    assert np.abs(lab["force"]).max() > 0.3 and np.abs(lab["force_mag"]).max() > 0.05
    np.testing.assert_allclose(lab["force"], fd_f, atol=1e-7)
    np.testing.assert_allclose(lab["force_mag"], fd_fm, atol=1e-7)
    assert np.all(lab["force_mag"][atype == 1] == 0.0)  # Al is not magnetic
    np.testing.assert_allclose(lab["force"].sum(axis=0), 0.0, atol=1e-10)  # translation invariance


def test_virial_is_minus_the_strain_derivative_at_fixed_spins(frame):
    """W[k, d] = -dE/d eps[d, k] for r -> r (I + eps), box -> box (I + eps) (SPEC 6.4, 7.1)."""
    coord, box, atype, spin = frame
    virial = make_data.labels(coord, box, atype, spin)["virial"].reshape(3, 3)

    def strained(eps):
        m = np.eye(3) + eps
        return _energy(coord @ m, (box.reshape(3, 3) @ m).reshape(9), atype, spin)

    fd = np.zeros((3, 3))
    for d in range(3):
        for k in range(3):
            eps = np.zeros((3, 3))
            eps[d, k] = H
            fd[k, d] = -(strained(eps) - strained(-eps)) / (2 * H)
    assert np.abs(virial).max() > 0.5
    np.testing.assert_allclose(virial, fd, atol=1e-6)
    # pair terms and s_i.s_j depend on distances only: W = sum_j r_j (x) F_j, symmetric
    np.testing.assert_allclose(virial, virial.T, atol=1e-10)


def test_interactions_vanish_smoothly_at_the_cutoff():
    r = np.array([make_data.RC - 1e-6, make_data.RC, make_data.RC + 0.1])
    for v, dv in (make_data.exchange(r), make_data.morse(r, np.zeros(3, int), np.ones(3, int))):
        np.testing.assert_allclose(v, 0.0, atol=TOL["float64"])
        np.testing.assert_allclose(dv, 0.0, atol=1e-10)


def test_images_of_a_small_cell_are_all_counted():
    """A cell smaller than the cutoff: one atom interacts with its own images (6 at a, 12 at a*sqrt(2))."""
    a = 2.9
    i, j, rij = make_data.neighbor_pairs(np.zeros((1, 3)), (a * np.eye(3)).reshape(9))
    r = np.sort(np.linalg.norm(rij, axis=1))
    assert np.all((i == 0) & (j == 0))
    np.testing.assert_allclose(r, [a] * 6 + [a * 2**0.5] * 12)
    # exchange with its own images only scales |s|^2: no torque, force_mag parallel to s
    lab = make_data.labels(np.zeros((1, 3)), (a * np.eye(3)).reshape(9), np.array([0]), np.array([[0.0, 0, 2.0]]))
    np.testing.assert_allclose(lab["force_mag"][0, :2], 0.0, atol=1e-15)
    np.testing.assert_allclose(lab["force"], 0.0, atol=TOL["float64"])


def test_data_is_read_by_dpcore_with_spin_labels(data):
    systems = load_systems(str(data), type_map=["Fe", "Al"], labels=label_specs(spin=True))
    assert [Path(s.path).relative_to(data).as_posix() for s in systems] == [
        "train/Fe10Al6", "train/Fe8Al8", "valid/Fe8Al8"]
    assert [s.nframes for s in systems] == [3, 3, 2]
    for s, n_fe in zip(systems, (10, 8, 8)):
        assert s.natoms == 16 and s.pbc
        assert np.bincount(s.atype).tolist() == [n_fe, 16 - n_fe]
        for k in ("energy", "force", "force_mag", "spin", "virial"):
            assert s.find[k].tolist() == [1.0] * s.nframes, k
        fe = s.atype == 0
        norm = np.linalg.norm(s.data["spin"], axis=-1)
        assert np.all(np.abs(norm[:, fe] - make_data.M0) <= 0.6) and np.all(norm[:, ~fe] == 0)
        assert np.all(s.data["force_mag"][:, ~fe] == 0) and np.abs(s.data["force_mag"][:, fe]).max() > 0.01
    # the labels on disk are those of make_data.labels for the stored frame
    sysdir = data / "train" / "Fe10Al6" / "set.000"
    atype = np.loadtxt(data / "train" / "Fe10Al6" / "type.raw", dtype=int)
    lab = make_data.labels(np.load(sysdir / "coord.npy")[2].reshape(-1, 3), np.load(sysdir / "box.npy")[2], atype,
                           np.load(sysdir / "spin.npy")[2].reshape(-1, 3))
    for k in ("force", "force_mag", "virial"):
        np.testing.assert_array_equal(np.load(sysdir / f"{k}.npy")[2], lab[k].reshape(-1))
    for k, shape in (("coord", (3, 48)), ("box", (3, 9)), ("energy", (3,)), ("force", (3, 48)),
                     ("force_mag", (3, 48)), ("spin", (3, 48)), ("virial", (3, 9))):
        assert np.load(sysdir / f"{k}.npy").shape == shape


def test_deterministic_for_a_seed(tmp_path, data):
    make_data.main(["--out", str(tmp_path / "a"), "--seed", "3", "--frames", "3", "--valid-frames", "2"])
    make_data.make_data(tmp_path / "b", seed=4, frames=3, valid_frames=2)
    files = sorted(f for f in data.rglob("*") if f.is_file())
    assert len(files) == 3 * 9
    for f in files:
        rel = f.relative_to(data)
        assert (tmp_path / "a" / rel).read_bytes() == f.read_bytes(), rel
    e = "train/Fe8Al8/set.000/energy.npy"
    assert not np.array_equal(np.load(tmp_path / "b" / e), np.load(data / e))


def test_input_json_matches_the_data_and_model():
    from dpcore.config import normalize_config

    cfg = normalize_config(json.loads((EXAMPLE / "input.json").read_text()))
    assert cfg["model"]["type_map"] == make_data.TYPE_MAP
    assert cfg["model"]["spin"]["use_spin"] == list(make_data.MAGNETIC)
    assert cfg["loss"]["type"] == "ener_spin"
    # the descriptor sees every partner of the toy model, and its virtual atom (|s| <= M0 + 0.6 μB)
    vs = max(cfg["model"]["spin"]["virtual_scale"])
    assert cfg["model"]["descriptor"]["rcut"] >= make_data.RC + vs * (make_data.M0 + 0.6)
    tr = cfg["training"]
    for sec in (tr["training_data"], tr["validation_data"]):
        for s in sec["systems"]:
            assert Path(s).as_posix().split("/")[-2] == "data", s
