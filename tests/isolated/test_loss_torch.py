"""The ener / ener_spin losses on PyTorch tensors (own process)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dpcore.backends import get_backend  # noqa: E402
from dpcore.loss import make_loss  # noqa: E402
from test_loss import check_backend_gradient, check_backend_values  # noqa: E402

BE = get_backend("torch")


def test_loss_values_equal_numpy():
    check_backend_values(BE)


def test_loss_gradient():
    check_backend_gradient(BE)


def test_use_default_pf_supported():
    assert make_loss({"use_default_pf": True}, backend="torch").use_default_pf
