"""Loss configuration: construction errors, the use_default_pf capability of each backend (read from the
registry, no framework imported) and the normalised loss sections of dpcore.config."""

from __future__ import annotations

import pytest

from dpcore.loss import EnergyLoss, EnergySpinLoss, make_loss
from helpers.loss import LR, make_batch


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cfg,exc,match", [
    ({"loss_func": "l1"}, ValueError, r"loss/loss_func: expected 'mse' or 'mae', got 'l1'"),
    ({"use_huber": True, "huber_delta": [0.1, 0.2]}, ValueError, r"loss/huber_delta: a list must have 3 values"),
    ({"start_pref_gf": 1.0}, RuntimeError, r"dimension of generalized coordinates should be larger than 0"),
    ({"limit_pref_gf": 1.0, "numb_generalized_coord": 0}, RuntimeError, r"generalized coordinates"),
    ({"use_huber": True, "start_pref_pf": 1.0}, RuntimeError, r"Huber loss is not implemented"),
    ({"use_huber": True, "relative_f": 0.1}, RuntimeError, r"Huber loss is not implemented"),
    ({"use_huber": True, "limit_pref_gf": 1.0, "numb_generalized_coord": 1}, RuntimeError, r"Huber loss"),
    ({"f_use_norm": True}, RuntimeError, r"f_use_norm can only be True when use_huber or loss_func='mae'"),
    ({"start_pref_h": 1.0}, NotImplementedError, r"Hessian"),
    ({"type": "dos"}, ValueError, r"loss/type: expected one of"),
    ({"start_pref_x": 1.0}, ValueError, r"unknown keys \['start_pref_x'\]"),
    ({"start_pref_e": -1.0}, ValueError, r"loss/start_pref_e: must be a number >= 0"),
])
def test_construction_errors(cfg, exc, match):
    with pytest.raises(exc, match=match):
        make_loss(cfg)


def test_drdq_width_error():
    loss = make_loss({"start_pref_gf": 1.0, "numb_generalized_coord": 3})
    out, labels = make_batch(ngc=2)
    with pytest.raises(RuntimeError, match=r"label drdq has 30 values per frame; expected .* 5 \* 3 \* 3"):
        loss(out, labels, LR)


@pytest.mark.parametrize("name,label,supported", [
    ("tensorflow", "TensorFlow", False), ("paddle", "Paddle", False), ("torch", "PyTorch", True)])
def test_use_default_pf_capability(name, label, supported):
    """The capability is read from the backend registry: no framework is imported to decide."""
    import sys

    before = {m for m in ("torch", "tensorflow", "paddle") if m in sys.modules}
    cfg = {"use_default_pf": True, "start_pref_pf": 1.0}
    if supported:
        assert make_loss(cfg, backend=name).use_default_pf
    else:
        with pytest.raises(NotImplementedError, match=rf"^{label} backend does not support use_default_pf=True\.$"):
            make_loss(cfg, backend=name)
        make_loss({"start_pref_pf": 1.0}, backend=name)  # without the option: fine
    assert {m for m in ("torch", "tensorflow", "paddle") if m in sys.modules} == before


def test_numpy_and_strict_backends_accept_use_default_pf():
    for be in ("numpy", "array_api_strict"):
        assert make_loss({"use_default_pf": True}, backend=be).use_default_pf


def test_normalised_config_sections():
    """make_loss takes the normalised loss section of dpcore.config as is (every key known)."""
    from dpcore.config import normalize_config

    base = {"model": {"type_map": ["O"], "descriptor": {"type": "se_e2_a", "sel": [4], "rcut": 3.0, "rcut_smth": 0.5},
                      "fitting_net": {}},
            "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-5},
            "training": {"training_data": {"systems": "x"}, "numb_steps": 3}}
    for loss in ({}, {"type": "ener_hess", "relative_f": 0.2, "limit_pref_v": 1.0}, {"loss_func": "mae"}):
        cfg = normalize_config({**base, "loss": loss})
        made = make_loss(cfg["loss"], "numpy", cfg["learning_rate"]["start_lr"])
        assert isinstance(made, EnergyLoss) and made.start_lr == 1e-3
    spin = {**base, "model": {**base["model"], "spin": {"use_spin": [True], "virtual_scale": [0.3]}},
            "loss": {"type": "ener_spin"}}
    cfg = normalize_config(spin)  # a spin model section is accepted; its loss section builds the spin loss
    assert isinstance(make_loss(cfg["loss"]), EnergySpinLoss)
