"""The Paddle namespace shim against array-api-strict (table driven, operators included), its exact function
subset, errors, devices and copies, logaddexp and segment_sum gradients, and Paddle's known operator deviations.

One process, Paddle only: paddle must never share a process with tensorflow (``BACKENDS``;
tests/helpers/isolation.py).  The adapter, the model and the Layer view: tests/isolated/test_paddle.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.backends import get_backend
from dpcore.backends import namespace_subset as subset
from dpcore.xp import namespace
from helpers import TOL, dtype_name
from helpers import rel_err_nonfinite as rel_err
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("paddle",)
BACKEND = backend_under_test(BACKENDS)
paddle = import_framework(BACKEND)
xs = pytest.importorskip("array_api_strict")

BE = get_backend("paddle")
pns = BE.namespace()
DTYPE_NAMES = subset.DTYPES


# --------------------------------------------------------------------------------------------- shim table
def f(shape, dtype="float64", lo=-2.0, hi=2.0):
    return lambda r: r.uniform(lo, hi, shape).astype(dtype)


def i(shape, dtype="int64", lo=-5, hi=5):
    return lambda r: r.integers(lo, hi, shape).astype(dtype)


def b(shape):
    return lambda r: r.random(shape) < 0.5


def const(value):
    return lambda r: np.asarray(value)


FLOATS = ("float32", "float64")
SHAPES = ((), (0,), (3, 4), (2, 0, 3))
CASES = []  # (id, fn(xp, *arrays), input generators)
for dt in FLOATS:
    for sh in SHAPES:
        s = f"{dt}-{sh}"
        CASES += [
            (f"abs-{s}", lambda xp, a: xp.abs(a), [f(sh, dt)]),
            (f"exp-{s}", lambda xp, a: xp.exp(a), [f(sh, dt)]),
            (f"sqrt-{s}", lambda xp, a: xp.sqrt(a), [f(sh, dt, 0.0, 4.0)]),
            (f"tanh-{s}", lambda xp, a: xp.tanh(a), [f(sh, dt)]),
            (f"zeros_like-{s}", lambda xp, a: xp.zeros_like(a), [f(sh, dt)]),
            (f"ones_like-{s}", lambda xp, a: xp.ones_like(a), [f(sh, dt)]),
            (f"sum-all-{s}", lambda xp, a: xp.sum(a), [f(sh, dt)]),
            (f"clip-{s}", lambda xp, a: xp.clip(a, -0.3, 1.1), [f(sh, dt)]),
            (f"where-scalar-{s}", lambda xp, a: xp.where(a > 0.5, a, 0.25), [f(sh, dt)]),
            (f"where-scalar-first-{s}", lambda xp, a: xp.where(a > 0.5, -1.5, a), [f(sh, dt)]),
        ]
    CASES += [
        (f"logaddexp-{dt}", lambda xp, a, c: xp.logaddexp(a, c), [f((3, 4), dt, -50, 50), f((4,), dt, -50, 50)]),
        (f"logaddexp-extreme-{dt}", lambda xp, a, c: xp.logaddexp(a, c),
         [const(np.array([np.inf, -np.inf, -np.inf, 800.0, -800.0, 0.0, 3.0], dt)),
          const(np.array([np.inf, -np.inf, 1.0, 0.0, -800.0, 0.0, -np.inf], dt))]),
        (f"logaddexp-softplus-{dt}", lambda xp, a: xp.logaddexp(xp.zeros_like(a), a), [f((5, 3), dt, -30, 30)]),
        (f"matmul-{dt}", lambda xp, a, c: xp.matmul(a, c), [f((3, 4), dt), f((4, 5), dt)]),
        (f"matmul-batch-bcast-{dt}", lambda xp, a, c: xp.matmul(a, c), [f((2, 1, 3, 4), dt), f((5, 4, 2), dt)]),
        (f"matmul-1d-{dt}", lambda xp, a, c: xp.matmul(a, c), [f((4,), dt), f((4, 3), dt)]),
        (f"matmul-empty-{dt}", lambda xp, a, c: xp.matmul(a, c), [f((0, 4), dt), f((4, 3), dt)]),
        (f"matrix_transpose-{dt}", lambda xp, a: xp.matrix_transpose(a), [f((4, 2, 3), dt)]),
        (f"matrix_transpose-empty-{dt}", lambda xp, a: xp.matrix_transpose(a), [f((0, 2, 3), dt)]),
        (f"sum-axis-{dt}", lambda xp, a: xp.sum(a, axis=1), [f((2, 3, 4), dt)]),
        (f"sum-neg-axis-keep-{dt}", lambda xp, a: xp.sum(a, axis=-1, keepdims=True), [f((2, 3, 4), dt)]),
        (f"sum-tuple-{dt}", lambda xp, a: xp.sum(a, axis=(1, 2)), [f((2, 3, 4), dt)]),
        (f"sum-tuple-keep-{dt}", lambda xp, a: xp.sum(a, axis=(0, 2), keepdims=True), [f((2, 3, 4), dt)]),
        (f"sum-empty-axis-{dt}", lambda xp, a: xp.sum(a, axis=0), [f((0, 3), dt)]),
        (f"sum-noop-axis-{dt}", lambda xp, a: xp.sum(a, axis=()), [f((2, 3), dt)]),
        (f"clip-min-only-{dt}", lambda xp, a: xp.clip(a, min=0.0), [f((3, 4), dt)]),
        (f"clip-max-only-{dt}", lambda xp, a: xp.clip(a, max=0.5), [f((3, 4), dt)]),
        (f"clip-array-bounds-{dt}", lambda xp, a, lo: xp.clip(a, lo, 1.0), [f((3, 4), dt), f((4,), dt, -1, 0)]),
        (f"where-arrays-bcast-{dt}", lambda xp, c, a, d: xp.where(c, a, d), [b((3, 1)), f((4,), dt), f((3, 4), dt)]),
        (f"concat-{dt}", lambda xp, a, c: xp.concat([a, c, a], axis=-1), [f((2, 3), dt), f((2, 1), dt)]),
        (f"concat-axis0-{dt}", lambda xp, a, c: xp.concat([a, c], axis=0), [f((2, 3), dt), f((0, 3), dt)]),
        (f"concat-none-{dt}", lambda xp, a, c: xp.concat([a, c], axis=None), [f((2, 3), dt), f((4,), dt)]),
        (f"broadcast_to-{dt}", lambda xp, a: xp.broadcast_to(a, (2, 3)), [f((3,), dt)]),
        (f"broadcast_to-0d-{dt}", lambda xp, a: xp.broadcast_to(a, (2, 2)), [f((), dt)]),
        (f"broadcast_to-empty-{dt}", lambda xp, a: xp.broadcast_to(a, (0, 3)), [f((1, 3), dt)]),
        (f"reshape-{dt}", lambda xp, a: xp.reshape(a, (4, -1)), [f((2, 3, 4), dt)]),
        (f"reshape-flat-{dt}", lambda xp, a: xp.reshape(a, (-1,)), [f((2, 3), dt)]),
        (f"reshape-0d-{dt}", lambda xp, a: xp.reshape(a, (1, 1)), [f((), dt)]),
        (f"reshape-to-0d-{dt}", lambda xp, a: xp.reshape(a, ()), [f((1,), dt)]),
        (f"reshape-empty-{dt}", lambda xp, a: xp.reshape(a, (3, 0)), [f((0, 3), dt)]),
        (f"take-{dt}", lambda xp, a, k: xp.take(a, k, axis=0), [f((5, 3), dt), i((7,), "int64", 0, 5)]),
        (f"take-axis1-int32-{dt}", lambda xp, a, k: xp.take(a, k, axis=1), [f((2, 5, 3), dt), i((4,), "int32", 0, 5)]),
        (f"take-neg-axis-{dt}", lambda xp, a, k: xp.take(a, k, axis=-1), [f((2, 5), dt), i((3,), "int64", 0, 5)]),
        (f"take-1d-no-axis-{dt}", lambda xp, a, k: xp.take(a, k), [f((5,), dt), i((3,), "int64", 0, 5)]),
        (f"take-empty-{dt}", lambda xp, a, k: xp.take(a, k, axis=0), [f((5, 3), dt), i((0,), "int64", 0, 5)]),
        (f"zeros-{dt}", lambda xp, a, dt=dt: xp.zeros((2, 3), dtype=getattr(xp, dt)), [f((), dt)]),
        (f"zeros-int-shape-{dt}", lambda xp, a, dt=dt: xp.zeros(4, dtype=getattr(xp, dt)), [f((), dt)]),
        (f"zeros-empty-{dt}", lambda xp, a, dt=dt: xp.zeros((0, 3), dtype=getattr(xp, dt)), [f((), dt)]),
        (f"zeros_like-dtype-{dt}", lambda xp, a: xp.zeros_like(a, dtype=xp.int32), [f((2, 3), dt)]),
        (f"ones_like-dtype-{dt}", lambda xp, a: xp.ones_like(a, dtype=xp.bool), [f((2, 3), dt)]),
        (f"asarray-list-{dt}", lambda xp, a, dt=dt: xp.asarray([1.5, -2.0, 3.25], dtype=getattr(xp, dt)), [f((), dt)]),
        (f"asarray-array-{dt}", lambda xp, a: xp.asarray(a), [f((2, 3), dt)]),
        (f"asarray-array-dtype-{dt}", lambda xp, a: xp.asarray(a, dtype=xp.float64), [f((2, 3), dt)]),
        (f"arange-{dt}", lambda xp, a, dt=dt: xp.arange(0.0, 2.0, 0.25, dtype=getattr(xp, dt)), [f((), dt)]),
    ]
for dt in ("int32", "int64"):
    CASES += [
        (f"abs-{dt}", lambda xp, a: xp.abs(a), [i((3, 4), dt)]),
        (f"sum-{dt}", lambda xp, a: xp.sum(a), [i((3, 4), dt)]),
        (f"sum-axis-{dt}", lambda xp, a: xp.sum(a, axis=0, keepdims=True), [i((3, 4), dt)]),
        (f"clip-{dt}", lambda xp, a: xp.clip(a, -2, 3), [i((3, 4), dt)]),
        (f"where-{dt}", lambda xp, c, a, d: xp.where(c, a, d), [b((3, 4)), i((3, 4), dt), i((4,), dt)]),
        (f"take-{dt}", lambda xp, a, k: xp.take(a, k, axis=0), [i((5,), dt), i((6,), "int64", 0, 5)]),
        (f"reshape-{dt}", lambda xp, a: xp.reshape(a, (2, 6)), [i((3, 4), dt)]),
        (f"concat-{dt}", lambda xp, a: xp.concat([a, a], axis=1), [i((3, 4), dt)]),
        (f"broadcast_to-{dt}", lambda xp, a: xp.broadcast_to(a[None, :], (3, 4)), [i((4,), dt)]),
        (f"matmul-{dt}", lambda xp, a, c: xp.matmul(a, c), [i((3, 4), dt), i((4, 2), dt)]),
        (f"zeros_like-{dt}", lambda xp, a: xp.zeros_like(a), [i((3, 4), dt)]),
        (f"ones_like-{dt}", lambda xp, a: xp.ones_like(a), [i((3, 4), dt)]),
        (f"arange-{dt}", lambda xp, a, dt=dt: xp.arange(7, dtype=getattr(xp, dt)), [i((), dt)]),
        (f"arange-start-step-{dt}", lambda xp, a, dt=dt: xp.arange(5, -3, -2, dtype=getattr(xp, dt)), [i((), dt)]),
        (f"arange-empty-{dt}", lambda xp, a, dt=dt: xp.arange(0, dtype=getattr(xp, dt)), [i((), dt)]),
        (f"asarray-{dt}", lambda xp, a: xp.asarray(a), [i((2, 0), dt)]),
    ]
CASES += [
    ("arange-default-int", lambda xp, a: xp.arange(6), [i(())]),
    ("asarray-int-list", lambda xp, a: xp.asarray([[1, 2], [3, 4]]), [i(())]),
    ("asarray-bool-scalar", lambda xp, a: xp.asarray(True), [i(())]),
    ("asarray-bool", lambda xp, a: xp.asarray(a), [b((2, 3))]),
    ("reshape-bool", lambda xp, a: xp.reshape(a, (3, 2)), [b((2, 3))]),
    ("concat-bool", lambda xp, a: xp.concat([a, a]), [b((2, 3))]),
    ("where-bool", lambda xp, c, a: xp.where(c, a, ~a), [b((2, 3)), b((2, 3))]),
    ("take-bool", lambda xp, a, k: xp.take(a, k, axis=1), [b((2, 3)), i((2,), "int64", 0, 3)]),
    ("broadcast_to-bool", lambda xp, a: xp.broadcast_to(a, (4, 2, 3)), [b((2, 3))]),
    ("zeros_like-bool", lambda xp, a: xp.zeros_like(a), [b((2, 3))]),
    ("concat-promote-f32-f64", lambda xp, a, c: xp.concat([a, c], axis=0), [f((2, 3), "float32"), f((1, 3))]),
    ("where-promote-f32-f64", lambda xp, c, a, d: xp.where(c, a, d), [b((2, 3)), f((2, 3), "float32"), f((2, 3))]),
    ("matmul-promote-f32-f64", lambda xp, a, c: xp.matmul(a, c), [f((2, 3), "float32"), f((3, 2))]),
    ("clip-promote-bounds", lambda xp, a, lo: xp.clip(a, lo), [f((2, 3)), f((3,), "float32")]),
    ("sum-dtype-f64", lambda xp, a: xp.sum(a, dtype=xp.float64), [f((3, 4), "float32")]),
    ("sum-int32-keep", lambda xp, a: xp.sum(a, axis=(0, 1), keepdims=True), [i((2, 3), "int32")]),
]
for src in DTYPE_NAMES:
    for dst in DTYPE_NAMES:
        gen = b((3, 4)) if src == "bool" else (i((3, 4), src) if src.startswith("int") else f((3, 4), src, -3, 3))
        CASES.append((f"astype-{src}-{dst}", lambda xp, a, dst=dst: xp.astype(a, getattr(xp, dst)), [gen]))
# operators the core uses (namespace_subset.py): Paddle's own, checked against the standard here
OPERATORS = []
for dt in FLOATS:
    OPERATORS += [
        (f"op-scalar-arith-{dt}", lambda xp, a: (1.0 - a) * 1.5 + a / 3 - 2 * a + (-a) / 7.0, [f((3, 4), dt)]),
        (f"op-rdiv-{dt}", lambda xp, a: 1.0 / a, [f((3, 4), dt, 0.5, 2)]),
        (f"op-poly-{dt}", lambda xp, a: a * a * a * (-6.0 * a * a + 15.0 * a - 10.0) + 1.0, [f((3, 4), dt)]),
        (f"op-array-arith-{dt}", lambda xp, a, c: a * c - c / (a * a + 1.0) + a, [f((3, 4), dt), f((4,), dt)]),
        (f"op-matmul-bcast-{dt}", lambda xp, a, c: a @ c, [f((2, 3, 5, 4), dt), f((4, 2), dt)]),
        (f"op-matmul-batch-{dt}", lambda xp, a, c: a @ c, [f((2, 7, 3), dt), f((2, 3, 3), dt)]),
        (f"op-matmul-batch-bcast-{dt}", lambda xp, a, c: a @ c, [f((2, 1, 3, 4), dt), f((5, 4, 2), dt)]),
        (f"op-newaxis-{dt}", lambda xp, a: a[..., None] * a[:, None, :], [f((3, 4), dt)]),
        (f"op-slices-{dt}", lambda xp, a: a[:, 1:3, ...][..., 0:1] + a[..., :1, 2:], [f((2, 4, 3), dt)]),
        (f"op-empty-slice-{dt}", lambda xp, a: a[:, 2:2, :] * 2.0, [f((2, 4, 3), dt)]),
        (f"op-compare-{dt}", lambda xp, a: (a > 0.5) & (a < 1.5) & ~(a == 1.0) & (a >= -0.25), [f((3, 4), dt)]),
        (f"op-compare-arrays-{dt}", lambda xp, a, c: (a >= c) & ~(a < 0), [f((3, 4), dt), f((4,), dt)]),
        (f"op-unary-minus-0d-{dt}", lambda xp, a: -(a * 2.5), [f((), dt)]),
    ]
OPERATORS += [
    ("op-int-arith", lambda xp, a, c: a * 3 + c - 1, [i((3, 4)), i((4,))]),
    ("op-int-compare", lambda xp, a: (a == 2) | (a >= 4), [i((3, 4))]),
    ("op-bool-and-not", lambda xp, a, c: a & ~c, [b((3, 4)), b((3, 4))]),
    ("op-f64-f32-add", lambda xp, a, c: a + c, [f((3, 4)), f((3, 4), "float32")]),
]


def _run(xp, fn, np_args):
    return fn(xp, *[xp.asarray(a) for a in np_args])


@pytest.mark.parametrize("fn,gens", [pytest.param(fn, g, id=cid) for cid, fn, g in CASES + OPERATORS])
def test_shim_matches_array_api_strict(fn, gens):
    rng = np.random.default_rng(7)
    np_args = [g(rng) for g in gens]
    ref = _run(xs, fn, np_args)
    got = _run(pns, fn, np_args)
    assert isinstance(got, paddle.Tensor)
    assert namespace(got) is pns
    assert dtype_name(pns, got.dtype) == dtype_name(xs, ref.dtype)
    assert tuple(got.shape) == ref.shape
    ref_np, got_np = np.asarray(ref), got.numpy()
    if ref_np.dtype.kind == "f":
        assert rel_err(got_np, ref_np) <= TOL[ref_np.dtype.name]
        assert np.array_equal(np.isnan(got_np), np.isnan(ref_np))
    else:
        np.testing.assert_array_equal(got_np, ref_np)


def test_shim_exposes_exactly_the_subset():
    expected = set(subset.FUNCTIONS) | set(subset.DTYPES) | set(subset.MIXED_DTYPES) | set(subset.EXTENSIONS)
    public = {n for n in dir(pns) if not n.startswith("_")} - {"annotations"}
    assert public == expected == set(pns.__all__)
    for name in subset.DTYPES + subset.MIXED_DTYPES:
        assert getattr(pns, name) == getattr(paddle, name)


@pytest.mark.parametrize("call,error", [
    (lambda: pns.take(pns.zeros((2, 3)), pns.asarray([0]), axis=None), ValueError),
    (lambda: pns.reshape(pns.zeros((2, 3)), (0, 3)), ValueError),  # Paddle alone would return (2, 3)
    (lambda: pns.concat([pns.zeros(2), pns.arange(2)]), TypeError),
    (lambda: pns.matrix_transpose(pns.zeros(3)), ValueError),
    (lambda: pns.zeros(2, device="tpu"), ValueError),
    (lambda: pns.asarray(np.zeros(2), copy=False), ValueError),
])
def test_shim_errors(call, error):
    with pytest.raises(error):
        call()


def test_shim_devices_and_copies():
    x = pns.asarray(np.arange(3.0), device="cpu")
    assert pns.dpcore_device(x) == x.place
    for dev in ("cpu", "Place(cpu)", paddle.CPUPlace(), x.place):
        for y in (pns.zeros(2, device=dev), pns.arange(3, device=dev), pns.asarray([1.0], device=dev),
                  pns.zeros_like(x, device=dev), pns.astype(x, pns.float32, device=dev)):
            assert str(y.place) == str(x.place)
    assert pns.asarray(x) is x
    assert pns.asarray(x, copy=True) is not x
    assert pns.astype(x, pns.float64, copy=False) is x
    assert dtype_name(pns, pns.asarray(1.5).dtype) == paddle.get_default_dtype()  # Paddle's default float
    assert pns.asarray(3).dtype == pns.int64 and pns.asarray(np.float64(2.0)).dtype == pns.float64


def test_logaddexp_gradient_at_ties_and_stability():
    a = pns.asarray(np.array([0.0, 1.0, -2.0, 700.0]))
    a.stop_gradient = False
    c = pns.asarray(np.array([0.0, 0.5, 3.0, -700.0]))
    y = pns.logaddexp(a, c)
    (g,) = paddle.grad([pns.sum(y)], [a])
    np.testing.assert_allclose(g.numpy(), 1.0 / (1.0 + np.exp(c.numpy() - a.numpy())), rtol=1e-15)
    assert np.isfinite(y.numpy()).all()


def test_segment_sum_values_and_gradients():
    rng = np.random.default_rng(3)
    for dt in FLOATS:
        v = rng.normal(size=(9, 4)).astype(dt)
        idx = rng.integers(0, 5, 9)
        ref = np.stack([np.bincount(idx, v[:, k], minlength=6) for k in range(4)], axis=1)
        out = pns.dpcore_segment_sum(pns.asarray(v), pns.asarray(idx), 6)
        assert out.dtype == getattr(pns, dt) and tuple(out.shape) == (6, 4)
        assert rel_err(out.numpy(), ref) <= TOL[dt]
    assert tuple(pns.dpcore_segment_sum(pns.zeros((0, 3)), pns.asarray(np.zeros(0, np.int64)), 4).shape) == (4, 3)
    # first and second derivative: d/dv sum(w * seg(v)^2) = 2 w[idx] seg(v)[idx]; d2/dv2 of sum(grad^2) is closed form
    v = rng.normal(size=(9, 2))
    idx = rng.integers(0, 4, 9)
    w = rng.normal(size=(4, 2))
    seg = np.stack([np.bincount(idx, v[:, k], minlength=4) for k in range(2)], axis=1)

    def loss(t):
        return pns.sum(pns.asarray(w) * pns.dpcore_segment_sum(t, pns.asarray(idx), 4) ** 2)

    def grad_norm(t):
        _, (g,) = BE.value_and_grad(loss, (0,), create_graph=True)(t)
        return pns.sum(g * g)

    _, (g,) = BE.value_and_grad(loss)(pns.asarray(v))
    assert rel_err(g.numpy(), 2 * w[idx] * seg[idx]) <= TOL["float64"]
    _, (h,) = BE.value_and_grad(grad_norm)(pns.asarray(v))
    # grad_k = 2 w[idx_k] seg[idx_k]; d/dv_j sum_k grad_k^2 = sum_k 8 w^2[idx_k] seg[idx_k] [idx_k == idx_j]
    count = np.bincount(idx, minlength=4)[:, None]
    assert rel_err(h.numpy(), (8 * w**2 * seg * count)[idx]) <= TOL["float64"]


def test_known_paddle_operator_deviations():
    """Paddle behaviours the shim cannot fix (operators); documented in dpcore/backends/paddle.py."""
    a32, a64 = paddle.ones([2, 2], dtype="float32"), paddle.ones([2, 2], dtype="float64")
    assert (a32 @ a64).dtype == paddle.float32  # standard: float64
    assert pns.matmul(a32, a64).dtype == paddle.float64  # the shim promotes
    assert (a32 * paddle.to_tensor(2.0, dtype="float64")).dtype == paddle.float32  # 0-d acts as a scalar
    assert isinstance(a32.shape, list) and a32.shape == (2, 2)  # paddle.Size, not a tuple
    # int64 tensor * Python float -> Paddle's default float (float32), NumPy gives float64 (standard: unspecified)
    assert dtype_name(pns, (paddle.to_tensor(np.arange(3)) * 1.5).dtype) == paddle.get_default_dtype()
