"""Batching and sampling of deepmd/npy data: batch sizes, system probabilities, the deterministic and
resumable sampler, the neighbour-list cache, and DeePMD-kit's water and NiO data."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from dpcore.data import (
    BatchSampler,
    DataError,
    DeepmdSystem,
    NeighborListCache,
    label_specs,
    load_systems,
    parse_batch_size,
    system_probabilities,
)
from helpers.data import write_system

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="reference data /work/shared/data is absent"
)


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
