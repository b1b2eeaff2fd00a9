"""deepmd/npy + deepmd/hdf5 reader, batching, sampling and the neighbour-list cache."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import numpy as np
import pytest

from dpcore.data import (
    BatchSampler,
    DataError,
    DeepmdSystem,
    NeighborListCache,
    find_systems,
    label_specs,
    load_systems,
    parse_batch_size,
    system_probabilities,
)

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="reference data /work/shared/data is absent"
)


def write_system(root: Path, types=(1, 0, 1, 0), type_map=("H", "O"), nframes=(3,),
                 labels=("energy", "force"), nopbc=False, seed=0, extra=None):
    """A small deepmd/npy system: one set per entry of ``nframes``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    natoms = len(types)
    (root / "type.raw").write_text("\n".join(str(t) for t in types) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if nopbc:
        (root / "nopbc").write_text("")
    for i, nf in enumerate(nframes):
        s = root / f"set.{i:03d}"
        s.mkdir()
        np.save(s / "coord.npy", rng.uniform(0, 5, (nf, natoms * 3)))
        if not nopbc:
            np.save(s / "box.npy", np.tile(np.diag([5.0, 6.0, 7.0]).ravel(), (nf, 1)))
        shapes = {"energy": (nf,), "force": (nf, natoms * 3), "virial": (nf, 9),
                  "atom_ener": (nf, natoms), "spin": (nf, natoms * 3),
                  "force_mag": (nf, natoms * 3), "fparam": (nf, 2), "aparam": (nf, natoms * 2)}
        for lab in labels:
            np.save(s / f"{lab}.npy", rng.normal(size=shapes[lab]))
        for name, arr in (extra or {}).items():
            np.save(s / f"{name}.npy", arr)
    return root


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


# ------------------------------------------------------------- batch size, probabilities
def test_parse_batch_size():
    nat = [192, 3, 40]
    assert parse_batch_size(4, nat) == ([4, 4, 4], [0, 1, 2])
    assert parse_batch_size([1, 2, 3], nat) == ([1, 2, 3], [0, 1, 2])
    assert parse_batch_size("auto", nat) == ([1, 11, 1], [0, 1, 2])  # ceil(32/natoms)
    assert parse_batch_size("auto:100", nat) == ([1, 34, 3], [0, 1, 2])
    assert parse_batch_size("max:100", nat) == ([1, 33, 2], [0, 1, 2])  # max(1, N//natoms)
    assert parse_batch_size("filter:50", nat) == ([16, 1], [1, 2])
    with pytest.raises(DataError, match=r"batch_size: the list has 2 entries; expected one per "
                                        r"system \(3 systems\)"):
        parse_batch_size([1, 2], nat)
    with pytest.raises(DataError, match=r"batch_size: unknown rule 'mixed:4'"):
        parse_batch_size("mixed:4", nat)
    with pytest.raises(DataError, match=r"batch_size: 'filter:2' removes every system"):
        parse_batch_size("filter:2", nat)
    with pytest.raises(DataError, match=r"batch_size: 0 is not a positive number of frames"):
        parse_batch_size(0, nat)


def test_system_probabilities():
    nb = [10, 30, 60]
    np.testing.assert_allclose(system_probabilities(nb, "prob_uniform"), [1 / 3] * 3)
    np.testing.assert_allclose(system_probabilities(nb), [0.1, 0.3, 0.6])
    # block [0,1) weight 1, block [1,3) weight 3 -> 0.25 ; 0.75 * (30, 60)/90
    np.testing.assert_allclose(system_probabilities(nb, "prob_sys_size;0:1:1;1:3:3"),
                               [0.25, 0.25, 0.5])
    # sys_probs: 0.4 fixed, the rest 0.6 shared by nbatches among the negative entries
    np.testing.assert_allclose(system_probabilities(nb, sys_probs=[0.4, -1, -1]),
                               [0.4, 0.6 * 30 / 90, 0.6 * 60 / 90])
    np.testing.assert_allclose(system_probabilities(nb, sys_probs=[0.2, 0.3, 0.5]), [0.2, 0.3, 0.5])
    with pytest.raises(DataError, match=r"sys_probs: the non-negative entries sum to 1\.2; must be <= 1"):
        system_probabilities(nb, sys_probs=[0.6, 0.6, -1])
    with pytest.raises(DataError, match=r"sys_probs: 2 entries; expected one per system \(3 systems\)"):
        system_probabilities(nb, sys_probs=[0.5, 0.5])
    with pytest.raises(DataError, match=r"auto_prob: unknown style 'prob_size'"):
        system_probabilities(nb, "prob_size")
    with pytest.raises(DataError, match=r"auto_prob: block '0:5:1' needs 0 <= start < end <= 3"):
        system_probabilities(nb, "prob_sys_size;0:5:1")


# ------------------------------------------------------------------------------ sampler
def _systems(tmp_path):
    write_system(tmp_path / "d/a", nframes=(5,), seed=1)
    write_system(tmp_path / "d/b", nframes=(4, 3), seed=2)
    return load_systems(str(tmp_path / "d"), type_map=["O", "H"])


def _trace(sampler, n):
    out = []
    for _ in range(n):
        sampler.next_batch()
        out.append((sampler.last_system, tuple(sampler.last_frames)))
    return out


def test_sampler_deterministic_epochs_and_resume(tmp_path):
    systems = _systems(tmp_path)
    s1 = BatchSampler(systems, batch_size=2, seed=7)
    s2 = BatchSampler(systems, batch_size=2, seed=7)
    assert s1.nbatches == [3, 4] and len(s1) == 7
    np.testing.assert_allclose(s1.probs, [3 / 7, 4 / 7])
    t1 = _trace(s1, 40)
    assert t1 == _trace(s2, 40)
    assert t1 != _trace(BatchSampler(systems, batch_size=2, seed=8), 40)
    # each pass over a system visits every frame once; the last batch can be smaller
    for isys, n in ((0, 5), (1, 7)):
        frames = [f for s, fr in t1 if s == isys for f in fr]
        first_pass, sizes = [], []
        for s, fr in t1:
            if s == isys and len(first_pass) < n:
                first_pass.extend(fr)
                sizes.append(len(fr))
        assert sorted(first_pass) == list(range(n)) and sizes[-1] == n - 2 * (len(sizes) - 1)
        assert len(frames) > n
    state = s1.get_state()
    ahead = _trace(s1, 10)
    s2.set_state(state)
    assert _trace(s2, 10) == ahead


def test_sampler_frequencies_and_validation(tmp_path):
    systems = _systems(tmp_path)
    s = BatchSampler(systems, batch_size=1, sys_probs=[0.2, 0.8], seed=3)
    counts = collections.Counter(sys for sys, _ in _trace(s, 4000))
    assert abs(counts[0] / 4000 - 0.2) < 0.03
    val = BatchSampler(systems, batch_size=1, seed=1)
    batches = val.take(3)
    assert len(batches) == 3 and all(b["coord"].shape == (1, 4, 3) for b in batches)


Frame = collections.namedtuple("NeighborList", "nlist mapping shift")


class StubNlist:
    """make_nlist stub: nall = nloc + (frame-dependent ghosts), records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, coord, atype, box):
        self.calls.append((coord.shape, atype.shape, None if box is None else box.shape))
        nloc = coord.shape[1]
        nghost = int(coord[0, 0, 0] * 10) % 3  # depends on the frame
        nall = nloc + nghost
        nlist = np.tile(np.arange(nloc)[::-1], (1, nloc, 1)).astype(np.int64)
        mapping = (np.arange(nall) % nloc)[None].astype(np.int64)
        shift = np.ones((1, nall, 3))
        return Frame(nlist, mapping, shift)


def test_nlist_cache_with_stub(tmp_path):
    systems = _systems(tmp_path)
    stub = StubNlist()
    s = BatchSampler(systems, batch_size=3, seed=0, nlist=stub)
    seen = set()
    for _ in range(30):
        b = s.next_batch()
        seen.update((s.last_system, int(f)) for f in s.last_frames)
        nf = b["coord"].shape[0]
        assert b["nlist"].shape == (nf, 4, 4) and b["nlist"].dtype == np.int64
        assert b["mapping"].shape[:1] == (nf,) and b["shift"].shape[:2] == b["mapping"].shape
        for k, f in enumerate(s.last_frames):
            ref = stub(systems[s.last_system].coord[f][None], systems[s.last_system].atype[None],
                       systems[s.last_system].box[f][None])
            stub.calls.pop()
            nall = ref.mapping.shape[1]
            np.testing.assert_array_equal(b["nlist"][k], ref.nlist[0])
            np.testing.assert_array_equal(b["mapping"][k, :nall], ref.mapping[0])
            assert not b["mapping"][k, nall:].any() and not b["shift"][k, nall:].any()
            np.testing.assert_array_equal(b["shift"][k, :nall], ref.shift[0])
    # one call per distinct frame, each with a single frame
    assert len(stub.calls) == len(seen) == s.nlist_cache.misses == len(s.nlist_cache)
    assert s.nlist_cache.hits > 0
    assert all(c == ((1, 4, 3), (1, 4), (1, 9)) for c in stub.calls)


def test_nlist_cache_nopbc_passes_none(tmp_path):
    root = write_system(tmp_path / "mol", nopbc=True)
    stub = StubNlist()
    cache = NeighborListCache(stub)
    out = cache.batch(DeepmdSystem(root), [0, 1])
    assert stub.calls[0][2] is None and out["nlist"].shape == (2, 4, 4)
    cache.batch(DeepmdSystem(root), [1, 0])  # a reloaded system shares the cache key
    assert cache.hits == 2 and cache.misses == 2


# ---------------------------------------------------------------------------- real data
@needs_data
def test_water_loads():
    systems = load_systems(str(DATA / "water"), type_map=["O", "H"])
    assert [Path(s.path).name for s in systems] == ["data_0", "data_1", "data_2", "data_3"]
    assert [s.nframes for s in systems] == [80, 160, 80, 80]
    for s in systems:
        assert s.natoms == 192 and s.pbc
        np.testing.assert_array_equal(np.bincount(s.atype), [64, 128])
        assert s.coord.dtype == np.float64 and s.find["energy"].all() and not s.find["virial"].any()
    sampler = BatchSampler(systems[:3], batch_size="auto", seed=10)
    assert sampler.batch_sizes == [1, 1, 1] and sampler.nbatches == [80, 160, 80]
    b = sampler.next_batch()
    assert b["coord"].shape == (1, 192, 3) and b["force"].shape == (1, 192, 3)
    assert b["find_energy"] == 1.0 and b["find_virial"] == 0.0


@needs_data
def test_nio_spin_loads():
    systems = load_systems(
        [str(DATA / "nio_spin" / f"data_{i}") for i in range(3)],
        type_map=["Ni", "O"], labels=label_specs(spin=True),
    )
    assert [s.nframes for s in systems] == [60, 60, 31]
    b = systems[2].get_batch([0, 30])
    assert b["spin"].shape == (2, 32, 3) and b["force_mag"].shape == (2, 32, 3)
    assert b["find_spin"] == 1.0 and b["find_force_mag"] == 1.0
    np.testing.assert_array_equal(b["natoms"][0], [32, 32, 16, 16])
    raw = np.load(DATA / "nio_spin/data_2/set.000/spin.npy").reshape(31, 32, 3)
    np.testing.assert_array_equal(b["spin"], raw[[0, 30]][:, systems[2].idx_map])
    # magnetic moments sit on Ni (type 0)
    assert np.linalg.norm(b["spin"][0, :16], axis=-1).min() > 0.1


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
