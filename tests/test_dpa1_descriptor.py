"""DPA-1 / se_atten_v2 descriptor (SPEC_DPA1): DeePMD-kit's numbers on the spec examples, the analytic
backward against finite differences for every option, the mixed-type neighbour list and statistics,
serialization round trip, array-api-strict, configuration errors and warnings.  Descriptor level only
(model-level tests: tests/test_dpa1_model.py)."""

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import FD_TOL, TOL, random_system, rel_err

from dpcore.config import normalize_model
from dpcore.config.errors import ConfigError
from dpcore.descriptor import get_descriptor
from dpcore.descriptor.dpa1_config import DPA1Warning, mode_of
from dpcore.io import read_model_file
from dpcore.nlist import build_neighbor_list
from dpcore.pairs import pair_inputs, pair_vectors

EXAMPLES = Path(__file__).parent / "fixtures" / "dpa1" / "spec_examples"  # SPEC_DPA1 10, made by DeePMD-kit 3.2.0
TYPE_MAP = ["O", "H", "C"]
BASE = {"type": "dpa1", "sel": 30, "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 3, "attn": 6,
        "attn_layer": 2, "tebd_dim": 3, "seed": 7, "set_davg_zero": False}
VARIANTS = {  # name -> descriptor changes: every option of the forward
    "concat": {},
    "concat_smooth": {"smooth_type_embedding": True},
    "strip": {"tebd_input_mode": "strip"},
    "strip_one_side_excl": {"tebd_input_mode": "strip", "type_one_side": True, "exclude_types": [[0, 1]]},
    "v2": {"type": "se_atten_v2"},
    "v2_no_attention": {"type": "se_atten_v2", "attn_layer": 0, "exclude_types": [[1, 2]]},
    "one_side_options": {"type_one_side": True, "attn_dotr": False, "normalize": False, "temperature": 0.6,
                         "concat_output_tebd": False, "resnet_dt": True, "activation_function": "gelu"},
    "scaling_protection": {"scaling_factor": 2.0, "env_protection": 0.3, "ln_eps": 1e-3, "use_tebd_bias": True,
                           "exclude_types": [[0, 0], [1, 2]], "smooth_type_embedding": True},
    "stripped_flag": {"stripped_type_embedding": True, "neuron": [3, 6], "tebd_dim": 3},
}


def _section(**changes) -> dict:
    d = {**BASE, **changes}
    if d["type"] == "se_atten_v2":
        d.pop("smooth_type_embedding", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        return normalize_model({"type_map": TYPE_MAP, "descriptor": d, "fitting_net": {}})["descriptor"]


def _descriptor(name, seed=3):
    """(module, cfg, params) with random statistics of the physical structure and random layer norms."""
    cfg = _section(**VARIANTS[name])
    mod = get_descriptor(cfg["type"])
    params = mod.init_params(cfg, len(TYPE_MAP), cfg["seed"])
    rng = np.random.default_rng(seed)
    nt, nnei, _ = params["davg"].shape
    params["davg"][..., 0] = rng.normal(0.3, 0.1, (nt, 1))
    params["dstd"][:] = np.repeat(rng.uniform(0.5, 1.5, (nt, 1, 2)), nnei, axis=1)[..., [0, 1, 1, 1]]
    for layer in params["attention"].values():
        layer["layer_norm"]["w"] += rng.normal(0, 0.3, layer["layer_norm"]["w"].shape)
        layer["layer_norm"]["b"] += rng.normal(0, 0.3, layer["layer_norm"]["b"].shape)
    return mod, cfg, params


def _pairs(mod, cfg, coord, atype, box, first_type=None):
    atype = np.broadcast_to(atype, coord.shape[:2])
    nl = build_neighbor_list(coord, atype, box, cfg["rcut"], mod.nlist_sel(cfg))
    pairs = pair_inputs(nl, atype, len(TYPE_MAP), cfg["exclude_types"], first_type=first_type)
    b = None if box is None else np.asarray(box).reshape(-1, 3, 3)
    return pairs, pair_vectors(coord, b, pairs)


def _load_example(name):
    ref = json.loads((EXAMPLES / f"{name}.json").read_text())
    d = read_model_file(EXAMPLES / f"{name}.yaml")["model"]["descriptor"]
    mod = get_descriptor(d["type"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        cfg, params = mod.deserialize(d, len(ref["type_map"]))
    coord, atype = np.array(ref["coord"])[None], np.array(ref["atype"])[None]
    return ref, mod, cfg, params, coord, atype


@pytest.mark.parametrize("name", ["dpa1_tiny", "se_atten_v2_tiny"])
def test_spec_example_nlist_and_descriptor_equal_deepmd_kit(name):
    ref, mod, cfg, params, coord, atype = _load_example(name)
    nl = build_neighbor_list(coord, atype, None, cfg["rcut"], mod.nlist_sel(cfg))
    assert nl.nlist[0].tolist() == ref["nlist"]  # one mixed block, nearest first, -1 padding at the end
    pairs, rij = _pairs(mod, cfg, coord, atype, None)
    D, _ = mod.forward(cfg, params, rij, pairs)
    assert rel_err(D[0], np.array(ref["descriptor"])) <= TOL["float64"]


def test_spec_example_padding_takes_the_first_atoms_type():
    """SPEC_DPA1 0.2: swapping atoms 0 and 1 (types O, H) changes the dpa1_tiny descriptor of the other atoms,
    unless the padding type is the original first atom's (then it is a permutation)."""
    ref, mod, cfg, params, coord, atype = _load_example("dpa1_tiny")
    perm = ref["permutation_check"]["perm"]
    pairs, rij = _pairs(mod, cfg, coord, atype, None)
    D, _ = mod.forward(cfg, params, rij, pairs)
    pairs_p, rij_p = _pairs(mod, cfg, coord[:, perm], atype[:, perm], None)
    Dp, _ = mod.forward(cfg, params, rij_p, pairs_p)
    assert rel_err(Dp[0], D[0, perm]) > 1e-3
    pairs_f, rij_f = _pairs(mod, cfg, coord[:, perm], atype[:, perm], None, first_type=atype[:, 0])
    Df, _ = mod.forward(cfg, params, rij_f, pairs_f)
    assert rel_err(Df[0], D[0, perm]) <= TOL["float64"]


@pytest.mark.parametrize("name", ["dpa1_tiny", "se_atten_v2_tiny"])
def test_mixed_type_statistics_equal_the_files(name):
    """davg/dstd of the spec examples were made by DeePMD-kit's compute_input_stats on the example frame (then
    rounded to 4 decimals): the mixed-type statistics over all nnei slots per centre type."""
    ref, mod, cfg, params, coord, atype = _load_example(name)
    model_cfg = {"type_map": ref["type_map"], "descriptor": cfg, "pair_exclude_types": []}
    st = mod.stats(model_cfg, params, [{"coord": coord, "atype": atype, "box": None}])
    assert np.abs(st["davg"] - params["davg"]).max() <= 5e-5
    assert np.abs(st["dstd"] - params["dstd"]).max() <= 5e-5


def _fd_check(mod, cfg, params, pairs, rij, h=1e-4):
    """Analytic vjp of a random linear functional of D against 5-point central differences (all real slots)."""
    D, cache = mod.forward(cfg, params, rij, pairs)
    w = np.random.default_rng(0).normal(size=D.shape)
    g = mod.vjp(cfg, params, w, cache)

    def f(r):
        return float(np.sum(w * mod.forward(cfg, params, r, pairs)[0]))

    num = np.zeros_like(rij)
    for idx in zip(*np.nonzero(pairs["nlist_mask"])):
        for c in range(3):
            e = np.zeros_like(rij)
            e[idx + (c,)] = h
            num[idx + (c,)] = (8 * (f(rij + e) - f(rij - e)) - (f(rij + 2 * e) - f(rij - 2 * e))) / (12 * h)
    assert np.all(g[~pairs["nlist_mask"]] == 0.0)
    return rel_err(g, num)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_analytic_backward_matches_finite_differences(name):
    mod, cfg, params = _descriptor(name)
    coord, atype, box = random_system(natoms=6, nframes=1, ntypes=3, box_len=4.0, seed=11)
    pairs, rij = _pairs(mod, cfg, coord, atype, box)
    assert pairs["nlist_mask"].any() and not pairs["nlist_mask"].all()  # real and padded slots
    assert _fd_check(mod, cfg, params, pairs, rij) <= FD_TOL


@pytest.mark.parametrize("name", ["concat", "strip"])
def test_analytic_backward_with_anisotropic_statistics(name):
    """Angular davg != 0 and unequal angular dstd (a hand-made file): r^ = R~[1:4] / |R~[1:4]| is then not
    r_ij / r, and empty slots have a non-zero direction."""
    mod, cfg, params = _descriptor(name)
    rng = np.random.default_rng(4)
    params["davg"][..., 1:4] = rng.normal(0.0, 0.05, (3, 1, 3))
    params["dstd"][..., 1:4] = rng.uniform(0.5, 1.5, (3, 1, 3))
    coord, atype, box = random_system(natoms=6, nframes=1, ntypes=3, box_len=4.0, seed=11)
    pairs, rij = _pairs(mod, cfg, coord, atype, box)
    assert _fd_check(mod, cfg, params, pairs, rij) <= FD_TOL


@pytest.mark.parametrize("name", ["concat", "v2", "one_side_options"])
def test_array_api_strict_equals_numpy(name):
    xps = pytest.importorskip("array_api_strict")
    mod, cfg, params = _descriptor(name)
    coord, atype, box = random_system(natoms=8, nframes=2, ntypes=3, box_len=4.5, seed=5)
    pairs, rij = _pairs(mod, cfg, coord, atype, box)
    D, cache = mod.forward(cfg, params, rij, pairs)
    w = np.random.default_rng(1).normal(size=D.shape)
    g = mod.vjp(cfg, params, w, cache)

    def conv(tree):
        return {k: conv(v) for k, v in tree.items()} if isinstance(tree, dict) else xps.asarray(tree)

    Ds, cache_s = mod.forward(cfg, conv(params), xps.asarray(rij), conv(pairs))
    gs = mod.vjp(cfg, conv(params), xps.asarray(w), cache_s)
    assert rel_err(np.asarray(Ds), D) <= TOL["float64"] and rel_err(np.asarray(gs), g) <= TOL["float64"]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_serialize_round_trip_keeps_arrays_and_numbers(name):
    mod, cfg, params = _descriptor(name)
    d = mod.serialize(cfg, params, TYPE_MAP)
    assert d["type"] == ("se_atten_v2" if cfg["type"] == "se_atten_v2" else "dpa1") and d["@version"] == 2
    assert d["sel"] == [30] and ("embeddings_strip" in d) == (mode_of(cfg)[0] == "strip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        cfg2, params2 = get_descriptor(d["type"]).deserialize(copy.deepcopy(d), len(TYPE_MAP))
    coord, atype, box = random_system(natoms=8, nframes=1, ntypes=3, box_len=4.5, seed=2)
    pairs, rij = _pairs(mod, cfg, coord, atype, box)
    D1 = mod.forward(cfg, params, rij, pairs)[0]
    D2 = get_descriptor(cfg2["type"]).forward(cfg2, params2, rij, pairs)[0]
    assert np.array_equal(D1, D2)
    again = mod.serialize(cfg2, params2, TYPE_MAP)
    assert {k: v for k, v in again.items() if k not in ("@variables", "embeddings", "embeddings_strip",
                                                        "attention_layers", "type_embedding")} == \
        {k: v for k, v in d.items() if k not in ("@variables", "embeddings", "embeddings_strip", "attention_layers",
                                                 "type_embedding")}
    assert mod.dim_out(cfg) == D1.shape[-1]


def test_int_sel_gives_one_mixed_block_and_type_split_is_unchanged():
    coord, atype, box = random_system(natoms=20, nframes=2, ntypes=3, box_len=6.0, seed=4)
    mixed = build_neighbor_list(coord, atype, box, 4.0, 40)
    flagged = build_neighbor_list(coord, atype, box, 4.0, [40, 0, 0], mixed_types=True)
    assert np.array_equal(mixed.nlist, flagged.nlist) and np.array_equal(mixed.mapping, flagged.mapping)
    split = build_neighbor_list(coord, atype, box, 4.0, [15, 15, 15])
    ref = build_neighbor_list(coord, atype, box, 4.0, np.array([15, 15, 15]))
    assert np.array_equal(split.nlist, ref.nlist)
    assert get_descriptor("se_e2_a").nlist_sel({"sel": [15, 15, 15]}) == [15, 15, 15]


def test_init_params_deterministic_and_trainable_mask():
    mod, cfg, _ = _descriptor("strip")
    a, b = mod.init_params(cfg, 3, 5), mod.init_params(cfg, 3, 5)
    c = mod.init_params(cfg, 3, 6)
    assert np.array_equal(a["attention"]["1"]["in_proj"]["w"], b["attention"]["1"]["in_proj"]["w"])
    assert not np.array_equal(a["embedding_strip"]["0"]["0"]["w"], c["embedding_strip"]["0"]["0"]["w"])
    assert a["type_embedding"]["0"]["w"].shape == (3, cfg["tebd_dim"]) and "b" not in a["type_embedding"]["0"]
    mask = mod.trainable_mask({**cfg, "trainable_ln": False}, a)
    assert mask["davg"] is False and mask["attention"]["0"]["layer_norm"] == {"w": False, "b": False}
    assert mask["attention"]["0"]["in_proj"]["w"] is True and mask["type_embedding"]["0"]["w"] is True
    assert mod.trainable_mask({**cfg, "trainable": False}, a)["embedding"]["0"]["0"]["w"] is False


@pytest.mark.parametrize("change,key", [
    ({"attn_mask": True}, "attn_mask"), ({"tebd_input_mode": "sum"}, "tebd_input_mode"),
    ({"use_econf_tebd": True}, "use_econf_tebd"), ({"lmax": 3}, "lmax"), ({"sel": -2}, "sel"),
    ({"axis_neuron": 9}, "axis_neuron"), ({"exclude_types": [[0, 3]]}, "exclude_types"),
])
def test_config_errors_name_the_key(change, key):
    with pytest.raises(ConfigError, match=f"model/descriptor/{key}"):
        _section(**change)


def test_config_warnings_and_spin_backbone():
    def caught(**d):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            normalize_model({"type_map": TYPE_MAP, "descriptor": {"type": "se_atten", "sel": 20, **d}, "fitting_net": {}})
        return " | ".join(str(x.message) for x in w if issubclass(x.category, DPA1Warning))

    assert "not continuous at rcut" in caught()  # argcheck default smooth_type_embedding false
    assert caught(smooth_type_embedding=True) == ""  # set_davg_zero true (default): smooth and order-independent
    assert "first atom" in caught(smooth_type_embedding=True, set_davg_zero=False)
    assert "its sum (30)" in caught(sel=[20, 10], smooth_type_embedding=True)
    assert caught(type="se_atten_v2") == ""
    cfg = _section(type="se_atten_v2")
    assert get_descriptor("se_atten_v2").spin_backbone(cfg)["sel"] == cfg["sel"]  # not doubled (SPEC_DPA1 9)
    assert get_descriptor("se_atten").nlist_sel({"sel": [20, 10]}) == 30
