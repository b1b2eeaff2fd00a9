"""The TensorFlow namespace shim against array-api-strict (table driven), its exact function subset, mixed
kinds, logaddexp gradients, segment_sum and devices; and the TF tensor operators the core relies on.

One process, TensorFlow only (``BACKENDS``; tests/helpers/isolation.py); the adapter, the model and the
tf.Module view: tests/isolated/test_tensorflow.py.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import dpcore.xp
from dpcore.backends import get_backend, namespace_subset
from helpers import TOL, random_array
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("tensorflow",)
BACKEND = backend_under_test(BACKENDS)
tf = import_framework(BACKEND)
xs = pytest.importorskip("array_api_strict")

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
    return random_array(RNG, dtype, shape, positive)


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
    assert public == (set(namespace_subset.FUNCTIONS) | set(namespace_subset.DTYPES)
                      | set(namespace_subset.MIXED_DTYPES) | set(namespace_subset.EXTENSIONS))
    for name in namespace_subset.DTYPES + namespace_subset.MIXED_DTYPES:
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
