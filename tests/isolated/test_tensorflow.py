"""TensorFlow backend: namespace shim vs array-api-strict, adapter contract, model vs NumPy, tf.Module view.

Runs in its own process (tests/test_isolated.py); never imports paddle.
"""

from __future__ import annotations

import os
import sys
import types
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
xs = pytest.importorskip("array_api_strict")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TOL, make_model, random_system  # noqa: E402

import dpcore.xp  # noqa: E402
from dpcore.backends import get_backend, namespace_subset  # noqa: E402
from dpcore.infer.inputs import prepare, unpermute  # noqa: E402

BE = get_backend("tensorflow")
NS = BE.namespace()
RNG = np.random.default_rng(1234)
DTYPES = ("bool", "int32", "int64", "float32", "float64")
FLOATS = ("float32", "float64")
INTS = ("int32", "int64")


# ---------------------------------------------------------------------------------------------------------------
# shim vs array-api-strict, table driven
# ---------------------------------------------------------------------------------------------------------------
class D:
    """A dtype by name, resolved in each namespace."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def sample(dtype, shape, positive=False):
    if dtype == "bool":
        return np.asarray(RNG.random(shape) < 0.5)
    if dtype in INTS:
        return np.asarray(RNG.integers(1 if positive else -5, 6, shape), dtype=dtype)
    x = RNG.normal(size=shape)
    return np.asarray(np.abs(x) + 0.1 if positive else x, dtype=dtype)


def _convert(obj, xp, make):
    if isinstance(obj, D):
        return getattr(xp, obj.name)
    if isinstance(obj, np.ndarray):
        return make(obj)
    if isinstance(obj, list) and obj and all(isinstance(o, np.ndarray) for o in obj):
        return [make(o) for o in obj]
    return obj


def _case(name, *args, **kwargs):
    label = ",".join([repr(a.dtype.name) + str(a.shape) if isinstance(a, np.ndarray) else repr(a) for a in args]
                     + [f"{k}={v!r}" for k, v in kwargs.items()])
    return pytest.param(name, args, kwargs, id=f"{name}({label})"[:90])


SHAPES = ((), (0,), (3, 4))
CASES = []
for dt in ("int32", "int64", "float32", "float64"):
    CASES += [_case("abs", sample(dt, s)) for s in SHAPES]
for dt in FLOATS:
    CASES += [_case(f, sample(dt, s, positive=f == "sqrt")) for f in ("exp", "sqrt", "tanh") for s in SHAPES]
    CASES += [
        _case("logaddexp", sample(dt, (3, 1)), sample(dt, (4,))),
        _case("logaddexp", sample(dt, (5,)), 0.5),
        _case("logaddexp", 0.0, sample(dt, (2, 3))),
        _case("logaddexp", np.array([1000.0, -1000.0, -np.inf, np.inf, np.inf, -np.inf, 3.0], dtype=dt),
              np.array([1000.0, 999.0, -np.inf, np.inf, 1.0, 2.0, 3.0], dtype=dt)),
        _case("logaddexp", sample(dt, (0,)), sample(dt, (0,))),
        _case("matrix_transpose", sample(dt, (2, 3))),
        _case("matrix_transpose", sample(dt, (4, 2, 3))),
        _case("matrix_transpose", sample(dt, (2, 0, 3))),
        _case("clip", sample(dt, (4, 5)), -0.5, 0.5),
        _case("clip", sample(dt, (4, 5)), min=0.0),
        _case("clip", sample(dt, (4, 5)), max=0.1),
        _case("clip", sample(dt, (4, 5)), 1, 2),
        _case("clip", sample(dt, ()), None, None),
        _case("clip", sample(dt, (0,)), -1.0, 1.0),
        _case("where", sample("bool", (3, 4)), sample(dt, (3, 4)), sample(dt, (3, 4))),
        _case("where", sample("bool", (3, 1)), sample(dt, (1, 4)), 2.5),
        _case("where", sample("bool", (5,)), 1.0, sample(dt, (5,))),
        _case("where", sample("bool", ()), sample(dt, ()), 0.0),
    ]
for dt in ("int32", "int64", "float32", "float64"):
    CASES += [
        _case("matmul", sample(dt, (3, 4)), sample(dt, (4, 5))),
        _case("matmul", sample(dt, (2, 1, 3, 4)), sample(dt, (5, 4, 2))),  # broadcast batch dims
        _case("matmul", sample(dt, (2, 3, 4, 1)), sample(dt, (1, 6))),  # rank 4 @ rank 2 (layer x @ w)
        _case("matmul", sample(dt, (4,)), sample(dt, (2, 4, 3))),
        _case("matmul", sample(dt, (2, 3, 4)), sample(dt, (4,))),
        _case("matmul", sample(dt, (4,)), sample(dt, (4,))),
        _case("matmul", sample(dt, (0, 4)), sample(dt, (4, 2))),
        _case("sum", sample(dt, (3, 4, 5))),
        _case("sum", sample(dt, (3, 4, 5)), axis=1),
        _case("sum", sample(dt, (3, 4, 5)), axis=(0, 2), keepdims=True),
        _case("sum", sample(dt, (3, 4, 5)), axis=-1, keepdims=True),
        _case("sum", sample(dt, (3, 4, 5)), axis=()),
        _case("sum", sample(dt, (0, 3)), axis=0),
        _case("sum", sample(dt, ())),
        _case("clip", sample(dt, (6,)) * 3 if dt in INTS else sample(dt, (6,)), -2, 3),
    ]
    CASES += [_case("sum", sample(dt, (4,)), dtype=D(o)) for o in ((dt,) if dt in INTS else FLOATS)]
for dt in DTYPES:
    CASES += [
        _case("reshape", sample(dt, (2, 3, 4)), (6, -1)),
        _case("reshape", sample(dt, ()), (1, 1)),
        _case("reshape", sample(dt, (0, 3)), (3, 0)),
        _case("broadcast_to", sample(dt, (3,)), (2, 3)),
        _case("broadcast_to", sample(dt, ()), (2, 2)),
        _case("broadcast_to", sample(dt, (1, 0)), (3, 0)),
        _case("concat", [sample(dt, (2, 3)), sample(dt, (1, 3))]),
        _case("concat", [sample(dt, (2, 3)), sample(dt, (2, 0)), sample(dt, (2, 1))], axis=-1),
        _case("concat", [sample(dt, (2, 3)), sample(dt, (4,))], axis=None),
        _case("take", sample(dt, (5, 3)), np.array([4, 0, 0, 2]), axis=0),
        _case("take", sample(dt, (5, 3)), np.array([-1, 1], dtype="int32"), axis=1),
        _case("take", sample(dt, (5,)), np.array([3, -5])),
        _case("take", sample(dt, (5, 3)), np.zeros(0, dtype="int64"), axis=0),
        _case("zeros_like", sample(dt, (2, 3))),
        _case("ones_like", sample(dt, (0, 3))),
        _case("ones_like", sample(dt, ()), dtype=D("float32")),
        _case("zeros", (2, 3), dtype=D(dt)),
        _case("zeros", 0, dtype=D(dt)),
        _case("asarray", sample(dt, (2, 2))),
        _case("asarray", sample("float64", (3,)), dtype=D(dt)),
        _case("where", sample("bool", (2, 3)), sample(dt, (2, 3)), sample(dt, (3,))),
    ]
    CASES += [_case("astype", sample(dt, s), D(to)) for to in DTYPES for s in ((3, 4), (0,), ())]
CASES += [
    _case("concat", [sample("float32", (2,)), sample("float64", (3,))]),  # promotion
    _case("concat", [sample("int32", (2,)), sample("int64", (3,))]),
    _case("where", sample("bool", (3,)), sample("float32", (3,)), sample("float64", (3,))),
    _case("matmul", sample("float32", (2, 3)), sample("float64", (3, 2))),
    _case("logaddexp", sample("float32", (3,)), sample("float64", (3,))),
    _case("sum", sample("float32", (3,)), dtype=D("float64")),
    _case("where", sample("bool", (3,)), sample("int64", (3,)), 7),
    _case("zeros", (2, 3)),
    _case("arange", 5), _case("arange", 2, 7), _case("arange", 7, 2), _case("arange", 0), _case("arange", 5, 0, -2),
    _case("arange", 0.0, 1.0, 0.25), _case("arange", 2.5), _case("arange", 4, dtype=D("int32")),
    _case("arange", 3, dtype=D("float32")), _case("arange", 1, 10, 3, dtype=D("float64")),
    _case("asarray", 1.5), _case("asarray", 3), _case("asarray", True), _case("asarray", [[1, 2], [3, 4]]),
    _case("asarray", [[1.0, 2.0]], dtype=D("float32")), _case("asarray", [True, False]), _case("asarray", []),
    _case("asarray", [1, 2], dtype=D("float64")), _case("asarray", 2, dtype=D("int32")),
]


def _tolerance(dtype_name):
    return TOL.get(dtype_name, 0.0)


@pytest.mark.parametrize("name,args,kwargs", CASES)
def test_shim_matches_array_api_strict(name, args, kwargs):
    expected = getattr(xs, name)(*[_convert(a, xs, xs.asarray) for a in args],
                                 **{k: _convert(v, xs, xs.asarray) for k, v in kwargs.items()})
    got = getattr(NS, name)(*[_convert(a, NS, tf.constant) for a in args],
                            **{k: _convert(v, NS, tf.constant) for k, v in kwargs.items()})
    assert isinstance(got, tf.Tensor)
    expected = np.asarray(expected)
    got_np = BE.to_numpy(got)
    assert got.dtype.name == expected.dtype.name, f"{name}: dtype {got.dtype.name} != {expected.dtype.name}"
    assert got_np.shape == expected.shape
    tol = _tolerance(expected.dtype.name)
    np.testing.assert_allclose(got_np, expected, rtol=tol, atol=tol)


def test_shim_exposes_exactly_the_subset():
    public = {n for n in dir(NS) if not n.startswith("_") and not isinstance(getattr(NS, n), types.ModuleType)}
    public -= {"annotations"}  # from __future__
    assert public == set(namespace_subset.FUNCTIONS) | set(namespace_subset.DTYPES) | set(namespace_subset.EXTENSIONS)
    for name in namespace_subset.DTYPES:
        assert getattr(NS, name) == getattr(tf, name)


@pytest.mark.parametrize("name,args", [
    ("concat", ([np.zeros(2, "float64"), np.zeros(2, "int64")],)),  # mixed kinds: TypeError like strict
    ("where", (np.ones(2, bool), np.zeros(2, "int64"), 1.5)),
    ("clip", (np.arange(3), 0.5, 2)),
])
def test_shim_rejects_mixed_kinds(name, args):
    with pytest.raises(TypeError):
        getattr(xs, name)(*[_convert(a, xs, xs.asarray) for a in args])
    with pytest.raises(TypeError):
        getattr(NS, name)(*[_convert(a, NS, tf.constant) for a in args])


@pytest.mark.parametrize("dtype", FLOATS)
def test_logaddexp_gradient_exact_and_symmetric(dtype):
    """d/dx logaddexp(a, x) = sigmoid(x - a), 1/2 at a tie (max-based formulas give 0 or 1 there)."""
    x = tf.constant(np.array([-3.0, 0.0, 0.0, 2.0, 40.0], dtype=dtype))
    a = tf.constant(np.array([0.0, 0.0, 1.0, 2.0, -40.0], dtype=dtype))
    (_, (ga, gx)) = BE.value_and_grad(lambda u, v: NS.sum(NS.logaddexp(u, v)), (0, 1))(a, x)
    expect = 1.0 / (1.0 + np.exp(-(x.numpy() - a.numpy())))
    np.testing.assert_allclose(gx.numpy(), expect, rtol=TOL[dtype])
    np.testing.assert_allclose(ga.numpy(), 1.0 - expect, rtol=TOL[dtype], atol=TOL[dtype])
    # second derivative through the custom gradient: d2/dx2 = s (1 - s)
    inner = BE.value_and_grad(lambda v: NS.sum(NS.logaddexp(a, v)), 0, create_graph=True)
    _, h = BE.value_and_grad(lambda v: NS.sum(inner(v)[1]), 0)(x)
    np.testing.assert_allclose(h.numpy(), expect * (1.0 - expect), rtol=TOL[dtype], atol=TOL[dtype])


def test_segment_sum_and_device_extensions():
    vals = sample("float64", (7, 3))
    idx = np.array([0, 4, 4, 1, 0, 4, 2])
    got = NS.dpcore_segment_sum(tf.constant(vals), tf.constant(idx), 6).numpy()
    ref = np.zeros((6, 3))
    np.add.at(ref, idx, vals)
    np.testing.assert_allclose(got, ref, rtol=TOL["float64"])
    x = tf.constant(vals)
    assert "CPU" in NS.dpcore_device(x)
    assert "CPU" in NS.zeros((2,), device=NS.dpcore_device(x)).device
    assert "CPU" in NS.arange(3, device="/CPU:0").device
    assert dpcore.xp.segment_sum(NS, x, tf.constant(idx), 6).numpy().tolist() == got.tolist()


# ---------------------------------------------------------------------------------------------------------------
# TF tensor operators used by the core (namespace_subset.py): what TF does natively
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_operators_follow_the_standard(dtype):
    a, b = sample(dtype, (2, 1, 3, 4)), sample(dtype, (5, 4, 2))
    ta, tb = tf.constant(a), tf.constant(b)
    tol = TOL[dtype]
    np.testing.assert_allclose((ta @ tb).numpy(), a @ b, rtol=tol)  # broadcasting batch dims
    np.testing.assert_allclose((ta @ tf.constant(b[0])).numpy(), a @ b[0], rtol=tol)  # rank 4 @ rank 2
    assert (ta[..., None]).shape == a[..., None].shape and (ta[:, None, :, 1:3]).shape == a[:, None, :, 1:3].shape
    np.testing.assert_array_equal(ta[..., 1:3, 0].numpy(), a[..., 1:3, 0])
    for expr in (lambda x: 1.0 - x * x, lambda x: 2 * x / 3, lambda x: -(x + 0.5), lambda x: 1.0 / (1.0 + x * x),
                 lambda x: x - 1):
        r = expr(ta)
        assert r.dtype.name == dtype  # Python scalars take the tensor's dtype (no float32 default)
        np.testing.assert_allclose(r.numpy(), expr(a), rtol=tol)
    c1, c2 = ta > 0.1, ta <= 0.5
    np.testing.assert_array_equal((c1 & c2).numpy(), (a > 0.1) & (a <= 0.5))
    np.testing.assert_array_equal((~c1).numpy(), ~(a > 0.1))
    np.testing.assert_array_equal((ta == 0.0).numpy(), a == 0.0)
    assert ta.ndim == a.ndim and tuple(ta.shape) == a.shape and ta.shape == a.shape and ta.dtype == getattr(NS, dtype)
    i = tf.constant(np.arange(6, dtype="int64"))
    assert (i * 3 + 1).dtype == tf.int64 and (i >= 2).dtype == tf.bool


def test_documented_operator_quirks():
    """What TF tensors do NOT do like the standard (the core avoids these; see the report)."""
    f32, f64 = tf.constant([1.0], tf.float32), tf.constant([1.0], tf.float64)
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError)):
        f32 + f64  # no promotion between tensors of different precision: cast explicitly
    with pytest.raises(TypeError):
        tf.constant([1], tf.int64) * 1.5  # int tensor with a Python float
    assert tf.where(tf.constant([True]), 1.0, 2.0).dtype == tf.float32  # raw tf.where: float32 constants
    assert NS.where(tf.constant([True]), 1.0, f64).dtype == tf.float64  # shim: the array's dtype
    assert tf.Variable([1.0]).shape == (1,) and not hasattr(tf.Variable([1.0]), "ndim")  # views read variables


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
    a = sample(dtype, (3, 2))
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


def rel_err(got, ref):
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300)) if ref.size else 0.0


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
