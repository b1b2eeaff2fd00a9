"""The TensorFlow adapter (namespace registration, conversion, devices, value_and_grad), the energy model
against the NumPy reference (both force modes, float32 and float64, under tf.function), and the tf.Module view
(variables mirror the parameter dict, calls, write-back, a Keras Adam step).

One process, TensorFlow only (``BACKENDS``; tests/helpers/isolation.py); the namespace shim:
tests/isolated/test_tensorflow_shim.py.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

import dpcore.xp
from dpcore.backends import get_backend
from dpcore.infer.inputs import prepare, unpermute
from helpers import TOL, make_model, random_array, random_system, rel_err
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("tensorflow",)
BACKEND = backend_under_test(BACKENDS)
tf = import_framework(BACKEND)

BE = get_backend("tensorflow")
NS = BE.namespace()
RNG = np.random.default_rng(1234)
DTYPES = ("bool", "int32", "int64", "float32", "float64")
FLOATS = ("float32", "float64")


# ---------------------------------------------------------------------------------------------------------------
# adapter contract
# ---------------------------------------------------------------------------------------------------------------
def test_namespace_registered_and_backend_metadata():
    assert dpcore.xp.namespace(tf.constant([1.0])) is NS
    assert dpcore.xp.namespace(tf.Variable([1.0])) is NS
    assert BE.capabilities["use_default_pf"] is False and BE.capabilities["autodiff"] and BE.capabilities["jit"]
    assert BE.settings["tensor_float_32"] is False and BE.settings["numpy_behavior"] is False
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    assert not hasattr(tf.constant([1.0]), "reshape")  # TF's global numpy behaviour was not enabled


@pytest.mark.parametrize("dtype", DTYPES)
def test_asarray_keeps_dtype_and_roundtrips(dtype):
    a = random_array(RNG, dtype, (3, 2))
    t = BE.asarray(a)
    assert t.dtype.name == dtype and BE.asarray(t) is t
    np.testing.assert_array_equal(BE.to_numpy(t), a)
    assert BE.to_numpy(t).dtype == a.dtype
    v = tf.Variable(a) if dtype != "bool" else None
    if v is not None:
        assert BE.asarray(v) is v
    cpu = get_backend("tensorflow", "cpu")
    assert cpu.tf_device == "/CPU:0" and "CPU" in cpu.asarray(a).device
    assert BE.asarray(np.float64(2.0)).dtype == tf.float64


def test_device_names():
    from dpcore.backends.tensorflow import tf_device_name

    assert [tf_device_name(d) for d in (None, "cpu", "gpu:1", "cuda:0", "/GPU:0")] == [None, "/CPU:0", "/GPU:1",
                                                                                       "/GPU:0", "/GPU:0"]
    with pytest.raises(ValueError, match="unknown device"):
        tf_device_name("tpu0")


def test_value_and_grad_pytrees_aux_and_argnums():
    x = {"a": np.array([1.0, 2.0]), "b": [np.array([[3.0]], dtype="float32"), np.array([1, 2]), None]}
    y = np.array(0.5)

    def f(p, s):
        v = NS.sum(p["a"] ** 2) * s + NS.astype(NS.sum(p["b"][0]), NS.float64) ** 3
        v = v + NS.sum(NS.take(p["a"], p["b"][1] - 1, axis=0))  # gather: IndexedSlices gradient
        return v, {"twice": 2 * v}

    (val, aux), (gp, gs) = BE.value_and_grad(f, (0, 1), has_aux=True)(x, y)
    assert float(aux["twice"]) == pytest.approx(2 * float(val))
    assert float(val) == pytest.approx(5 * 0.5 + 27 + 3)
    np.testing.assert_allclose(gp["a"].numpy(), [2 * 0.5 + 1, 4 * 0.5 + 1])
    assert isinstance(gp["a"], tf.Tensor)
    np.testing.assert_allclose(gp["b"][0].numpy(), [[27.0]])
    assert gp["b"][0].dtype == tf.float32 and gp["b"][1] is None and gp["b"][2] is None
    assert float(gs) == pytest.approx(5.0)
    _, g_only = BE.value_and_grad(lambda p, s: f(p, s)[0], 1)(x, y)  # int argnums: a single gradient
    assert float(g_only) == pytest.approx(5.0)
    _, (gz,) = BE.value_and_grad(lambda p, s: NS.sum(s * 2.0), (0,))(x, y)  # unconnected: zeros
    assert gz["a"].numpy().tolist() == [0.0, 0.0]


def test_value_and_grad_second_derivative():
    x = tf.constant(np.array([0.5, -1.0, 2.0]))
    inner = BE.value_and_grad(lambda v: NS.sum(v * v * v), (0,), create_graph=True)
    _, (h,) = BE.value_and_grad(lambda v: NS.sum(inner(v)[1][0]), (0,))(x)
    np.testing.assert_allclose(h.numpy(), 6 * x.numpy())
    jitted = BE.jit(lambda v: BE.value_and_grad(lambda w: NS.sum(inner(w)[1][0]), (0,))(v)[1][0])
    np.testing.assert_allclose(jitted(x).numpy(), 6 * x.numpy())


# ---------------------------------------------------------------------------------------------------------------
# energy model vs NumPy
# ---------------------------------------------------------------------------------------------------------------
SYSTEMS = {
    "pbc_triclinic": ({}, True),
    "non_pbc": ({}, False),
    "one_side": ({"descriptor": {"type_one_side": True}}, True),
    "exclude_types": ({"descriptor": {"exclude_types": [[0, 1]]}, "pair_exclude_types": [[1, 1]],
                       "atom_exclude_types": [1]}, True),
    "fparam_aparam": ({"fitting": {"numb_fparam": 2, "numb_aparam": 3}}, True),
    "padding_mixed_frames": ({}, True),  # per-frame atom types with a padding atom: no type blocks
}


@lru_cache(maxsize=None)
def system(name, dtype):
    kw, pbc = SYSTEMS[name]
    kw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kw.items()}
    if dtype == "float32":
        kw.setdefault("descriptor", {})["precision"] = "float32"
        kw.setdefault("fitting", {})["precision"] = "float32"
    model = make_model(**kw)
    coord, atype, box = random_system(natoms=8, nframes=2, seed=3)
    extra = {"box": box if pbc else None}
    if name == "fparam_aparam":
        extra.update(fparam=RNG.normal(size=(2, 2)), aparam=RNG.normal(size=(2, 8, 3)))
    if name == "padding_mixed_frames":
        atype = np.stack([atype, atype[::-1]])
        atype[1, 2] = -1
    ref = model.evaluate(coord, atype, atomic=True, **extra)
    return model, coord, atype, extra, ref


def tf_outputs(model, coord, atype, extra, force_mode, jit=False):
    inputs, blocks, perm = prepare(model, coord, atype, **extra)

    def run(params, inp):
        return BE.model_forward(model.config, params, inp, blocks, atomic_virial=True, force_mode=force_mode)

    out = (BE.jit(run) if jit else run)(model.backend_params(BE), BE.tree_asarray(inputs))
    return unpermute({k: BE.to_numpy(v) for k, v in out.items()}, perm)


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", SYSTEMS)
def test_model_matches_numpy(name, dtype, force_mode):
    model, coord, atype, extra, ref = system(name, dtype)
    out = tf_outputs(model, coord, atype, extra, force_mode)
    assert set(out) == set(ref)
    for k in ref:
        assert out[k].dtype == ref[k].dtype and out[k].shape == ref[k].shape, k
        assert rel_err(out[k], ref[k]) <= TOL[dtype], (k, rel_err(out[k], ref[k]))
    assert np.all(np.isfinite(out["force"]))


@pytest.mark.parametrize("dtype", FLOATS)
def test_evaluate_with_tensorflow_backend(dtype):
    model, coord, atype, extra, ref = system("pbc_triclinic", dtype)
    out = model.evaluate(coord, atype, backend="tf", atomic=True, **extra)
    for k in ref:
        assert rel_err(out[k], ref[k]) <= TOL[dtype], k


def test_jit_traces_plain_python_without_autograph():
    """``BE.jit`` turns AutoGraph off (dpcore's code has no Python control flow on tensors, and the rewriting was
    2/3 of the first training step); ``jit_compile`` and other options still pass through.  Read from the
    tf.function object: a test module's functions are not converted by AutoGraph under pytest anyway, so the
    behaviour itself cannot be observed from here."""
    f = BE.jit(lambda x: tf.tanh(x) * 2.0, jit_compile=True)
    assert f.function._autograph is False and f.function._jit_compile is True  # under backends/tf_calls.py
    assert BE.jit(lambda x: x, autograph=True).function._autograph is True  # an explicit request is kept
    assert float(f(tf.constant(0.5, dtype=tf.float64))) == pytest.approx(2.0 * np.tanh(0.5), rel=1e-12)


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_model_under_tf_function(force_mode):
    model, coord, atype, extra, ref = system("fparam_aparam", "float64")
    out = tf_outputs(model, coord, atype, extra, force_mode, jit=True)
    for k in ref:
        assert rel_err(out[k], ref[k]) <= TOL["float64"], k


# ---------------------------------------------------------------------------------------------------------------
# tf.Module view
# ---------------------------------------------------------------------------------------------------------------
def _flat_keys(tree, prefix=""):
    if isinstance(tree, dict):
        return [k for key, v in tree.items() for k in _flat_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]]


def test_view_variables_mirror_params():
    from dpcore.backends.tf_module import TFEnergyModel

    model = system("fparam_aparam", "float64")[0]
    view = TFEnergyModel(model)
    names = {v.name.split(":")[0]: v for v in view.variables}
    assert set(names) == set(_flat_keys(model.params))
    trainable = {v.name.split(":")[0] for v in view.trainable_variables}
    assert trainable == {k for k in names if k.split(".")[-1] in ("w", "b", "idt")}
    for k in ("descriptor.davg", "descriptor.dstd", "out_bias", "fitting.bias_atom_e", "fitting.fparam_avg"):
        assert k in names and k not in trainable
    np.testing.assert_array_equal(names["descriptor.embedding.0.0.w"].numpy(), model.params["descriptor"]["embedding"]["0"]["0"]["w"])
    frozen = make_model(descriptor={"trainable": False}, fitting={"trainable": [True, False, True]})
    trainable = {v.name.split(":")[0] for v in TFEnergyModel(frozen).trainable_variables}
    assert trainable == {f"fitting.nets.{t}.{i}.{p}" for t in "01" for i in "02" for p in "wb"}


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("name", ["pbc_triclinic", "non_pbc", "fparam_aparam", "padding_mixed_frames"])
def test_view_call_matches_numpy(name, force_mode):
    from dpcore.backends.tf_module import TFEnergyModel

    model, coord, atype, extra, ref = system(name, "float64")
    view = TFEnergyModel(model, force_mode=force_mode, atomic_virial=True)
    out = view(coord, atype, **extra)
    for k in ("energy", "force", "virial", "atom_energy", "atom_virial"):
        assert isinstance(out[k], tf.Tensor)
        assert rel_err(out[k].numpy(), ref[k]) <= TOL["float64"], k
    if name in ("pbc_triclinic", "padding_mixed_frames"):
        compiled = tf.function(view.__call__)
        args = [tf.constant(coord), tf.constant(atype), tf.constant(extra["box"])]
        for _ in range(2):  # second call reuses the trace
            out = compiled(*args)
        for k in ("energy", "force", "virial", "atom_virial"):
            assert rel_err(out[k].numpy(), ref[k]) <= TOL["float64"], k


def test_view_write_back():
    from dpcore.backends.tf_module import TFEnergyModel

    model = make_model()
    view = TFEnergyModel(model)
    w = view.params["fitting"]["nets"]["1"]["0"]["w"]
    w.assign_add(tf.ones_like(w) * 0.25)
    before = model.params["fitting"]["nets"]["1"]["0"]["w"].copy()
    assert view.write_back() is model
    np.testing.assert_array_equal(model.params["fitting"]["nets"]["1"]["0"]["w"], before + 0.25)
    assert model.params["descriptor"]["davg"].dtype == view.numpy_params()["descriptor"]["davg"].dtype


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_view_adam_step_decreases_energy_force_loss(force_mode):
    from dpcore.backends.tf_module import TFEnergyModel
    from dpcore.model.energy_model import EnergyModel

    model = make_model(seed=5)
    coord, atype, box = random_system(natoms=8, nframes=2, seed=7)
    noisy = BE.tree_to_numpy(BE.tree_asarray(model.params))
    for t in noisy["fitting"]["nets"].values():
        for layer in t.values():
            layer["w"] = layer["w"] + np.random.default_rng(0).normal(0, 0.1, layer["w"].shape)
    labels = EnergyModel(model.config, noisy).evaluate(coord, atype, box)
    view = TFEnergyModel(model, force_mode=force_mode)
    opt = tf.keras.optimizers.Adam(learning_rate=1e-3)
    e_label, f_label = tf.constant(labels["energy"]), tf.constant(labels["force"])

    def loss_fn():
        out = view(coord, atype, box)
        return (tf.reduce_mean((out["energy"] - e_label) ** 2) / 64.0
                + tf.reduce_mean((out["force"] - f_label) ** 2))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, view.trainable_variables)
        assert all(g is not None for g in grads)
        opt.apply_gradients(zip(grads, view.trainable_variables))
        return loss

    loss0 = float(step())
    loss1 = float(loss_fn())
    assert np.isfinite(loss0) and loss1 < loss0
    view.write_back()
    after = model.evaluate(coord, atype, box)
    np.testing.assert_allclose(after["energy"], view(coord, atype, box)["energy"].numpy(), rtol=TOL["float64"])




def test_evaluate_runs_an_xla_function_traced_once_per_shape():
    """TensorFlow model forwards run as XLA functions (registry ``jit_forward``, ``forward_jit``,
    :meth:`Backend.compiled`): traced for the first input shape, reused for the same shapes, traced once more for
    another number of frames."""
    model, coord, atype, extra, ref = system("pbc_triclinic", "float64")
    before = set(getattr(BE, "_compiled_forwards", {}))
    for shift in (0.0, 0.01):
        out = model.evaluate(coord + shift, atype, backend="tf", **extra)
    for k in ("energy", "force", "virial"):
        assert rel_err(out[k], model.evaluate(coord + 0.01, atype, **extra)[k]) <= TOL["float64"], k
    new = [fn for key, fn in BE._compiled_forwards.items() if key not in before and key[0] == "energy"]
    assert len(new) == 1
    while not isinstance(new[0], tf.types.experimental.GenericFunction):  # fast calls, the stderr filter
        new[0] = new[0].__wrapped__
    assert isinstance(new[0], tf.types.experimental.GenericFunction) and new[0]._jit_compile
    assert new[0].experimental_get_tracing_count() == 1
    tiled = {k: np.concatenate([v] * 2) for k, v in extra.items()}
    out = model.evaluate(np.concatenate([coord] * 2), atype if atype.ndim == 1 else np.concatenate([atype] * 2),
                         backend="tf", **tiled)
    assert rel_err(out["force"], np.concatenate([ref["force"]] * 2)) <= TOL["float64"]
    assert new[0].experimental_get_tracing_count() == 2
