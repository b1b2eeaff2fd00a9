"""The deepmd/npy + deepmd/hdf5 reader: type remapping and sorting, find flags, label widths, discovery,
HDF5 layout, bad input (each error names the file and the fix) and frames with too-close atoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpcore.data import DataError, DeepmdSystem, find_systems, label_specs, load_systems
from helpers.data import write_system


# ----------------------------------------------------------------------------- reader
def test_read_remap_sort_and_shapes(tmp_path):
    root = write_system(tmp_path / "sys")
    raw_coord = np.load(root / "set.000/coord.npy").reshape(3, 4, 3)
    raw_force = np.load(root / "set.000/force.npy").reshape(3, 4, 3)
    s = DeepmdSystem(root, type_map=["O", "H"])
    # data H=0, O=1 -> model O=0, H=1: raw types [1,0,1,0] are O,H,O,H -> [0,1,0,1] -> sorted
    np.testing.assert_array_equal(s.atype, [0, 0, 1, 1])
    np.testing.assert_array_equal(s.idx_map, [0, 2, 1, 3])
    np.testing.assert_array_equal(s.coord, raw_coord[:, [0, 2, 1, 3]])
    b = s.get_batch([2, 0])
    assert b["coord"].shape == (2, 4, 3) and b["coord"].dtype == np.float64
    assert b["atype"].dtype == np.int64 and b["atype"].shape == (2, 4)
    assert b["box"].shape == (2, 9)
    assert b["energy"].shape == (2, 1) and b["energy"].dtype == np.float64
    np.testing.assert_array_equal(b["force"], raw_force[[2, 0]][:, [0, 2, 1, 3]])
    np.testing.assert_array_equal(b["natoms"], [[4, 4, 2, 2]] * 2)
    assert b["find_energy"] == 1.0 and b["find_force"] == 1.0
    # absent labels: default fill, find 0
    assert b["find_virial"] == 0.0 and not b["virial"].any() and b["virial"].shape == (2, 9)
    assert b["find_atom_pref"] == 0.0 and (b["atom_pref"] == 1.0).all()
    assert b["atom_pref"].shape == (2, 4) and b["atom_ener_coeff"].shape == (2, 4)
    assert b["force_mag"].shape == (2, 4, 3) and b["spin"].shape == (2, 4, 3)
    assert "fparam" not in b and "aparam" not in b


def test_find_flag_per_set_and_alias(tmp_path):
    root = write_system(tmp_path / "sys", nframes=(2, 3))
    np.save(root / "set.000/virial.npy", np.ones((2, 9)))
    np.save(root / "set.001/atomic_ener.npy", np.full((3, 4), 2.0))
    s = DeepmdSystem(root)
    assert s.nframes == 5
    np.testing.assert_array_equal(s.find["virial"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(s.find["atom_ener"], [0, 0, 1, 1, 1])
    assert s.get_batch([0, 4])["find_virial"] == 1.0  # flag of the first frame (PT rule)
    assert s.get_batch([4, 0])["find_virial"] == 0.0
    assert (s.get_batch([3])["atom_ener"] == 2.0).all()


def test_fparam_aparam_drdq_widths(tmp_path):
    ngc = 2
    root = write_system(tmp_path / "sys", labels=("energy", "fparam", "aparam"),
                        extra={"drdq": np.zeros((3, 4 * 3 * ngc))})
    b = DeepmdSystem(root).get_batch([0, 1])
    assert b["fparam"].shape == (2, 2) and b["aparam"].shape == (2, 4, 2)
    assert b["drdq"].shape == (2, 4 * 3 * ngc) and b["find_drdq"] == 1.0
    # model fixes the widths; fparam missing -> default_fparam, find 0
    root2 = write_system(tmp_path / "sys2")
    specs = label_specs(numb_fparam=2, default_fparam=[0.5, 1.5])
    b2 = DeepmdSystem(root2, labels=specs).get_batch([0])
    assert b2["find_fparam"] == 0.0
    np.testing.assert_array_equal(b2["fparam"], [[0.5, 1.5]])


def test_nopbc_and_one_frame_1d_coord(tmp_path):
    root = tmp_path / "mol"
    root.mkdir()
    (root / "type.raw").write_text("0 1 1")
    (root / "nopbc").write_text("")
    (root / "set.000").mkdir()
    np.save(root / "set.000/coord.npy", np.arange(9.0))
    np.save(root / "set.000/energy.npy", np.array([-1.0]))
    s = DeepmdSystem(root)
    assert not s.pbc and s.nframes == 1 and s.get_batch([0])["box"] is None
    np.testing.assert_array_equal(s.coord[0], np.arange(9.0).reshape(3, 3))


def test_recursive_discovery_sorted(tmp_path):
    write_system(tmp_path / "all/b/sys1")
    write_system(tmp_path / "all/a/sys0")
    write_system(tmp_path / "all/a/sys2")
    found = [Path(st.root).relative_to(tmp_path).as_posix() for st in find_systems(str(tmp_path / "all"))]
    assert found == ["all/a/sys0", "all/a/sys2", "all/b/sys1"]
    # an explicit list keeps its order; a system given directly is itself
    assert len(find_systems([str(tmp_path / "all/b/sys1"), str(tmp_path / "all/a")])) == 3
    assert len(load_systems(str(tmp_path / "all"), type_map=["O", "H"])) == 3


def test_hdf5_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    d0 = write_system(tmp_path / "npy/s0", seed=1)
    d1 = write_system(tmp_path / "npy/s1", types=(0, 0, 1), seed=2, nframes=(2, 2))
    h5 = tmp_path / "data.h5"
    with h5py.File(h5, "w") as f:
        for name, d in (("s0", d0), ("s1", d1)):
            g = f.create_group(name)
            g.create_dataset("type.raw", data=np.loadtxt(d / "type.raw", dtype=int))
            g.create_dataset("type_map.raw", data=np.array([b"H", b"O"]))
            for sub in sorted(d.glob("set.*")):
                for npy in sub.glob("*.npy"):
                    g.create_dataset(f"{sub.name}/{npy.name}", data=np.load(npy))
    stores = find_systems(str(h5))
    assert [st.group for st in stores] == ["/s0", "/s1"]
    for st, d in zip(stores, (d0, d1)):
        a, b = DeepmdSystem(st, type_map=["O", "H"]), DeepmdSystem(d, type_map=["O", "H"])
        np.testing.assert_array_equal(a.atype, b.atype)
        np.testing.assert_array_equal(a.coord, b.coord)
        np.testing.assert_array_equal(a.data["force"], b.data["force"])
        assert a.find.keys() == b.find.keys()
        assert all((a.find[k] == b.find[k]).all() for k in a.find)
    one = DeepmdSystem(f"{h5}#/s1")
    assert one.nframes == 4 and one.path.endswith("#/s1")


# --------------------------------------------------------------------------- bad input
def _raises(match, fn, *args, **kw):
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kw)
    return str(info.value)


def test_missing_type_raw(tmp_path):
    root = write_system(tmp_path / "sys")
    (root / "type.raw").unlink()
    _raises(r"sys/type\.raw: missing; every system needs type\.raw", DeepmdSystem, root)
    _raises(r"sys/type\.raw: missing; a system folder with set\.\* folders needs type\.raw",
            find_systems, str(root))
    _raises(r"no deepmd/npy system found", find_systems, str(tmp_path / "sys/set.000"))


def test_coord_not_multiple_of_3_natoms(tmp_path):
    root = write_system(tmp_path / "sys")
    np.save(root / "set.000/coord.npy", np.zeros((3, 11)))
    _raises(r"set\.000/coord\.npy: shape \(3, 11\) is not \(nframes, natoms\*3\) = "
            r"\(nframes, 12\) with natoms = 4 from type\.raw \(size 33 is not a multiple of 12\)",
            DeepmdSystem, root)


def test_label_wrong_frames_or_atoms(tmp_path):
    root = write_system(tmp_path / "sys")
    np.save(root / "set.000/force.npy", np.zeros((2, 12)))
    _raises(r"set\.000/force\.npy: shape \(2, 12\) has 2 frames; coord\.npy of this set has 3",
            DeepmdSystem, root)
    np.save(root / "set.000/force.npy", np.zeros((3, 9)))
    _raises(r"set\.000/force\.npy: shape \(3, 9\) has 9 values per frame; expected "
            r"\(nframes, 12\) i\.e\. natoms\*3 = 12 \(natoms = 4 from type\.raw\)",
            DeepmdSystem, root)
    np.save(root / "set.000/force.npy", np.zeros((3, 12)))
    np.save(root / "set.000/energy.npy", np.zeros(4))
    _raises(r"set\.000/energy\.npy: shape \(4,\) has 4 frames; coord\.npy of this set has 3",
            DeepmdSystem, root)


def test_type_index_outside_type_map(tmp_path):
    root = write_system(tmp_path / "sys", types=(0, 1, 2, 0))
    _raises(r"type\.raw: type index 2 \(atom 2\) is outside type_map\.raw, which lists 2 "
            r"elements \['H', 'O'\]", DeepmdSystem, root)
    root2 = write_system(tmp_path / "sys2", types=(0, 1, 2, 0), type_map=None)
    _raises(r"type\.raw: type index 2 \(atom 2\) is outside the model type_map \['O', 'H'\]",
            DeepmdSystem, root2, type_map=["O", "H"])


def test_element_missing_from_model_type_map(tmp_path):
    root = write_system(tmp_path / "sys", type_map=("H", "C"))
    _raises(r"type_map\.raw: elements \['C'\] are not in the model type_map \['O', 'H'\]; add "
            r"them to model/type_map", DeepmdSystem, root, type_map=["O", "H"])


@pytest.mark.parametrize("name,bad,what", [("coord", np.nan, "coordinates"),
                                           ("energy", np.inf, "labels"),
                                           ("force", -np.inf, "labels")])
def test_non_finite(tmp_path, name, bad, what):
    root = write_system(tmp_path / "sys")
    arr = np.load(root / f"set.000/{name}.npy")
    arr.flat[arr.size - 1] = bad
    np.save(root / f"set.000/{name}.npy", arr)
    _raises(rf"set\.000/{name}\.npy: non-finite value {bad} at index \(2, .*\) \(frame 2\); "
            rf"{what} must be finite numbers", DeepmdSystem, root)


def test_empty_system(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "type.raw").write_text("0 1")
    _raises(r"empty: empty system \(no set\.\* folder\)", DeepmdSystem, root)
    (root / "set.000").mkdir()
    np.save(root / "set.000/coord.npy", np.zeros((0, 6)))
    np.save(root / "set.000/box.npy", np.zeros((0, 9)))
    _raises(r"coord\.npy: empty system \(coord\.npy holds 0 frames\)", DeepmdSystem, root)
    (root / "type.raw").write_text("")
    _raises(r"type\.raw: empty system \(type\.raw lists no atoms\)", DeepmdSystem, root)


def test_box_missing_for_periodic_system(tmp_path):
    root = write_system(tmp_path / "sys")
    (root / "set.000/box.npy").unlink()
    _raises(r"set\.000/box\.npy: missing for a periodic system; give box\.npy \(nframes, 9\) .* "
            r"or create an empty file .*nopbc", DeepmdSystem, root)
    np.save(root / "set.000/box.npy", np.zeros((3, 9)))
    _raises(r"box\.npy: cell of frame 0 is singular", DeepmdSystem, root)


def test_spin_required_and_mixed_type(tmp_path):
    root = write_system(tmp_path / "sys")
    _raises(r"set\.000/spin\.npy: missing, but required by the model/loss; the deepspin model "
            r"needs spin\.npy .*TensorFlow packed layout", DeepmdSystem, root,
            labels=label_specs(spin=True))
    np.save(root / "set.000/real_atom_types.npy", np.zeros((3, 4), dtype=int))
    _raises(r"real_atom_types\.npy: the mixed_type format", DeepmdSystem, root)


def test_bad_type_raw_text(tmp_path):
    root = write_system(tmp_path / "sys")
    (root / "type.raw").write_text("0 1 O 1")
    _raises(r"type\.raw: expected whitespace-separated integers", DeepmdSystem, root)


# ----------------------------------------------------------------------------- close pairs
def test_min_pair_dist_drops_close_frames(tmp_path):
    from dpcore.data import DeepmdSystem
    from dpcore.data.batch import drop_close_pairs

    s = tmp_path / "close"
    (s / "set.000").mkdir(parents=True)
    (s / "type.raw").write_text("0 1\n")
    coord = np.array([[0, 0, 0, 0.5, 0, 0], [0, 0, 0, 1.5, 0, 0], [0, 0, 0, 0.0, 0.9, 0]], dtype=float)
    np.save(s / "set.000" / "coord.npy", coord)
    np.save(s / "set.000" / "box.npy", np.tile(np.eye(3).ravel() * 10, (3, 1)))
    np.save(s / "set.000" / "energy.npy", np.arange(3.0))
    system = DeepmdSystem(s)
    key = system.cache_key
    assert drop_close_pairs([system], 1.0) == 2
    assert system.nframes == 1 and system.data["energy"][:, 0].tolist() == [1.0]
    assert system.cache_key != key
