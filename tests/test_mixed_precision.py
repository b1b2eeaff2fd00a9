"""training.mixed_precision (dpcore/train/mixed_precision.py, dpcore/network.py): the section's checks, the
training model config, and bfloat16 layers in NumPy-free form (the frameworks are tested in
tests/isolated/test_mixed_precision.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.backends import info
from dpcore.train.mixed_precision import check, training_model_config
from helpers import make_config


def test_absent_section_changes_nothing():
    cfg = make_config()
    assert check(None) is None
    assert training_model_config(cfg, None, info("torch"), "cpu") is cfg


def test_canonical_names_and_default_output():
    assert check({"compute_prec": "bfloat16"}) == {"output_prec": "float32", "compute_prec": "bfloat16"}
    assert check({"compute_prec": "bfloat16", "output_prec": "single"}) == {"output_prec": "float32",
                                                                            "compute_prec": "bfloat16"}


@pytest.mark.parametrize("section, error, match", [
    ({"compute_prec": "float16"}, NotImplementedError, "compute_prec 'float16' needs dynamic loss scaling"),
    ({"compute_prec": "float32"}, ValueError, "compute_prec must be 'bfloat16'"),
    ({"compute_prec": "bf16"}, ValueError, "mixed_precision/compute_prec: unknown precision 'bf16'"),
    ({"compute_prec": "bfloat16", "output_prec": "float64"}, ValueError, "output_prec must be float32"),
    ({"output_prec": "float32"}, ValueError, "must be a dict with compute_prec"),
    ("bfloat16", ValueError, "must be a dict with compute_prec"),
])
def test_bad_sections_are_named(section, error, match):
    with pytest.raises(error, match=match):
        check(section)


def test_training_config_overrides_precision_and_leaves_the_input_alone():
    cfg = make_config(descriptor={"precision": "float64"}, fitting={"precision": "float64"})
    out = training_model_config(cfg, {"compute_prec": "bfloat16"}, info("torch"), "cpu")
    for key in ("descriptor", "fitting_net"):
        assert out[key]["precision"] == "float32"
        assert out[key]["mixed_precision"] == {"output_prec": "float32", "compute_prec": "bfloat16"}
        assert cfg[key]["precision"] == "float64" and "mixed_precision" not in cfg[key]


def test_backend_without_bfloat16_on_the_device_is_refused():
    with pytest.raises(NotImplementedError, match="backend 'paddle' has no bfloat16 matrix product on 'cpu'"):
        training_model_config(make_config(), {"compute_prec": "bfloat16"}, info("paddle"), "cpu")
    assert training_model_config(make_config(), {"compute_prec": "bfloat16"}, info("paddle"), "gpu")


def test_numpy_has_no_bfloat16_and_says_so():
    from dpcore.network import layer_forward, get_activation

    layer = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(NotImplementedError, match="precision bfloat16 is not available"):
        layer_forward(layer, np.ones((4, 2), np.float32), get_activation("tanh"), resnet=False, compute="bfloat16")
