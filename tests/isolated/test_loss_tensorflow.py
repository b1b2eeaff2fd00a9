"""The ener / ener_spin losses on TensorFlow tensors (own process; never imports paddle)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from dpcore.backends import get_backend  # noqa: E402
from test_loss import check_backend_gradient, check_backend_values, check_use_default_pf_refused  # noqa: E402

BE = get_backend("tensorflow")


def test_use_default_pf_is_refused_at_construction():
    check_use_default_pf_refused("tensorflow", "TensorFlow")
    check_use_default_pf_refused("tf", "TensorFlow")


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "tf_function"])
def test_loss_values_equal_numpy(jit):
    check_backend_values(BE, jit=jit)


def test_loss_gradient():
    check_backend_gradient(BE)
