"""The ``ener_spin`` loss (SPEC 8.3) on NumPy against the loop reference of tests/helpers/loss_reference.py."""

from __future__ import annotations

import pytest

from dpcore.loss import make_loss
from helpers.loss import LR, START_LR, assert_matches, make_batch
from helpers.loss_reference import ref_spin


SPIN_MATRIX = [
    pytest.param({**SPIN_PREFS, "loss_func": lf, "intensive_ener_virial": inten, "enable_atom_ener_coeff": coeff},
                 MISSING_SPIN[miss], mag, id=f"{lf}-{'int' if inten else 'ext'}-coeff{int(coeff)}-{miss}-mag{mag}")
    for SPIN_PREFS, MISSING_SPIN in [(
        {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_fr": 1000, "limit_pref_fr": 1.0,
         "start_pref_fm": 0.0, "limit_pref_fm": 10.0, "start_pref_v": 2.0, "limit_pref_v": 0.0,
         "start_pref_ae": 1.0, "limit_pref_ae": 1.0},
        {"all": (), "no_e_fm": ("energy", "force_mag"), "no_f_v_ae": ("force", "virial", "atom_ener")})]
    for lf in ("mse", "mae") for inten in (False, True) for coeff in (False, True) for miss in MISSING_SPIN
    for mag in ("10110", "00000", "11111")
]


@pytest.mark.parametrize("cfg,missing,mag", SPIN_MATRIX)
def test_ener_spin_option_matrix(cfg, missing, mag):
    loss = make_loss({"type": "ener_spin", **cfg}, "numpy", START_LR)
    out, labels = make_batch(seed=5, missing=missing, mag=[int(x) for x in mag])
    got = loss(out, labels, LR)
    assert_matches(got, ref_spin(cfg, out, labels))
    if mag == "00000" and "force_mag" not in missing:  # no magnetic atom: term and metric 0 (PT nan_to_num)
        assert float(got[1]["rmse_fm" if cfg["loss_func"] == "mse" else "mae_fm"]) == 0.0


def test_spin_defaults_and_keys():
    loss = make_loss({"type": "ener_spin"}, start_lr=START_LR)
    out, labels = make_batch(seed=2)
    assert_matches(loss(out, labels, LR), ref_spin({}, out, labels))
    assert loss.display_keys == ["rmse", "rmse_e", "rmse_fm", "rmse_fr"]
    assert loss.label_requirements == ["energy", "force", "force_mag"]
    on = make_loss({"type": "ener_spin", "start_pref_v": 1, "limit_pref_v": 1, "loss_func": "mae"})
    assert on.display_keys == ["mae_e", "mae_fm", "mae_fr", "mae_v", "rmse"]  # SPEC 12
    assert make_loss({"type": "ener_spin", "limit_pref_v": 1}).display_keys == [
        "rmse", "rmse_e", "rmse_fm", "rmse_fr", "rmse_v"]
    with pytest.warns(UserWarning, match="ignored by the ener_spin loss"):
        make_loss({"type": "ener_spin", "relative_f": 0.1, "start_pref_pf": 1.0})
    out.pop("mask_mag")
    with pytest.raises(KeyError, match="mask_mag"):
        loss(out, labels, LR)
