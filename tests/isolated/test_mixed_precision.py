"""training.mixed_precision on each framework (one backend per process): bfloat16 layers change the numbers at
bfloat16's level and no more, training learns like float32, the model written is a float32 model, a restart is
exact."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from dpcore.train import lcurve, train
from dpcore import model_from_config
from helpers import random_system
from helpers.isolation import backend_under_test, import_framework
from helpers.train import make_case, max_rel_diff

BACKENDS = ("jax", "tensorflow", "torch")  # Paddle has no bfloat16 product on the CPU: tests/test_mixed_precision.py
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)
BF16_EPS = 2.0 ** -8  # bfloat16's unit round-off (8 significand bits)


def _float32_case(tmp_path, numb_steps=8):
    cfg = make_case(tmp_path / "data", numb_steps=numb_steps)
    for key in ("descriptor", "fitting_net"):
        cfg["model"][key]["precision"] = "float32"
    return cfg


DESCRIPTORS = {  # float32 models; mixed precision in one section at a time shows each section's layers switch
    "se_e2_a": {"type": "se_e2_a", "sel": [24, 24], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4},
    "dpa1_concat": {"type": "dpa1", "sel": 40, "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4,
                    "attn": 6, "attn_layer": 1, "tebd_dim": 3, "smooth_type_embedding": True, "set_davg_zero": True},
    "se_atten_v2": {"type": "se_atten_v2", "sel": 40, "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8],
                    "axis_neuron": 4, "attn": 6, "attn_layer": 1, "tebd_dim": 3},
}


@pytest.mark.parametrize("section", ["descriptor", "fitting_net"])
@pytest.mark.parametrize("descriptor", list(DESCRIPTORS))
def test_bfloat16_layers_round_at_bfloat16_level(descriptor, section):
    model = model_from_config({"type_map": ["O", "H"], "descriptor": {**DESCRIPTORS[descriptor], "precision": "float32", "seed": 1},
                               "fitting_net": {"neuron": [8, 8], "precision": "float32", "seed": 2}})
    coord, atype, box = random_system(natoms=12, nframes=1, seed=5)
    ref = model.evaluate(coord, atype, box, backend=BACKEND, force_mode="autodiff")
    mixed = copy.deepcopy(model)
    mixed.config[section]["mixed_precision"] = {"output_prec": "float32", "compute_prec": "bfloat16"}
    out = mixed.evaluate(coord, atype, box, backend=BACKEND, force_mode="autodiff")
    de = np.abs(out["atom_energy"] - ref["atom_energy"]).max() / np.abs(ref["atom_energy"]).max()
    df = np.abs(out["force"] - ref["force"]).max() / np.abs(ref["force"]).max()
    assert 1e-6 < de < 50 * BF16_EPS and 1e-6 < df < 50 * BF16_EPS, (de, df)  # rounded, and only as bfloat16 rounds


def test_training_learns_like_float32_and_writes_a_float32_model(tmp_path):
    curves, models = {}, {}
    case = _float32_case(tmp_path)
    for name, mixed in (("f32", None), ("bf16", {"compute_prec": "bfloat16", "output_prec": "float32"})):
        cfg = copy.deepcopy(case)
        if mixed is not None:
            cfg["model"]["descriptor"]["precision"] = "float64"  # overridden to output_prec by mixed precision
            cfg["training"]["mixed_precision"] = mixed
        (tmp_path / name).mkdir()
        models[name] = train(cfg, BACKEND, workdir=tmp_path / name)["model"]
        curves[name] = lcurve.read_lcurve(tmp_path / name / "lcurve.out")[1][:, 1]  # validation rmse
    assert curves["bf16"][-1] < 0.7 * curves["bf16"][0]
    np.testing.assert_allclose(curves["bf16"], curves["f32"], rtol=0.1)
    model = models["bf16"]
    for key in ("descriptor", "fitting_net"):
        assert model.config[key]["precision"] == "float32" and "mixed_precision" not in model.config[key]
    assert model.params["fitting"]["nets"]["0"]["0"]["w"].dtype == np.float32
    assert 0 < max_rel_diff(model.params, models["f32"].params) < 0.1


def test_restart_is_exact(tmp_path):
    cfg = _float32_case(tmp_path, numb_steps=8)  # checkpoints at steps 4 and 8
    cfg["training"]["mixed_precision"] = {"compute_prec": "bfloat16"}
    (tmp_path / "run").mkdir()
    train(copy.deepcopy(cfg), BACKEND, workdir=tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "cont")
    train(copy.deepcopy(cfg), BACKEND, workdir=tmp_path / "cont", restart=tmp_path / "cont" / "model.ckpt-4.npz")
    assert (tmp_path / "cont" / "lcurve.out").read_text() == (tmp_path / "run" / "lcurve.out").read_text()
