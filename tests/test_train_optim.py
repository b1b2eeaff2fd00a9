"""Adam (NumPy) against the textbook formula, its dtypes and array steps, and global-norm gradient clipping."""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.train.optim import adam_init, adam_update, clip_by_global_norm
from helpers import TOL
from helpers.train import flat

@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_matches_textbook_formula(wd):
    rng = np.random.default_rng(0)
    params = {"a": {"w": rng.normal(size=(3, 4))}, "b": rng.normal(size=5)}
    state = adam_init(params)
    ref = {k: (v.copy(), np.zeros_like(v), np.zeros_like(v)) for k, v in flat(params).items()}
    for t in range(1, 6):
        grads = {"a": {"w": rng.normal(size=(3, 4))}, "b": rng.normal(size=5)}
        lr = 1e-2 * 0.5 ** t
        params, state = adam_update(params, grads, state, lr, 0.9, 0.999, 1e-8, wd)
        for k, gk in flat(grads).items():
            p, m, v = ref[k]
            # torch divides by sqrt(1-b2^t) before adding eps: p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
            m = 0.9 * m + 0.1 * (gk + wd * p)
            v = 0.999 * v + 0.001 * (gk + wd * p) ** 2
            p = p - lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
            ref[k] = (p, m, v)
    assert state["step"] == 5
    for k, v in flat(params).items():
        np.testing.assert_allclose(v, ref[k][0], rtol=TOL["float64"], atol=0)
        np.testing.assert_allclose(flat(state["m"])[k], ref[k][1], rtol=TOL["float64"])


def test_adam_keeps_dtype_and_accepts_array_step():
    rng = np.random.default_rng(1)
    p = {"w": rng.normal(size=(4,)).astype(np.float32)}
    g = {"w": rng.normal(size=(4,)).astype(np.float32)}
    s = adam_init(p)
    p1, s1 = adam_update(p, g, s, 1e-3)
    assert p1["w"].dtype == np.float32 and s1["m"]["w"].dtype == np.float32
    # a 0-d array step / lr (what a jitted step receives) gives the same numbers
    p2, s2 = adam_update(p, g, {**s, "step": np.asarray(0)}, np.asarray(1e-3))
    assert p2["w"].dtype == np.float32
    np.testing.assert_allclose(p2["w"], p1["w"], rtol=TOL["float32"])
    assert int(s2["step"]) == 1


def test_clip_by_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": {"c": np.array([4.0])}}
    out = clip_by_global_norm(g, 1.0)
    norm = np.sqrt(np.sum(out["a"] ** 2) + np.sum(out["b"]["c"] ** 2))
    np.testing.assert_allclose(norm, 1.0, rtol=1e-6)  # clipping scales by max_norm / (|g| + 1e-6)
    same = clip_by_global_norm(g, 10.0)
    np.testing.assert_array_equal(same["a"], g["a"])
