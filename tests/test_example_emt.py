"""examples/emt: make_data.py writes valid, deterministic deepmd/npy data with DeePMD's virial sign."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import load_example_script
from dpcore.data import load_systems

pytest.importorskip("ase")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "emt"


make_data = load_example_script("emt")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("emt")
    make_data.make_data(out, seed=3, frames=3, valid_frames=2)
    return out


def test_data_is_read_by_dpcore(data):
    systems = load_systems(str(data), type_map=["Cu", "Au"])
    assert [Path(s.path).relative_to(data).as_posix() for s in systems] == [
        "train/Cu24Au8", "train/Cu28Au4", "valid/Cu24Au8"]
    assert [s.nframes for s in systems] == [3, 3, 2]
    for s, n_au in zip(systems, (8, 4, 8)):
        assert s.natoms == 32 and s.pbc
        assert np.bincount(s.atype).tolist() == [32 - n_au, n_au]
        assert not np.all(s.raw_atype[:-1] <= s.raw_atype[1:])  # file order is not type-sorted
        for k in ("energy", "force", "virial"):
            assert s.find[k].tolist() == [1.0] * s.nframes, k
        assert np.all(np.abs(s.data["force"]).max(axis=(1, 2)) > 0.01)
    for k, shape in (("coord", (3, 96)), ("box", (3, 9)), ("energy", (3,)), ("force", (3, 96)), ("virial", (3, 9))):
        assert np.load(data / "train" / "Cu24Au8" / "set.000" / f"{k}.npy").shape == shape


def test_deterministic_for_a_seed(tmp_path, data):
    make_data.main(["--out", str(tmp_path / "a"), "--seed", "3", "--frames", "3", "--valid-frames", "2"])
    make_data.make_data(tmp_path / "b", seed=4, frames=3, valid_frames=2)
    files = sorted(f for f in data.rglob("*") if f.is_file())
    assert len(files) == 3 * 7
    for f in files:
        rel = f.relative_to(data)
        assert (tmp_path / "a" / rel).read_bytes() == f.read_bytes(), rel
    e = "train/Cu24Au8/set.000/energy.npy"
    assert not np.array_equal(np.load(tmp_path / "b" / e), np.load(data / e))


def test_virial_is_minus_strain_derivative_of_the_emt_energy(data):
    """W[k, d] = -dE/d eps[d, k] for r -> r (I + eps), box -> box (I + eps) (SPEC 6.4), by central differences."""
    from ase import Atoms

    sysdir = data / "train" / "Cu28Au4"
    types = np.loadtxt(sysdir / "type.raw", dtype=int)
    symbols = [make_data.TYPE_MAP[t] for t in types]
    coord, box = np.load(sysdir / "set.000" / "coord.npy")[1], np.load(sysdir / "set.000" / "box.npy")[1]
    virial = np.load(sysdir / "set.000" / "virial.npy")[1].reshape(3, 3)
    atoms = Atoms(symbols, positions=coord.reshape(-1, 3), cell=box.reshape(3, 3), pbc=True)

    def energy(eps):
        a = atoms.copy()
        a.set_cell(a.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        return make_data.label(a)["energy"]

    h = 1e-5
    fd = np.zeros((3, 3))
    for d in range(3):
        for k in range(3):
            eps = np.zeros((3, 3))
            eps[d, k] = h
            fd[k, d] = -(energy(eps) - energy(-eps)) / (2 * h)
    assert np.abs(virial).max() > 0.5  # strained frames carry a real virial
    np.testing.assert_allclose(virial, fd, atol=1e-6 * np.abs(virial).max())
    np.testing.assert_allclose(virial, virial.T, atol=1e-10)
    # and not the opposite sign: ASE's stress is +dE/d eps / V
    assert np.abs(virial + fd).max() > 0.1


def test_input_json_matches_the_data_layout():
    from dpcore.config import normalize_config

    raw = json.loads((EXAMPLE / "input.json").read_text())
    cfg = normalize_config(raw)
    tr = cfg["training"]
    assert tr["validation_data"] is not None
    assert cfg["model"]["type_map"] == make_data.TYPE_MAP
    for sec in (tr["training_data"], tr["validation_data"]):
        for s in sec["systems"]:
            assert Path(s).as_posix().split("/")[-2] == "data", s  # .../data/train or .../data/valid
