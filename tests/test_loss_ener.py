"""The ``ener`` loss (SPEC 8.2) on NumPy (and once on array-api-strict) against the loop reference of
tests/helpers/loss_reference.py: the full option matrix, term activation, prefactors, metric keys, missing
labels and masks.  The ``ener_spin`` loss: tests/test_loss_spin.py; configuration errors:
tests/test_loss_config.py; framework runs: tests/isolated/test_loss_backends.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dpcore.loss import EnergyLoss, EnergySpinLoss, make_loss
from helpers.loss import BASE_PREFS, LR, START_LR, assert_matches, make_batch
from helpers.loss_reference import ref_ener, ref_spin


# ------------------------------------------------------------------------------------------- option matrix
PF = {"off": {}, "pf": {"start_pref_pf": 2.0, "limit_pref_pf": 1.0},
      "default_pf": {"start_pref_pf": 2.0, "limit_pref_pf": 1.0, "use_default_pf": True}}
GF = {"off": {}, "gf": {"start_pref_gf": 0.5, "limit_pref_gf": 3.0, "numb_generalized_coord": 2}}
HUBER = {"off": {}, "h0.3": {"use_huber": True, "huber_delta": 0.3},
         "h3": {"use_huber": True, "huber_delta": [0.3, 0.5, 0.1]}}
MISSING = {"all": (), "no_e_v": ("energy", "virial"), "no_f_ae": ("force", "atom_ener"),
           "no_pref_drdq_coeff": ("atom_pref", "drdq", "atom_ener_coeff")}


def _matrix():
    for lf, inten, rel, pf, miss, hub, norm, coeff, gf in itertools.product(
            ("mse", "mae"), (False, True), (None, 0.5), PF, MISSING, HUBER, (False, True), (False, True), GF):
        cfg = {**BASE_PREFS, "loss_func": lf, "intensive_ener_virial": inten, "relative_f": rel,
               "f_use_norm": norm, "enable_atom_ener_coeff": coeff, **PF[pf], **HUBER[hub], **GF[gf]}
        if rel is None:
            del cfg["relative_f"]
        cid = f"{lf}-{'int' if inten else 'ext'}-rel{rel}-{pf}-{miss}-{hub}-norm{int(norm)}-coeff{int(coeff)}-{gf}"
        yield pytest.param(cfg, MISSING[miss], id=cid)


MATRIX = list(_matrix())


@pytest.mark.parametrize("cfg,missing", MATRIX)
def test_ener_option_matrix(cfg, missing):
    huber_on = cfg.get("use_huber", False)
    if huber_on and ("start_pref_pf" in cfg or "start_pref_gf" in cfg or cfg.get("relative_f") is not None):
        with pytest.raises(RuntimeError, match="Huber loss is not implemented"):
            make_loss(cfg, start_lr=START_LR)
        return
    if cfg["f_use_norm"] and not (huber_on or cfg["loss_func"] == "mae"):
        with pytest.raises(RuntimeError, match="f_use_norm can only be True when use_huber or loss_func='mae'"):
            make_loss(cfg, start_lr=START_LR)
        return
    loss = make_loss(cfg, "numpy", START_LR)
    out, labels = make_batch(missing=missing)
    assert_matches(loss(out, labels, LR), ref_ener(cfg, out, labels))
    if cfg["loss_func"] == "mse":  # the mae=True flag of evaluation tools
        assert_matches(loss(out, labels, LR, mae=True), ref_ener(cfg, out, labels, mae=True))


def test_option_matrix_is_complete():
    ids = [p.id for p in MATRIX]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2 * 3 * 4 * 3 * 2 * 2 * 2


# ------------------------------------------------------------------------------------- activation, keys
def test_term_active_when_start_or_limit_nonzero():
    """dpcore's OR rule on every backend: ``start 0, limit 1`` trains the virial (PyTorch's AND rule would not)."""
    out, labels = make_batch(seed=1)
    base = make_loss({}, start_lr=START_LR)
    for start, limit in ((0.0, 1.0), (1.0, 0.0), (2.0, 3.0)):
        cfg = {"start_pref_v": start, "limit_pref_v": limit}
        loss = make_loss(cfg, start_lr=START_LR)
        assert loss.active["v"] and "rmse_v" in loss.display_keys and "virial" in loss.label_requirements
        for lr in (START_LR, 0.0, LR):
            total, met = loss(out, labels, lr)
            assert_matches((total, met), ref_ener(cfg, out, labels, lr=lr))
            pref = limit + (start - limit) * lr / START_LR
            extra = float(total) - float(base(out, labels, lr)[0])
            assert (extra > 0) == (pref > 0), (start, limit, lr)
    off = make_loss({"start_pref_v": 0.0, "limit_pref_v": 0.0})
    assert not off.active["v"] and "rmse_v" not in off(out, labels, LR)[1]


def test_prefactor_follows_learning_rate_exactly():
    out, labels = make_batch(seed=4, masked=False)
    cfg = {"start_pref_e": 0.0, "limit_pref_e": 0.0, "start_pref_f": 7.0, "limit_pref_f": 2.0}
    loss = make_loss(cfg, start_lr=START_LR)
    for lr in (START_LR, 0.5 * START_LR, 0.0):
        total, met = loss(out, labels, lr)
        assert float(total) == pytest.approx((2.0 + 5.0 * lr / START_LR) * float(met["l2_force_loss"]), rel=1e-14)
    from dpcore.loss.common import prefactor
    assert prefactor(1000, 1, 1e-3, 1e-3) == 1000 and prefactor(1000, 1, 0.0, 1e-3) == 1
    lr_arr = np.asarray(LR)  # a 0-d array learning rate
    assert_matches(loss(out, labels, lr_arr), ref_ener(cfg, out, labels))


@pytest.mark.parametrize("cfg,keys", [
    ({}, ["rmse", "rmse_e", "rmse_f"]),
    ({"start_pref_v": 1, "limit_pref_v": 1}, ["rmse", "rmse_e", "rmse_f", "rmse_v"]),
    ({"loss_func": "mae", "limit_pref_v": 1}, ["mae_e", "mae_f", "mae_v", "rmse"]),
    ({"start_pref_ae": 1, "start_pref_pf": 1, "start_pref_gf": 1, "numb_generalized_coord": 2},
     ["rmse", "rmse_ae", "rmse_e", "rmse_f", "rmse_gf", "rmse_pf"]),
    ({"loss_func": "mae", "start_pref_ae": 1, "start_pref_pf": 1, "start_pref_gf": 1, "numb_generalized_coord": 2},
     ["mae_ae", "mae_e", "mae_f", "mae_pf", "rmse", "rmse_gf"]),
    ({"start_pref_e": 0, "limit_pref_e": 0}, ["rmse", "rmse_f"]),
])
def test_display_keys(cfg, keys):
    loss = make_loss(cfg)
    assert loss.display_keys == keys
    out, labels = make_batch()
    _, met = loss(out, labels, LR)
    assert sorted(k for k in met if "l2_" not in k) == keys
    assert list(met) == sorted(met)


def test_missing_labels_give_nan_metrics_and_no_loss():
    cfg = {"start_pref_v": 1.0, "limit_pref_v": 1.0, "start_pref_pf": 1.0, "limit_pref_pf": 1.0}
    out, labels = make_batch(missing=("virial", "atom_pref"))
    loss = make_loss(cfg)
    total, met = loss(out, labels, LR)
    assert math.isnan(float(met["rmse_v"])) and math.isnan(float(met["rmse_pf"]))
    assert not math.isnan(float(met["rmse_e"])) and not math.isnan(float(total))
    only_e_f, _ = make_loss({})(out, labels, LR)
    assert float(total) == pytest.approx(float(only_e_f), rel=1e-14)
    # keys absent from the batch altogether count as missing
    lab = {k: v for k, v in labels.items() if "virial" not in k}
    assert math.isnan(float(loss(out, lab, LR)[1]["rmse_v"]))
    # use_default_pf: a missing atom_pref counts as 1 whatever was filled in, find_pf = 1
    labels["atom_pref"][:] = 0.0
    dflt = make_loss({**cfg, "use_default_pf": True})
    _, met = dflt(out, labels, LR)
    assert float(met["rmse_pf"]) == pytest.approx(float(met["rmse_f"]), rel=1e-14)


def test_no_mask_in_model_output_uses_atype_or_all_atoms():
    out, labels = make_batch(masked=False)
    want = make_loss({})(out, labels, LR)
    out.pop("mask")
    assert_matches(make_loss({})(out, labels, LR), (float(want[0]), {k: float(v) for k, v in want[1].items()}))
    out2, labels2 = make_batch(masked=True)
    mask = out2.pop("mask")
    labels2["atype"] = np.where(mask > 0, 0, -1)
    assert_matches(make_loss({}, start_lr=START_LR)(out2, labels2, LR), ref_ener({}, {**out2, "mask": mask}, labels2))


def test_loss_is_float64_for_float32_outputs():
    out, labels = make_batch()
    out32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in out.items()}
    total, met = make_loss({})(out32, labels, LR)
    assert np.asarray(total).dtype == np.float64 and all(np.asarray(v).dtype == np.float64 for v in met.values())


def test_label_requirements():
    assert make_loss({}).label_requirements == ["energy", "force"]
    full = make_loss({"limit_pref_v": 1, "start_pref_ae": 1, "start_pref_pf": 1, "start_pref_gf": 1,
                      "numb_generalized_coord": 2, "enable_atom_ener_coeff": True})
    assert full.label_requirements == ["energy", "force", "virial", "atom_ener", "atom_pref", "drdq",
                                       "atom_ener_coeff"]
    assert make_loss({"start_pref_f": 0, "limit_pref_f": 0, "start_pref_pf": 1}).label_requirements == [
        "energy", "force", "atom_pref"]


def test_serialize_and_alias():
    loss = make_loss({"type": "ener_hess", "start_pref_v": 1.0}, start_lr=START_LR)
    assert isinstance(loss, EnergyLoss)
    s = loss.serialize()
    assert s["@class"] == "EnergyLoss" and s["starter_learning_rate"] == START_LR and s["start_pref_v"] == 1.0
    assert isinstance(make_loss({"type": "ener_spin"}), EnergySpinLoss)


# ---------------------------------------------------------------------------------------- array-api-strict
def test_array_api_strict_same_numbers():
    xps = pytest.importorskip("array_api_strict")
    cfgs = [
        {**BASE_PREFS, "start_pref_pf": 1.0, "start_pref_gf": 1.0, "numb_generalized_coord": 2, "relative_f": 0.3,
         "enable_atom_ener_coeff": True, "intensive_ener_virial": True},
        {**BASE_PREFS, "use_huber": True, "huber_delta": [0.3, 0.5, 0.1], "f_use_norm": True},
        {**BASE_PREFS, "loss_func": "mae", "f_use_norm": True, "start_pref_pf": 1.0, "use_default_pf": True},
    ]
    dev = xps.Device("device1")
    for cfg in cfgs:
        out, labels = make_batch(missing=("virial",))
        to = lambda t: {k: (xps.asarray(v, device=dev) if isinstance(v, np.ndarray) else v) for k, v in t.items()}  # noqa: E731
        got = make_loss(cfg, "array_api_strict", START_LR)(to(out), to(labels), LR)
        assert got[0].device == dev
        assert_matches(got, ref_ener(cfg, out, labels))
    cfg = {"start_pref_v": 1.0, "limit_pref_ae": 1.0, "loss_func": "mae"}
    out, labels = make_batch(seed=3)
    got = make_loss({"type": "ener_spin", **cfg}, "array_api_strict", START_LR)(to(out), to(labels), xps.asarray(LR))
    assert_matches(got, ref_spin(cfg, out, labels))
