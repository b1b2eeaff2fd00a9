"""The ``ener`` / ``ener_spin`` losses on framework arrays equal NumPy's (eager, and under the backend's jit where
it has one: find flags are then traced), their gradients equal central differences, and use_default_pf is
supported or refused at construction.  One backend per process (``BACKENDS``; tests/helpers/isolation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.backends import get_backend
from dpcore.loss import make_loss
from helpers import LOSS_GRAD_FD_TOL, TOL
from helpers.isolation import backend_under_test, import_framework
from helpers.loss import BASE_PREFS, LR, START_LR, assert_matches, make_batch

BACKENDS = ("jax", "paddle", "tensorflow", "torch")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)
BE = get_backend(BACKEND)

JIT = {"jax": {"eager": False, "jit": True}, "tensorflow": {"eager": False, "tf_function": True}}
# use_default_pf: True if supported, else the framework's name in the refusal (under each backend alias)
USE_DEFAULT_PF = {"jax": {"jax": True}, "torch": {"torch": True}, "paddle": {"paddle": "Paddle"},
                  "tensorflow": {"tensorflow": "TensorFlow", "tf": "TensorFlow"}}
CASES = {  # name: (loss section, missing labels); no use_default_pf (refused on TF / Paddle)
    "mse_all_terms": ({**BASE_PREFS, "start_pref_pf": 2.0, "start_pref_gf": 0.5, "numb_generalized_coord": 2,
                       "relative_f": 0.3, "enable_atom_ener_coeff": True, "intensive_ener_virial": True}, ()),
    "mse_missing": ({**BASE_PREFS, "start_pref_pf": 2.0}, ("virial", "atom_pref")),
    "huber_norm": ({**BASE_PREFS, "use_huber": True, "huber_delta": [0.3, 0.5, 0.1], "f_use_norm": True}, ()),
    "mae_norm_pf": ({**BASE_PREFS, "loss_func": "mae", "f_use_norm": True, "limit_pref_pf": 1.0}, ("energy",)),
    "spin_mse": ({"type": "ener_spin", "limit_pref_v": 1.0, "start_pref_ae": 1.0, "intensive_ener_virial": True},
                 ("atom_ener",)),
    "spin_mae": ({"type": "ener_spin", "limit_pref_v": 1.0, "loss_func": "mae", "enable_atom_ener_coeff": True}, ()),
}


def _to_numpy_result(res):
    loss, met = res
    return float(BE.to_numpy(loss)), {k: float(BE.to_numpy(v)) for k, v in met.items()}


@pytest.mark.parametrize("jit", list(JIT.get(BACKEND, {"eager": False}).values()),
                         ids=list(JIT.get(BACKEND, {"eager": False})))
def test_loss_values_equal_numpy(jit):
    """Every case on backend arrays (lr a 0-d float64 array) equals NumPy's to the float64 tolerance."""
    for name, (cfg, missing) in CASES.items():
        out, labels = make_batch(seed=11, missing=missing)
        want = make_loss(cfg, "numpy", START_LR)(out, labels, LR)
        loss = make_loss(cfg, BE.name, START_LR)
        fn = BE.jit(lambda o, lab, lr: loss(o, lab, lr)) if jit else loss
        got = fn(BE.tree_asarray(out), BE.tree_asarray(labels), BE.asarray(np.asarray(LR)))
        assert BE.to_numpy(got[0]).dtype == np.float64, name
        try:
            assert_matches(_to_numpy_result(got), _to_numpy_result(want), TOL["float64"])
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_loss_gradient():
    """d loss / d (force, energy) on the backend matches central differences of the NumPy loss; the gradient is
    finite at a zero residual."""
    cfg, missing = CASES["mse_all_terms"]
    out, labels = make_batch(seed=12, missing=missing)
    np_loss = make_loss(cfg, "numpy", START_LR)
    loss = make_loss(cfg, BE.name, START_LR)
    lab_be, out_be = BE.tree_asarray(labels), BE.tree_asarray(out)

    def f(force, energy):
        return loss({**out_be, "force": force, "energy": energy}, lab_be, LR)[0]

    _, (g_f, g_e) = BE.value_and_grad(f, argnums=(0, 1))(BE.asarray(out["force"]), BE.asarray(out["energy"]))
    g_f, g_e = BE.to_numpy(g_f), BE.to_numpy(g_e)
    h = 1e-6
    for key, g in (("force", g_f), ("energy", g_e)):
        fd = np.zeros_like(out[key])
        for idx in np.ndindex(out[key].shape):
            vals = []
            for s in (h, -h):
                x = out[key].copy()
                x[idx] += s
                vals.append(float(np_loss({**out, key: x}, labels, LR)[0]))
            fd[idx] = (vals[0] - vals[1]) / (2 * h)
        assert np.max(np.abs(g - fd)) <= LOSS_GRAD_FD_TOL * np.max(np.abs(fd)), key
    # f_use_norm at an exactly zero force residual: the gradient is finite (no sqrt(0) NaN)
    cfg, _ = CASES["huber_norm"]
    labels["force"][0, 1] = out["force"][0, 1]
    loss = make_loss(cfg, BE.name, START_LR)
    lab_be = BE.tree_asarray(labels)
    _, (g,) = BE.value_and_grad(lambda force: loss({**out_be, "force": force}, lab_be, LR)[0])(BE.asarray(out["force"]))
    assert np.all(np.isfinite(BE.to_numpy(g)))


def test_use_default_pf_supported_or_refused_at_construction():
    for name, support in USE_DEFAULT_PF[BACKEND].items():
        if support is True:
            assert make_loss({"use_default_pf": True}, backend=name).use_default_pf
            continue
        with pytest.raises(NotImplementedError, match=rf"^{support} backend does not support use_default_pf=True\.$"):
            make_loss({"use_default_pf": True, "start_pref_pf": 1.0}, backend=name)
        assert not make_loss({"start_pref_pf": 1.0}, backend=name).use_default_pf
