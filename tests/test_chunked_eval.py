"""Evaluation in chunks of centre atoms (dpcore.infer.chunked) equals one pass, on the NumPy reference: energy,
spin and DPA-1 models, periodic and not, per-atom virials, uneven last chunks, chunks of one atom, several frames
per call, the neighbour rows of a chunk, the sel-overflow warning, ``dpcore test`` and the ASE calculator, and
clear errors for bad ``chunk_size`` / ``max_memory`` values.
Autodiff backends: tests/isolated/test_chunked_backends.py."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import dpcore
from dpcore.infer import chunked
from dpcore.nlist import SelOverflowWarning, build_neighbor_list, cell_list, centre_neighbors
from helpers import make_model, random_fparam_aparam, random_system
from helpers.spin import make_spin_model, spin_system

CHUNK_TOL = 1e-12  # chunked vs one pass, relative to the largest |value| of each output (float64; measured ~1e-14)
DPA1 = Path(__file__).parent / "fixtures" / "dpa1" / "spec_examples"
MODELS = {
    "plain": {},
    "exclusions_fparam_aparam": dict(descriptor={"exclude_types": [[0, 1]]}, pair_exclude_types=[[1, 1]],
                                     atom_exclude_types=[0], fitting={"numb_fparam": 2, "numb_aparam": 1}),
}


def assert_same(got: dict, ref: dict, tol=CHUNK_TOL):
    assert set(got) == set(ref)
    for key, want in ref.items():
        assert got[key].shape == want.shape and got[key].dtype == want.dtype, key
        want = want.astype(np.float64)
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
        assert float(np.abs(got[key].astype(np.float64) - want).max(initial=0.0)) <= tol * scale, key


def one_pass(model, *args, **kw):
    return model.evaluate(*args, chunk_size=10**9, **kw)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("periodic", [True, False], ids=["pbc", "cluster"])
@pytest.mark.parametrize("chunk_size", [1, 5, 12])  # 13 atoms: 13 chunks of 1; 3 of 5 (last padded); 2 of 7 (padded)
def test_energy_model_chunks_equal_one_pass(name, periodic, chunk_size):
    model = make_model(**MODELS[name])
    coord, atype, box = random_system(natoms=13, nframes=2, seed=4)
    box = box if periodic else None
    fparam, aparam = random_fparam_aparam(model, 2, 13)
    ref = one_pass(model, coord, atype, box, fparam, aparam, atomic=True)
    assert_same(model.evaluate(coord, atype, box, fparam, aparam, atomic=True, chunk_size=chunk_size), ref)


def test_max_memory_sets_the_chunk_and_frames_are_grouped():
    model = make_model()
    per_atom = chunked.centre_bytes(model.config)
    assert chunked.centres_per_call(model.config, max_memory=3 * per_atom + 1) == 3
    assert chunked.centres_per_call(model.config, max_memory="1 KiB") == 1  # less than one atom: one at a time
    assert chunked.centres_per_call(model.config) == chunked.DEFAULT_MAX_MEMORY // per_atom
    coord, atype, box = random_system(natoms=10, nframes=3, seed=2)
    atypes = np.stack([atype, np.roll(atype, 3), np.where(np.arange(10) == 4, -1, atype)])  # per-frame types, padding
    ref = one_pass(model, coord, atypes, box, atomic=True)
    for kw in ({"max_memory": 4 * per_atom}, {"max_memory": f"{25 * per_atom / 1e6}MB"}, {"chunk_size": 20}):
        assert_same(model.evaluate(coord, atypes, box, atomic=True, **kw), ref)  # chunks; 2 frames, then 1


@pytest.mark.parametrize("model_name", ["two_side", "three_types"])
@pytest.mark.parametrize("system", ["pbc_triclinic", "cluster"])
def test_spin_model_chunks_equal_one_pass(model_name, system):
    model = make_spin_model(model_name)
    coord, atype, spin, box = spin_system(model, system, nframes=2)
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    ref = one_pass(model, coord, atype, spin, box, fparam, aparam, atomic=True)
    for chunk_size in (1, 3):
        assert_same(model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True, chunk_size=chunk_size), ref)


@pytest.mark.parametrize("name", ["dpa1_tiny", "se_atten_v2_tiny"])
def test_dpa1_chunks_keep_the_first_atom_padding_type(name):
    ref = json.loads((DPA1 / f"{name}.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dpcore.load(DPA1 / f"{name}.yaml")
    coord, atype = np.array(ref["coord"])[None], np.array(ref["atype"])
    perm = ref["permutation_check"]["perm"]  # another first atom: another padding type, another energy
    for c, a in ((coord, atype), (coord[:, perm], atype[perm])):
        want = one_pass(model, c, a, None, atomic=True)
        assert_same(model.evaluate(c, a, None, atomic=True, chunk_size=2), want)
    assert abs(model.evaluate(coord[:, perm], atype[perm], None, chunk_size=2)["energy"].item()
               - ref["permutation_check"]["energy"]) <= CHUNK_TOL * abs(ref["energy"])


def test_chunk_rows_are_the_full_list_rows():
    coord, atype, box = random_system(natoms=16, nframes=1, seed=7, box_len=4.0)
    with pytest.warns(SelOverflowWarning):  # rows cut at sel: the same neighbours dropped in a chunk as in the list
        nl = build_neighbor_list(coord, atype, box, 3.5, [12, 12])
    cells = cell_list(coord[0], atype, box[0].reshape(3, 3), 3.5)
    centres = np.array([11, 3, 3, 0, 15])
    rows, most = centre_neighbors(cells, centres, [12, 12])
    full = nl.nlist[0, centres]
    assert np.array_equal(rows >= 0, full >= 0)
    got = np.where(rows >= 0, cells.owner[np.maximum(rows, 0)], -1)
    want = np.where(full >= 0, nl.mapping[0, np.maximum(full, 0)], -1)
    assert np.array_equal(got, want)
    np.testing.assert_array_equal(cells.shift[np.maximum(rows, 0)][rows >= 0], nl.shift[0, np.maximum(full, 0)][full >= 0])
    rows, most = centre_neighbors(cells, centres, [60, 60])  # no overflow: most = the largest row
    assert most.shape == (3,) and most[-1] == (rows >= 0).sum(1).max() > 24


def test_sel_overflow_warns_in_chunks_too():
    model = make_model(descriptor={"sel": [2, 2]})
    coord, atype, box = random_system(natoms=10, nframes=1, seed=1)
    with pytest.warns(SelOverflowWarning):
        model.evaluate(coord, atype, box, chunk_size=3)


@pytest.mark.parametrize("kw, message", [
    ({"chunk_size": 0}, "chunk_size must be a positive integer"),
    ({"chunk_size": -3}, "chunk_size must be a positive integer"),
    ({"chunk_size": 2.5}, "chunk_size must be a positive integer"),
    ({"chunk_size": True}, "chunk_size must be a positive integer"),
    ({"max_memory": 0}, "max_memory must be a positive number of bytes"),
    ({"max_memory": float("nan")}, "max_memory must be a positive number of bytes"),
    ({"max_memory": "lots"}, "max_memory must be a number of bytes or a size such as '512MB'"),
    ({"max_memory": "12 XB"}, "max_memory must be a number of bytes or a size such as '512MB'"),
    ({"max_memory": [1]}, "max_memory must be a positive number of bytes"),
    ({"chunk_size": 4, "max_memory": "1GB"}, "give chunk_size .* or max_memory .*, not both"),
])
def test_bad_chunk_size_and_max_memory_are_named(kw, message):
    model = make_model()
    coord, atype, box = random_system(natoms=6, nframes=1)
    with pytest.raises(ValueError, match=message):
        model.evaluate(coord, atype, box, **kw)


def test_dpcore_test_and_the_ase_calculator_take_the_chunk_options(tmp_path, capsys):
    from dpcore.cli import main

    model = make_model()
    model_file = tmp_path / "model.yaml"
    model.save(model_file)
    coord, atype, box = random_system(natoms=9, nframes=2, seed=3)
    ref = one_pass(model, coord, atype, box)
    system = tmp_path / "sys"
    (system / "set.000").mkdir(parents=True)
    (system / "type.raw").write_text(" ".join(map(str, atype)))
    (system / "type_map.raw").write_text("\n".join(model.type_map))
    for key, value in (("coord", coord), ("box", box), ("energy", ref["energy"]), ("force", ref["force"])):
        np.save(system / "set.000" / f"{key}.npy", value.reshape(2, -1))
    for opts in ([], ["--chunk-size", "2"], ["--max-memory", "1KB"]):
        assert main(["test", "-m", str(model_file), "-s", str(system), "-d", str(tmp_path / "out"), *opts]) == 0
        pred = np.loadtxt(tmp_path / "out.f.out")
        np.testing.assert_allclose(pred[:, 3:], pred[:, :3], rtol=0, atol=CHUNK_TOL * np.abs(pred).max())
    assert main(["test", "-m", str(model_file), "-s", str(system), "--max-memory", "-1"]) != 0
    assert "max_memory must be a" in capsys.readouterr().err

    pytest.importorskip("ase")  # the calculator needs ASE (the md extra)
    from ase import Atoms

    from dpcore.calculator import DP

    atoms = Atoms(numbers=[[8, 1][t] for t in atype], positions=coord[0], cell=box[0].reshape(3, 3), pbc=True)
    atoms.calc = DP(model, chunk_size=2)
    np.testing.assert_allclose(atoms.get_forces(), ref["force"][0], rtol=0, atol=CHUNK_TOL * np.abs(ref["force"]).max())
    with pytest.raises(ValueError, match="max_memory must be"):
        DP(model, max_memory="huge")
