"""The ener / ener_spin losses on JAX arrays, eager and under jax.jit (find flags then traced), own process."""

from __future__ import annotations

import pytest

jax = pytest.importorskip("jax")

from dpcore.backends import get_backend  # noqa: E402
from dpcore.loss import make_loss  # noqa: E402
from test_loss import check_backend_gradient, check_backend_values  # noqa: E402

BE = get_backend("jax")


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_loss_values_equal_numpy(jit):
    check_backend_values(BE, jit=jit)


def test_loss_gradient():
    check_backend_gradient(BE)


def test_use_default_pf_supported():
    assert make_loss({"use_default_pf": True}, backend="jax").use_default_pf
