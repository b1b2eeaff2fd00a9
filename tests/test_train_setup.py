"""Training set-up that needs no framework: trainable/frozen parameter split, batch inputs, descriptor and
energy statistics (also of spin models), automatic sel, and what train() refuses."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from helpers import TOL, make_model
from helpers.train import flat, make_case, make_spin_case


# ------------------------------------------------------------------------------------------ loop pieces
def test_trainable_split_merge():
    from dpcore.train.params import merge_params, split_params, trainable_mask

    model = make_model(fitting={"trainable": [True, False, True]})
    mask = trainable_mask(model.config, model.params)
    tr, fr = split_params(model.params, mask)
    assert set(tr) == {"descriptor", "fitting"} and set(tr["descriptor"]) == {"embedding"}
    assert set(tr["fitting"]["nets"]["0"]) == {"0", "2"}  # layer 1 frozen
    assert "davg" in fr["descriptor"] and "out_bias" in fr and "bias_atom_e" in fr["fitting"]
    merged = merge_params(tr, fr)
    assert flat(merged).keys() == flat(model.params).keys()
    frozen_desc = make_model(descriptor={"trainable": False})
    tr2, _ = split_params(frozen_desc.params, trainable_mask(frozen_desc.config, frozen_desc.params))
    assert "descriptor" not in tr2


def test_batch_inputs_match_inference(tmp_path):
    """Inputs built from a sampled batch give the same energies/forces as EnergyModel.evaluate."""
    from dpcore.backends import get_backend
    from dpcore.config import normalize_config
    from dpcore.data import NeighborListCache, samplers_from_config
    from dpcore.train.batch import batch_inputs
    from dpcore.train.setup import nlist_maker

    cfg = normalize_config(make_case(tmp_path, sel=[24, 24]))
    train_s, _ = samplers_from_config(cfg)
    model = make_model(descriptor={"sel": [24, 24], "rcut": 3.5, "neuron": [4, 8]}, fitting={"neuron": [8, 8]})
    train_s.nlist_cache = NeighborListCache(nlist_maker(model.config))
    batch = train_s.next_batch()
    inputs, labels, blocks = batch_inputs(model.config, batch)
    assert blocks is not None and labels["find_energy"] == 1.0 and labels["find_virial"] == 0.0
    out = get_backend("numpy").model_forward(model.config, model.params, inputs, blocks)
    ref = model.evaluate(batch["coord"], batch["atype"][0], batch["box"])
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=TOL["float64"])
    np.testing.assert_allclose(out["force"], ref["force"], rtol=TOL["float64"], atol=TOL["float64"])


def test_stats_and_auto_sel(tmp_path):
    from dpcore.config import normalize_config
    from dpcore.data import NeighborListCache, samplers_from_config
    from dpcore.stat.labels import energy_bias
    from dpcore.stat.descriptor import descriptor_stats
    from dpcore.train.setup import build_model_and_stats, nlist_maker, resolve_sel

    cfg = normalize_config(make_case(tmp_path))
    train_s, _ = samplers_from_config(cfg)
    cfg = resolve_sel(cfg, train_s.systems)
    sel = cfg["model"]["descriptor"]["sel"]
    assert isinstance(sel, list) and all(s % 4 == 0 and s > 0 for s in sel)
    train_s.nlist_cache = NeighborListCache(nlist_maker(cfg["model"]))
    model = build_model_and_stats(cfg, train_s)
    samples = train_s.stat_batches(2)
    davg, dstd = descriptor_stats(model.config, samples)
    np.testing.assert_array_equal(model.params["descriptor"]["davg"], davg)
    np.testing.assert_array_equal(model.params["descriptor"]["dstd"], dstd)
    bias = energy_bias(samples, 2)["out_bias"].reshape(2)
    np.testing.assert_array_equal(model.params["out_bias"], bias)
    # training.stat_file: the env-matrix sums are stored, then read back instead of recomputed
    cfg["training"]["stat_file"] = str(tmp_path / "stat")
    build_model_and_stats(cfg, train_s)
    assert any((tmp_path / "stat").rglob("r_0.npy"))
    cached = build_model_and_stats(cfg, train_s)
    np.testing.assert_array_equal(cached.params["descriptor"]["dstd"], dstd)
    # --init-model keeps the given parameters (statistics included)
    again = build_model_and_stats(cfg, train_s, init_params=model.params)
    np.testing.assert_array_equal(again.params["out_bias"], model.params["out_bias"])
    bad = copy.deepcopy(model.params)
    bad["descriptor"]["davg"] = bad["descriptor"]["davg"][:, :4]
    with pytest.raises(ValueError, match="init-model.*shape"):
        build_model_and_stats(cfg, train_s, init_params=bad)


def test_train_refuses_numpy_backend(tmp_path):
    from dpcore.train import train

    with pytest.raises(ValueError, match="cannot train.*torch, jax, tensorflow, paddle"):
        train(make_case(tmp_path), "numpy")


def test_train_refuses_what_it_does_not_implement(tmp_path):
    from dpcore.train import train

    cfg = make_case(tmp_path)
    with pytest.raises(ValueError, match="mutually exclusive"):
        train(cfg, "torch", restart="a", init_model="b")
    bad = copy.deepcopy(cfg)
    bad["training"]["enable_ema"] = True
    with pytest.raises(NotImplementedError, match="training/enable_ema"):
        train(bad, "torch")


def test_spin_statistics(tmp_path):
    """A spin model's statistics are its backbone's on the frames with virtual atoms; virtual types get no bias."""
    from dpcore.config import normalize_config
    from dpcore.data import samplers_from_config
    from dpcore.stat.labels import energy_bias
    from dpcore.stat.descriptor import descriptor_stats
    from dpcore.train.setup import build_model_and_stats, resolve_sel, spin_stat_samples

    cfg = normalize_config(make_spin_case(tmp_path))
    train_s, _ = samplers_from_config(cfg)
    cfg = resolve_sel(cfg, train_s.systems)
    model = build_model_and_stats(cfg, train_s)
    assert model.model_type == "spin_ener" and len(model.config["type_map"]) == 4
    samples = spin_stat_samples(model, train_s.stat_batches(2))
    s0 = samples[0]
    nloc = s0["coord"].shape[1] // 2
    np.testing.assert_array_equal(s0["atype"][:, nloc:], s0["atype"][:, :nloc] + 2)
    ni = s0["atype"][0, :nloc] == 0
    np.testing.assert_allclose(s0["coord"][:, nloc:][:, ni] - s0["coord"][:, :nloc][:, ni], 0.3 * s0["spin"][:, ni])
    np.testing.assert_array_equal(s0["coord"][:, nloc:][:, ~ni], s0["coord"][:, :nloc][:, ~ni])
    davg, dstd = descriptor_stats(model.config, samples)
    np.testing.assert_array_equal(model.params["descriptor"]["dstd"], dstd)
    bias = energy_bias(samples, 4, model.config["atom_exclude_types"])["out_bias"].reshape(4)
    np.testing.assert_array_equal(model.params["out_bias"], bias)
    assert np.all(bias[2:] == 0.0) and np.all(bias[:2] != 0.0)
