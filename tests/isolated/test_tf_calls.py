"""TensorFlow's fast calls (backends/tf_calls.py): after a signature's first calls, its concrete function with
the flat tensors; the same outputs as the tf.function's, a new signature traced once, kwargs and NumPy leaves
through the tf.function, and model forwards (plain XLA and compressed) equal before and after the switch.

One process, TensorFlow only (tests/helpers/isolation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.backends import get_backend
from helpers import make_model, random_system
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("tensorflow",)
BACKEND = backend_under_test(BACKENDS)
tf = import_framework(BACKEND)

from dpcore.backends import tf_calls  # noqa: E402

BE = get_backend("tensorflow")


def _tree(scale=1.0, n=3):
    return ({"w": [tf.constant(np.arange(n, dtype=np.float64) * scale), tf.constant(2.0, tf.float64)],
             "b": tf.constant(np.ones((2, n)))}, {"x": tf.constant(np.linspace(0, 1, n)), "flag": None})


def _f(params, inputs, mode="sum"):
    y = params["w"][0] * inputs["x"] * params["w"][1] + params["b"]
    return {"out": tf.reduce_sum(y) if mode == "sum" else y, "first": y[0, 0]}


def test_after_the_warm_calls_the_concrete_function_runs_with_the_same_outputs():
    calls = BE.jit(_f)
    assert isinstance(calls, tf_calls.ConcreteCalls)
    through = []
    wrapped = calls.__wrapped__
    calls.__wrapped__ = lambda *args, **kwargs: through.append(1) or wrapped(*args, **kwargs)
    for k in range(tf_calls.WARM_CALLS + 3):
        args = _tree(scale=1.0 + k)
        out, ref = calls(*args), _f(*args)
        for name in ("out", "first"):
            np.testing.assert_array_equal(out[name].numpy(), ref[name].numpy())
    assert len(through) == tf_calls.WARM_CALLS  # then the concrete function, with the new values
    assert calls.function.experimental_get_tracing_count() == 1


def test_new_signatures_kwargs_and_numpy_leaves_go_through_the_tf_function():
    calls = BE.jit(_f)
    for n in (3, 3, 3, 3, 5, 5, 5, 5):
        out = calls(*_tree(n=n))
        np.testing.assert_allclose(out["out"].numpy(), _f(*_tree(n=n))["out"].numpy())
    assert calls.function.experimental_get_tracing_count() == 2  # one trace per shape
    params, inputs = _tree()
    out = calls(params, inputs, mode="rows")  # a keyword: TensorFlow's own call (and trace)
    assert out["out"].shape == (2, 3)
    inputs = {**inputs, "x": np.linspace(0, 1, 3)}  # an unhashable leaf: no key, TensorFlow's call
    np.testing.assert_allclose(calls(params, inputs)["out"].numpy(), _f(params, inputs)["out"].numpy())


@pytest.mark.parametrize("compress", [False, True], ids=["plain-xla", "compressed"])
def test_model_forwards_agree_before_and_after_the_switch(compress):
    model = make_model(seed=3)
    if compress:
        from dpcore.descriptor.tabulate import compress_model

        model = compress_model(model, 0.8)
    coord, atype, box = random_system(natoms=14, nframes=1, box_len=6.0, seed=6)
    ref = model.evaluate(coord, atype, box, backend="numpy", atomic=True)
    for _ in range(tf_calls.WARM_CALLS + 2):
        out = model.evaluate(coord, atype, box, backend=BACKEND, atomic=True)
        for name in ("energy", "force", "virial", "atom_virial"):
            np.testing.assert_allclose(out[name], ref[name], rtol=1e-10, atol=1e-10, err_msg=name)
