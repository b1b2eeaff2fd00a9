"""The ener / ener_spin losses on Paddle tensors (own process; never imports tensorflow)."""

from __future__ import annotations

import pytest

paddle = pytest.importorskip("paddle")

from dpcore.backends import get_backend  # noqa: E402
from test_loss import check_backend_gradient, check_backend_values, check_use_default_pf_refused  # noqa: E402

BE = get_backend("paddle")


def test_use_default_pf_is_refused_at_construction():
    check_use_default_pf_refused("paddle", "Paddle")


def test_loss_values_equal_numpy():
    check_backend_values(BE)


def test_loss_gradient():
    check_backend_gradient(BE)
