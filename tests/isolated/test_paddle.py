"""Paddle backend: the namespace shim against array-api-strict, the adapter contract, the energy model
against the NumPy reference (both force modes), and the ``paddle.nn.Layer`` view.

Runs in its own process (tests/test_isolated.py): paddle must never share a process with tensorflow.
"""

from __future__ import annotations

import subprocess
import sys

import array_api_strict as xs
import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from dpcore.backends import get_backend  # noqa: E402
from dpcore.backends import namespace_subset as subset  # noqa: E402
from dpcore.infer.inputs import prepare, unpermute  # noqa: E402
from dpcore.xp import namespace  # noqa: E402
from helpers import TOL, make_model, random_system  # noqa: E402

BE = get_backend("paddle")
pns = BE.namespace()
DTYPE_NAMES = subset.DTYPES


def dtype_name(xp, dt) -> str:
    return next(n for n in DTYPE_NAMES if getattr(xp, n) == dt)


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    finite = np.isfinite(ref) & np.isfinite(got)
    diff = np.where(finite, np.abs(np.where(finite, got, 0.0) - np.where(finite, ref, 0.0)), 0.0)
    diff[~finite & ~(got == ref) & ~(np.isnan(got) & np.isnan(ref))] = np.inf  # infinities must match exactly
    scale = np.max(np.abs(np.where(np.isfinite(ref), ref, 0.0)), initial=0.0)
    return float(np.max(diff)) / max(scale, np.finfo(np.float64).tiny)


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
    expected = set(subset.FUNCTIONS) | set(subset.DTYPES) | set(subset.EXTENSIONS)
    public = {n for n in dir(pns) if not n.startswith("_")} - {"annotations"}
    assert public == expected == set(pns.__all__)
    for name in subset.DTYPES:
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


# --------------------------------------------------------------------------------------------- adapter
def test_adapter_imports_the_framework_and_registers_lazily():
    import dpcore.backends.paddle as mod

    assert mod.paddle is sys.modules["paddle"] and mod.paddle.__name__ == "paddle"
    code = ("import sys, dpcore, dpcore.xp as x\n"
            "assert 'paddle' not in sys.modules\n"
            "import dpcore.backends.paddle\n"
            "assert not x._SHIMS, 'registered at import'\n"
            "import paddle\n"
            "dt, dev = paddle.get_default_dtype(), paddle.get_device()\n"
            "from dpcore.backends import get_backend\n"
            "be = get_backend('paddle')\n"
            "assert x._SHIMS and x.namespace(paddle.zeros([1])) is be.namespace()\n"
            "assert (paddle.get_default_dtype(), paddle.get_device()) == (dt, dev)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_adapter_contract():
    assert BE.name == "paddle" and BE.capabilities["use_default_pf"] is False and BE.capabilities["autodiff"]
    assert {"paddle_version", "device", "default_dtype"} <= set(BE.settings)
    assert BE.settings["default_dtype"] == paddle.get_default_dtype()
    for dt in DTYPE_NAMES:
        for shape in ((), (0,), (2, 3)):
            a = np.zeros(shape, dtype=dt)
            t = BE.asarray(a)
            assert isinstance(t, paddle.Tensor) and dtype_name(pns, t.dtype) == dt and tuple(t.shape) == shape
            back = BE.to_numpy(t)
            assert back.dtype == a.dtype and back.shape == shape
    t = paddle.to_tensor([1.0, 2.0], stop_gradient=False)
    y = t * 2.0
    assert BE.asarray(y) is y and not y.stop_gradient  # framework tensors unchanged, never detached
    np.testing.assert_array_equal(BE.to_numpy(y), [2.0, 4.0])
    assert BE.asarray(np.arange(4.0)[::-1]).numpy().tolist() == [3.0, 2.0, 1.0, 0.0]
    cpu = get_backend("paddle", "cpu")
    assert str(cpu.asarray(np.ones(2)).place) == str(paddle.CPUPlace())
    f = lambda x: x  # noqa: E731
    assert BE.jit(f) is f
    with pytest.raises(ValueError):
        get_backend("paddle", "tpu:0")
    if not paddle.is_compiled_with_cuda():
        with pytest.raises(RuntimeError, match="no GPU"):
            get_backend("paddle", "gpu:0")


def test_value_and_grad_pytrees():
    rng = np.random.default_rng(0)
    tree_np = {"a": {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}, "l": [rng.normal(size=2), None],
               "unused": rng.normal(size=3), "n": np.arange(3)}
    x_np = rng.normal(size=(4, 3))
    tree, x = BE.tree_asarray(tree_np), BE.asarray(x_np)

    def f(p, x):
        h = pns.tanh(x @ p["a"]["w"] + p["a"]["b"])
        e = pns.sum(h * h * p["l"][0])
        return e, {"h": h}

    (val, aux), (gp, gx) = BE.value_and_grad(f, (0, 1), has_aux=True)(tree, x)
    h = np.tanh(x_np @ tree_np["a"]["w"] + tree_np["a"]["b"])
    assert abs(float(val) - np.sum(h * h * tree_np["l"][0])) <= 1e-12 * abs(float(val))
    gz = 2 * h * tree_np["l"][0] * (1 - h * h)
    assert rel_err(gp["a"]["w"].numpy(), x_np.T @ gz) <= TOL["float64"]
    assert rel_err(gp["a"]["b"].numpy(), gz.sum(0)) <= TOL["float64"]
    assert rel_err(gp["l"][0].numpy(), np.sum(h * h, axis=0)) <= TOL["float64"]
    assert rel_err(gx.numpy(), gz @ tree_np["a"]["w"].T) <= TOL["float64"]
    assert gp["l"][1] is None and gp["n"] is None and isinstance(gp["l"], list)
    np.testing.assert_array_equal(gp["unused"].numpy(), np.zeros(3))
    assert rel_err(aux["h"].numpy(), h) <= TOL["float64"]
    assert x.stop_gradient and tree["a"]["w"].stop_gradient  # inputs not modified
    # int argnums: JAX returns the gradient itself, not a tuple; works inside paddle.no_grad too
    with paddle.no_grad():
        val, g = BE.value_and_grad(lambda x: pns.sum(x * x), 0)(x)
    assert rel_err(g.numpy(), 2 * x_np) <= TOL["float64"]
    with pytest.raises(TypeError, match="scalar"):
        BE.value_and_grad(lambda x: x * 2.0)(x)


def test_value_and_grad_create_graph_and_graph_inputs():
    """Gradients of gradients (force training), and arguments that already depend on parameters."""
    w = paddle.to_tensor(np.array([0.3, -1.2, 0.7]), stop_gradient=False)
    x_np = np.array([0.5, 1.5, -0.25])
    # E(x) = sum(w * x^3); F = -dE/dx = -3 w x^2; d/dw sum(F^2) = 18 w x^4
    _, (gx,) = BE.value_and_grad(lambda x: pns.sum(w * x * x * x), (0,), create_graph=True)(BE.asarray(x_np))
    (gw,) = paddle.grad([pns.sum(gx * gx)], [w])
    assert rel_err(gw.numpy(), 18 * w.numpy() * x_np**4) <= TOL["float64"]
    # an argument computed from w keeps its graph: d/dw of g(2w) through value_and_grad's input
    v = w * 2.0
    val, (gv,) = BE.value_and_grad(lambda v: pns.sum(v * v), (0,), create_graph=True)(v)
    (gw2,) = paddle.grad([pns.sum(gv)], [w])  # sum(2v) = sum(4w) -> 4
    np.testing.assert_allclose(gw2.numpy(), 4.0)


# --------------------------------------------------------------------------------------------- model
SYSTEMS = {
    "pbc-triclinic-two-side": (dict(), dict(natoms=10), {}),
    "nopbc-one-side": (dict(descriptor={"type_one_side": True}), dict(natoms=9, triclinic=False), {"nopbc": True}),
    "pbc-one-side-exclusions": (dict(descriptor={"type_one_side": True, "exclude_types": [[0, 1]]},
                                     pair_exclude_types=[[1, 1]], atom_exclude_types=[1]), dict(natoms=10), {}),
    "two-side-exclude-types": (dict(descriptor={"exclude_types": [[0, 0]]}), dict(natoms=10, seed=4), {}),
    "fparam-aparam": (dict(fitting={"numb_fparam": 2, "numb_aparam": 1}), dict(natoms=8, seed=5), {"params": True}),
    "padding-mixed-frames": (dict(), dict(natoms=10, seed=6), {"padding": True}),
    "float32": (dict(descriptor={"precision": "float32"}, fitting={"precision": "float32"}), dict(natoms=10), {}),
}
MODELS: dict = {}


def system(name):
    if name not in MODELS:
        model_kw, sys_kw, opts = SYSTEMS[name]
        model = make_model(**model_kw)
        coord, atype, box = random_system(**sys_kw)
        nf, n = coord.shape[:2]
        rng = np.random.default_rng(11)
        args = dict(coord=coord, atype=atype, box=None if opts.get("nopbc") else box)
        if opts.get("padding"):  # per-frame compositions and a padding atom: the where(type) path, no sorting
            at = np.stack([atype, np.roll(atype, 3)])
            at[1, -1] = -1
            args["atype"] = at
        if opts.get("params"):
            args["fparam"] = rng.normal(size=(nf, 2))
            args["aparam"] = rng.normal(size=(nf, n, 1))
        ref = model.evaluate(**args, atomic=True)
        dt = model.config["fitting_net"]["precision"]
        MODELS[name] = (model, args, ref, "float32" if dt == "float32" else "float64")
    return MODELS[name]


def paddle_outputs(model, args, force_mode):
    inputs, blocks, perm = prepare(model, args["coord"], args["atype"], args.get("box"), args.get("fparam"),
                                   args.get("aparam"))
    out = BE.model_forward(model.config, model.backend_params(BE), BE.tree_asarray(inputs), blocks,
                           atomic_virial=True, force_mode=force_mode)
    assert all(isinstance(v, paddle.Tensor) for v in out.values())
    return unpermute({k: BE.to_numpy(v) for k, v in out.items()}, perm)


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_model_matches_numpy(name, force_mode):
    model, args, ref, dt = system(name)
    got = paddle_outputs(model, args, force_mode)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key].dtype == ref[key].dtype and got[key].shape == ref[key].shape, key
        assert rel_err(got[key], ref[key]) <= TOL[dt], (key, rel_err(got[key], ref[key]))
    assert np.abs(ref["force"]).max() > 0


def test_energy_model_evaluate_backend_paddle():
    model, args, ref, dt = system("pbc-triclinic-two-side")
    got = model.evaluate(**args, backend="paddle", atomic=True)
    for key in ref:
        assert rel_err(got[key], ref[key]) <= TOL[dt], key


# --------------------------------------------------------------------------------------------- Layer view
def _flat_keys(tree, prefix=""):
    out = []
    for k, v in tree.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def test_layer_parameters_and_buffers():
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    model, _, _, _ = system("fparam-aparam")
    layer = PaddleEnergyModel(model)
    keys = _flat_keys(model.params)
    assert sorted(layer.state_dict()) == sorted(keys)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {k for k in keys if k.startswith(("descriptor.embedding.", "fitting.nets."))}
    assert {"descriptor.davg", "descriptor.dstd", "out_bias", "fitting.fparam_avg", "fitting.bias_atom_e"} <= \
        {n for n, _ in layer.named_buffers()}
    p = layer.state_dict()["descriptor.embedding.0.1.w"]
    assert p.dtype == paddle.float64 and not p.stop_gradient
    np.testing.assert_array_equal(p.numpy(), model.params["descriptor"]["embedding"]["0"]["1"]["w"])
    frozen = make_model(descriptor={"trainable": False}, fitting={"trainable": [True, False, True]})
    names = {n for n, _ in PaddleEnergyModel(frozen).named_parameters()}
    assert not any(n.startswith("descriptor.") for n in names)
    assert "fitting.nets.0.0.w" in names and "fitting.nets.0.1.w" not in names and "fitting.nets.1.2.b" in names


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_layer_forward_matches_numpy(force_mode):
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    for name in ("pbc-triclinic-two-side", "nopbc-one-side", "fparam-aparam", "padding-mixed-frames", "float32"):
        model, args, ref, dt = system(name)
        layer = PaddleEnergyModel(model, force_mode=force_mode)
        out = layer(**args, atomic_virial=True)
        for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):
            assert isinstance(out[key], paddle.Tensor)
            assert rel_err(out[key].numpy(), ref[key]) <= TOL[dt], (name, key)


def _loss(out, labels, natoms):
    de = out["energy"] - paddle.to_tensor(labels["energy"])
    df = out["force"] - paddle.to_tensor(labels["force"])
    return pns.sum(de * de) / (de.shape[0] * natoms**2) + pns.sum(df * df) / df.size


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_layer_adam_step_decreases_energy_force_loss(force_mode):
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    model = make_model(seed=1)
    target = make_model(seed=1)
    rng = np.random.default_rng(5)
    perturbed = BE.tree_to_numpy(BE.tree_asarray(target.params))
    for net in perturbed["fitting"]["nets"].values():
        for layer in net.values():
            layer["w"] = layer["w"] + rng.normal(0, 0.05, layer["w"].shape)
    target.set_params(perturbed)
    coord, atype, box = random_system(natoms=8, nframes=2, seed=9)
    labels = target.evaluate(coord, atype, box)
    layer = PaddleEnergyModel(model, force_mode=force_mode)
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=layer.parameters())
    loss0 = _loss(layer(coord, atype, box), labels, 8)
    loss0.backward()
    grad_norm = sum(float(pns.sum(p.grad * p.grad)) for p in layer.parameters() if p.grad is not None)
    assert grad_norm > 0
    opt.step()
    opt.clear_grad()
    with paddle.no_grad():
        out1 = layer(coord, atype, box)
    loss1 = _loss(out1, labels, 8)
    assert float(loss1) < float(loss0)
    # write back: the EnergyModel now gives the layer's numbers with the NumPy backend
    layer.write_back()
    ref = model.evaluate(coord, atype, box)
    for key in ("energy", "force", "virial"):
        assert rel_err(out1[key].numpy(), ref[key]) <= TOL["float64"], key


def test_layer_loss_gradient_same_in_both_force_modes():
    """d(energy+force loss)/d(params): analytic forces (one backward) vs autodiff forces (create_graph)."""
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    model, args, ref, _ = system("pbc-triclinic-two-side")
    labels = {k: v * 1.1 for k, v in ref.items()}
    grads = []
    for mode in ("analytic", "autodiff"):
        layer = PaddleEnergyModel(model, force_mode=mode)
        _loss(layer(**args), labels, 10).backward()
        grads.append({n: p.grad.numpy() for n, p in layer.named_parameters()})
    for n in grads[0]:
        assert rel_err(grads[1][n], grads[0][n]) <= 1e-10, n
