"""Shared embedding inputs (dpcore.pair_share): the se_e2_a net runs once per distinct input of a block, and the
outputs (energy, forces, virial, per-atom virial) are those of the slot-by-slot computation.  NumPy here; the
autodiff backends and parameter gradients in tests/isolated/test_pair_share_backends.py."""

from pathlib import Path

import numpy as np
import pytest

from helpers import make_model, random_system
from helpers.spin import make_spin_model, spin_system

from dpcore import pair_share
from dpcore.backends import get_backend
from dpcore.env_mat import env_mat
from dpcore.network import embedding_with_slope, init_net, net_forward
from dpcore.pairs import pair_vectors
from dpcore.slot_trim import SlotTrim

TOL = 1e-12  # shared vs slot by slot, relative to the largest |value| of each output (float64)
WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water" / "data_0"


def assert_same(got: dict, ref: dict):
    assert set(got) == set(ref)
    for key, want in ref.items():
        want, have = np.asarray(want, dtype=np.float64), np.asarray(got[key], dtype=np.float64)
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
        assert float(np.abs(have - want).max(initial=0.0)) <= TOL * scale, key


def shared_inputs(model, coord, atype, box, compiled=False):
    from dpcore.infer.inputs import prepare

    inputs, blocks, _ = prepare(model, coord, atype, box)
    trim = SlotTrim(model.config["descriptor"], compiled)
    blocks = trim(blocks, inputs["nlist_mask"])
    return inputs, trim.share(inputs, blocks, model.params["descriptor"]), blocks


def normalised_inputs(model, inputs):
    """The embedding input ``R~[..., 0]`` (nf, nloc, nnei) of every slot (NumPy)."""
    d, p = model.config["descriptor"], model.params["descriptor"]
    rij = pair_vectors(inputs["coord"], inputs["box"], inputs)
    R, _ = env_mat(rij, inputs["nlist_mask"], d["rcut"], d["rcut_smth"], d["env_protection"])
    ct = inputs["centre_type"]
    return ((R - p["davg"][ct]) / p["dstd"][ct])[..., 0]


def check_indices(model, inputs, shared, blocks):
    """Every real slot's distinct input holds the slot's own number, bit for bit, empty slots have none, and the
    inverses list exactly the slots of each input and the input reading each slot; returns (used slots, real
    slots, distinct inputs) per block."""
    s = normalised_inputs(model, inputs)
    mask = inputs["nlist_mask"]
    sec = np.cumsum([0] + list(model.config["descriptor"]["sel"]))
    counts = {}
    for tc, start, stop, widths in blocks:
        for tn, w in enumerate(widths):
            if w == 0:
                assert pair_share.key("src", tc, tn) not in shared
                continue
            src, dst, slots, reader = (shared[pair_share.key(p, tc, tn)] for p in pair_share.PARTS)
            block = s[:, start:stop, sec[tn] : sec[tn] + w].reshape(s.shape[0], -1)
            real = mask[:, start:stop, sec[tn] : sec[tn] + w].reshape(s.shape[0], -1)
            n = block.shape[1]
            assert dst.shape == block.shape and reader.shape == block.shape + (1,)
            assert src.shape[:2] == slots.shape[:2] and src.shape[0] == block.shape[0]
            for f in range(block.shape[0]):
                assert np.array_equal(dst[f] >= 0, real[f])
                used = int(dst[f].max(initial=-1)) + 1
                assert np.array_equal(block[f, src[f][dst[f][real[f]]]], block[f, real[f]])  # same input, exactly
                assert set(np.unique(dst[f][real[f]])) == set(range(used))  # every distinct input is used
                for u in range(src.shape[1]):  # the inverses
                    listed = sorted(x for x in slots[f, u] if x < n)
                    assert listed == sorted(np.flatnonzero(dst[f] == u)) if u < used else listed == []
                assert np.array_equal(reader[f, :, 0][src[f][:used]], np.arange(used))
                others = np.ones(n, dtype=bool)
                others[src[f][:used]] = False
                assert np.all(reader[f, others, 0] == src.shape[1])
            counts[(tc, tn)] = (n, int(real.sum(axis=1).max()), int(dst.max()) + 1)
    return counts


@pytest.mark.skipif(not WATER.is_dir(), reason="water data not present in ../shared/data")
def test_water_same_type_pairs_run_once():
    """On a water frame the same-type blocks run the net on about half their used slots, the others on their
    real neighbours plus one input per column of empty slots."""
    model = make_model(descriptor={"sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5}, type_map=["O", "H"])
    coord = np.load(WATER / "set.000" / "coord.npy")[:1].reshape(1, -1, 3)
    box = np.load(WATER / "set.000" / "box.npy")[:1]
    atype = np.loadtxt(WATER / "type.raw", dtype=np.int64)
    inputs, shared, blocks = shared_inputs(model, coord, atype, box)
    counts = check_indices(model, inputs, shared, blocks)
    for (tc, tn), (slots, real, distinct) in counts.items():
        if tc == tn:  # every pair listed from both ends (no sel overflow here)
            assert distinct == real // 2, (tc, tn, slots, real, distinct)
        else:
            assert distinct == real
    slots, distinct = (sum(c[i] for c in counts.values()) for i in (0, 2))
    assert distinct < 0.66 * slots  # the net runs on 64% of the used slots (module docstring)


def test_system_cases_indices_and_outputs():
    """Small periodic cells (several images of one pair, images of the centre itself), a sel that overflows (a
    pair listed from one end only), chunks of centres: the indices hold each slot's own input and the outputs
    equal the slot-by-slot ones."""
    be = get_backend("numpy")
    cases = (([24, 30], 6.0, 4, {}), ([3, 5], 6.0, 5, {}), ([40, 60], 3.2, 6, {}),
             ([24, 30], 6.0, 4, {"exclude_types": [[0, 1]]}), ([24, 30], 6.0, 4, {"exclude_types": [[0, 0]]}),
             ([24, 30], 6.0, 4, {"type_one_side": True}))
    for sel, box_len, seed, extra in cases:
        model = make_model(descriptor={"sel": sel, "rcut": 3.6, **extra})
        coord, atype, box = random_system(natoms=16, nframes=2, box_len=box_len, seed=seed)
        inputs, shared, blocks = shared_inputs(model, coord, atype, box)
        check_indices(model, inputs, shared, blocks)
        assert any(pair_share.key("src", t, t) in shared for t in range(2))
        got = be.model_forward(model.config, model.params, shared, blocks, atomic_virial=True)
        ref = be.model_forward(model.config, model.params, inputs, blocks, atomic_virial=True)
        assert_same(got, ref)
    chunked = model.evaluate(coord, atype, box, backend="numpy", atomic=True, chunk_size=5)
    whole = model.evaluate(coord, atype, box, backend="numpy", atomic=True)
    assert_same(chunked, whole)


def test_statistics_that_vary_by_slot_share_no_pairs():
    """davg varying from slot to slot: the two ends of a pair are normalised differently, so same-type pairs are
    not shared (empty slots still are, per column), with the slot-by-slot outputs."""
    model = make_model(descriptor={"sel": [24, 30], "rcut": 3.6})
    davg = model.params["descriptor"]["davg"]
    davg[..., 0] += np.linspace(0.0, 0.2, davg.shape[1])
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    inputs, shared, blocks = shared_inputs(model, coord, atype, box)
    assert not pair_share.symmetric_sections(davg, model.params["descriptor"]["dstd"], [0, 24, 54])
    counts = check_indices(model, inputs, shared, blocks)
    assert all(real == distinct for slots, real, distinct in counts.values())  # every real slot its own input
    be = get_backend("numpy")
    assert_same(be.model_forward(model.config, model.params, shared, blocks, atomic_virial=True),
                be.model_forward(model.config, model.params, inputs, blocks, atomic_virial=True))


def test_models_evaluate_with_shared_inputs(monkeypatch):
    """EnergyModel.evaluate (one pass and chunks) and a spin model's equal the slot-by-slot outputs; the shared
    path is taken."""
    from dpcore.descriptor import se_e2_a_embed

    model = make_model(descriptor={"sel": [24, 30], "rcut": 3.6})
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    calls = []
    contract = se_e2_a_embed.shared_contract
    monkeypatch.setattr(se_e2_a_embed, "shared_contract", lambda *a: calls.append(1) or contract(*a))
    got = [model.evaluate(coord, atype, box, backend="numpy", atomic=True, chunk_size=c) for c in (None, 5)]
    assert calls
    spin = make_spin_model()
    scoord, satype, sspin, sbox = spin_system(spin, "pbc_triclinic")
    got_spin = spin.evaluate(scoord, satype, sspin, sbox, backend="numpy", atomic=True)
    monkeypatch.setattr(pair_share.PairShare, "__call__", lambda self, inputs, blocks, d: inputs)
    calls.clear()
    for g, c in zip(got, (None, 5)):
        assert_same(g, model.evaluate(coord, atype, box, backend="numpy", atomic=True, chunk_size=c))
    assert_same(got_spin, spin.evaluate(scoord, satype, sspin, sbox, backend="numpy", atomic=True))
    assert not calls


def test_compressed_tables_share_in_fused_forwards_only():
    """A compressed model's tables give the slot-by-slot outputs from shared inputs (as jax prepares them); the
    backends whose forwards are not XLA programs do not share tables (registry ``xla_forward``, measured)."""
    from dpcore.backends.registry import info
    from dpcore.descriptor.tabulate import compress_model
    from dpcore.infer.inputs import prepare

    model = compress_model(make_model(descriptor={"sel": [24, 30], "rcut": 3.6}), 0.9)
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    inputs, blocks, _ = prepare(model, coord, atype, box)
    be = get_backend("numpy")
    trim = be.slot_trim(model.config)
    blocks = trim(blocks, inputs["nlist_mask"])
    assert trim.share(inputs, blocks, model.params["descriptor"]) is inputs
    assert info("jax").xla_forward and info("tensorflow").xla_forward
    assert not any(info(b).xla_forward for b in ("numpy", "torch", "paddle"))
    graph = SlotTrim(model.config["descriptor"], True, share_tables=False)  # a compiled forward that is not XLA
    assert graph.share(inputs, blocks, model.params["descriptor"]) is inputs
    compiled = SlotTrim(model.config["descriptor"], True, share_tables=True)
    shared = compiled.share(inputs, blocks, model.params["descriptor"])
    check_indices(model, inputs, shared, blocks)
    assert_same(be.model_forward(model.config, model.params, shared, blocks, atomic_virial=True),
                be.model_forward(model.config, model.params, inputs, blocks, atomic_virial=True))


def test_compiled_sizes_have_headroom_and_only_grow():
    model = make_model(descriptor={"sel": [24, 30], "rcut": 3.6})
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    from dpcore.infer.inputs import prepare

    trim = SlotTrim(model.config["descriptor"], True)
    sizes = []
    for f in (0, 1, 0):
        inputs, blocks, _ = prepare(model, coord[f : f + 1], atype, box[f : f + 1])
        blocks = trim(blocks, inputs["nlist_mask"])
        shared = trim.share(inputs, blocks, model.params["descriptor"])
        src = {k: v for k, v in shared.items() if k.startswith("share_src")}
        dst = {k: shared[k.replace("src", "dst")] for k in src}
        for k, v in src.items():
            need = int(dst[k].max()) + 1
            assert v.shape[1] >= min(need * pair_share.HEADROOM, dst[k].shape[1]) - 1e-9
            assert v.shape[1] % pair_share.QUANTUM == 0 or v.shape[1] == dst[k].shape[1]
            assert shared[k.replace("src", "slots")].shape[1] == v.shape[1]
        sizes.append({k: v.shape[1] for k, v in src.items()})
    assert all(sizes[i][k] <= sizes[i + 1][k] for i in range(2) for k in sizes[i])
    assert sizes[2] == sizes[1]  # the first frame again: the same compiled shapes


@pytest.mark.parametrize("compute", [None, "float32"])
def test_embedding_with_slope_matches_the_net_and_its_derivative(compute):
    rng = np.random.default_rng(3)
    for resnet_dt in (False, True):
        net = init_net(rng, 1, [8, 16, 32, 32], None, resnet_dt, np.float64)
        x = rng.uniform(-0.5, 2.0, (7, 5, 1))
        y, dy = embedding_with_slope(net, x, "tanh", compute)
        ref = net_forward(net, x, "tanh", compute=compute)[0]
        assert np.array_equal(y, ref)
        if compute is None:
            h = 1e-6
            fd = (net_forward(net, x + h, "tanh")[0] - net_forward(net, x - h, "tanh")[0]) / (2 * h)
            assert np.abs(dy - fd).max() <= 1e-8 * np.abs(fd).max()
        else:
            assert np.abs(dy - embedding_with_slope(net, x, "tanh")[1]).max() <= 1e-5 * np.abs(dy).max()


def test_grouping_of_key_rows_both_ways():
    """Equal key rows get one group, numbered in key order, the first row of each group its representative:
    through one mixed-radix code, and through a sort of the rows when the code would overflow."""
    rng = np.random.default_rng(0)
    base = rng.integers(-3, 4, (500, 6))
    for scale in (1, 2**40):  # 2**40 in two columns: no 63-bit code, the row sort
        keys = base.copy()
        keys[:, 1:3] *= scale
        first, group, order = pair_share._group(keys)
        distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
        assert np.array_equal(group, inverse.reshape(-1)) and np.array_equal(keys[first], distinct)
        assert np.array_equal(first, [np.flatnonzero(group == g)[0] for g in range(len(first))])
        assert np.array_equal(order, np.argsort(group, kind="stable"))


def test_a_centre_listed_twice_keeps_two_slots_per_input():
    """A chunk of centres padded with a repeated centre (dpcore.infer.chunked): the repeated row's slots keep
    inputs of their own, so no input has more than the two slots of a pair."""
    mask = np.array([[True, True], [True, False], [True, True]])
    owner = np.array([[1, 2], [0, 0], [1, 2]])  # rows: centre 0, centre 1, centre 0 again
    shift = np.zeros((3, 2, 3))
    src, dst, slots = pair_share.block_share(mask, owner, shift, [0, 1, 0], same_type=True)
    assert slots.shape[1] == 2
    assert dst[0] == dst[2] and dst[0] not in (dst[4], dst[5])  # 0-1 from both ends; the repeat apart
    assert len(src) == 4 and sorted(dst[mask.reshape(-1)]) == [0, 1, 2, 2, 3]
