"""An array-API namespace over TensorFlow tensors: exactly the subset of ``namespace_subset.py``.

array-api-compat does not cover TensorFlow, and ``tf.experimental.numpy`` changes global
state (``experimental_enable_numpy_behavior``), so the core's functions are written here on
plain ``tf`` ops with array-API semantics:

* defaults: Python floats -> float64, Python ints -> int64 (``asarray``, ``arange``, ``zeros``);
* Python scalars in ``where`` / ``clip`` / ``logaddexp`` take the dtype of the array argument
  (``tf.where(c, 1.0, x)`` would otherwise make a float32 constant);
* arrays of different precision of the same kind are promoted (``concat``, ``where``, ``matmul``,
  ``logaddexp``); mixing kinds (bool / integer / float) raises ``TypeError`` like array-api-strict;
* ``sum`` of an int32 array is int64 (default integer), ``take`` accepts negative indices,
  ``matmul`` accepts 1-D operands, ``logaddexp`` is overflow-free with the exact symmetric gradient.

The extensions ``dpcore_segment_sum`` (``tf.math.unsorted_segment_sum``) and ``dpcore_device`` are
used by :mod:`dpcore.xp`.  Device arguments are TF device strings (``"/CPU:0"``), applied with
``tf.device``; ``None`` or ``""`` means TF's default placement.
"""

from __future__ import annotations

import builtins
import contextlib
import math

import numpy as np

from .frameworks import load_framework as _load_framework

_load_framework("tensorflow")  # quiet, and refused where it would crash the process
import tensorflow as tf  # noqa: E402

__array_api_version__ = "2023.12"

bool = tf.bool  # noqa: A001  (array-API dtype names)
int32 = tf.int32
int64 = tf.int64
float16 = tf.float16  # mixed-precision compute dtypes (training.mixed_precision)
bfloat16 = tf.bfloat16
float32 = tf.float32
float64 = tf.float64

_KIND = {tf.bool: "bool", tf.int32: "int", tf.int64: "int", tf.float16: "float", tf.bfloat16: "float",
         tf.float32: "float", tf.float64: "float"}
_RANK = {tf.bool: 0, tf.int32: 1, tf.int64: 2, tf.float16: 0, tf.bfloat16: 0, tf.float32: 1, tf.float64: 2}


def _is_array(x) -> builtins.bool:
    return isinstance(x, (tf.Tensor, tf.Variable))


def _on(device):
    return tf.device(device) if device else contextlib.nullcontext()


def _result_type(*dtypes):
    """Array-API promotion among the supported dtypes (same kind only)."""
    kinds = {_KIND.get(d) for d in dtypes}
    if None in kinds or len(kinds) > 1:
        raise TypeError(f"no array-API type promotion between {sorted(str(d) for d in dtypes)}")
    return max(dtypes, key=lambda d: _RANK[d])


def _scalar_dtype(value, like):
    """dtype for a Python scalar combined with an array of dtype ``like`` (array-API scalar rules)."""
    kind = _KIND[like]
    if isinstance(value, builtins.bool):
        ok = kind == "bool"
    elif isinstance(value, int):
        ok = kind in ("int", "float")
    else:
        ok = kind == "float"
    if not ok:
        raise TypeError(f"Python scalar {value!r} cannot be combined with a {like.name} array")
    return like


def _promote(*args):
    """Tensors of ``args`` cast to their common dtype; Python scalars converted to that dtype."""
    arrays = [a for a in args if _is_array(a)]
    if not arrays:
        raise TypeError("at least one argument must be an array")
    dt = _result_type(*[a.dtype for a in arrays])
    out = []
    for a in args:
        if _is_array(a):
            out.append(a if a.dtype == dt else tf.cast(a, dt))
        else:
            out.append(tf.constant(a, dtype=_scalar_dtype(a, dt)))
    return out


# -- creation ---------------------------------------------------------------------------------------------
def asarray(obj, /, *, dtype=None, device=None, copy=None):
    """Tensor from a tensor, NumPy array, Python scalar or nested sequence (float64 / int64 defaults)."""
    with _on(device):
        if _is_array(obj):
            x = tf.convert_to_tensor(obj)
            if dtype is not None and x.dtype != dtype:
                x = tf.cast(x, dtype)
            elif device:
                x = tf.identity(x)
            return x
        arr = np.asarray(obj, dtype=None if dtype is None else dtype.as_numpy_dtype)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"cannot make a TensorFlow array of {arr.dtype} values")
        return tf.constant(arr)


def arange(start, /, stop=None, step=1, *, dtype=None, device=None):
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, int) for v in (start, stop, step)) else float64
    with _on(device):
        if math.ceil((stop - start) / step) <= 0:  # tf.range raises on empty ranges
            return tf.zeros((0,), dtype=dtype)
        return tf.range(start, stop, step, dtype=dtype)


def zeros(shape, *, dtype=None, device=None):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    with _on(device):
        return tf.zeros(shape, dtype=float64 if dtype is None else dtype)


def zeros_like(x, /, *, dtype=None, device=None):
    with _on(device):
        return tf.zeros_like(x, dtype=dtype)


def ones_like(x, /, *, dtype=None, device=None):
    with _on(device):
        return tf.ones_like(x, dtype=dtype)


# -- data types and shapes -----------------------------------------------------------------------------------
def astype(x, dtype, /, *, copy=True, device=None):
    with _on(device):
        if x.dtype == dtype:  # tensors are immutable: no copy needed (variables are read)
            return tf.identity(x) if device else tf.convert_to_tensor(x)
        return tf.cast(x, dtype)


def reshape(x, /, shape, *, copy=None):
    return tf.reshape(x, tuple(shape))


def broadcast_to(x, /, shape):
    return tf.broadcast_to(x, tuple(shape))


def concat(arrays, /, *, axis=0):
    arrays = _promote(*arrays)
    if axis is None:
        arrays, axis = [tf.reshape(a, (-1,)) for a in arrays], 0
    return tf.concat(arrays, axis=axis)


def matrix_transpose(x, /):
    if x.shape.rank < 2:
        raise ValueError(f"matrix_transpose needs an array of rank >= 2, got shape {tuple(x.shape)}")
    return tf.linalg.matrix_transpose(x)


def take(x, indices, /, *, axis=None):
    if axis is None:
        if x.shape.rank != 1:
            raise ValueError("take: axis is required unless x is one-dimensional")
        axis = 0
    n = tf.shape(x, out_type=indices.dtype)[axis]
    return tf.gather(x, tf.where(indices < 0, indices + n, indices), axis=axis)


# -- element-wise ------------------------------------------------------------------------------------------------
def abs(x, /):  # noqa: A001
    return tf.math.abs(x)


def exp(x, /):
    return tf.math.exp(x)


def sqrt(x, /):
    return tf.math.sqrt(x)


def tanh(x, /):
    return tf.math.tanh(x)


def where(condition, x1, x2, /):
    x1, x2 = _promote(x1, x2)
    return tf.where(condition, x1, x2)


def _bound(x, value):
    if _is_array(value):
        return tf.cast(value, x.dtype)
    return tf.constant(value, dtype=_scalar_dtype(value, x.dtype))


def clip(x, /, min=None, max=None):  # noqa: A002
    """``minimum(maximum(x, min), max)`` in the dtype of ``x`` (bounds None: no bound)."""
    if min is not None:
        x = tf.math.maximum(x, _bound(x, min))
    if max is not None:
        x = tf.math.minimum(x, _bound(x, max))
    return x


@tf.custom_gradient
def _logaddexp(a, b):
    m = tf.math.maximum(a, b)
    same_inf = tf.math.is_inf(m) & tf.math.equal(a, b)
    y = tf.where(same_inf, m, m + tf.math.log1p(tf.math.exp(-tf.math.abs(a - b))))

    def grad(gy):  # d/da = sigmoid(a - b), d/db = sigmoid(b - a): 1/2 each at a == b, differentiable again
        return gy * tf.math.sigmoid(a - b), gy * tf.math.sigmoid(b - a)

    return y, grad


def logaddexp(x1, x2, /):
    """log(exp(x1) + exp(x2)) without overflow (floating point inputs; Python scalars allowed)."""
    x1, x2 = _promote(x1, x2)
    if _KIND[x1.dtype] != "float":
        raise TypeError(f"logaddexp needs floating-point arrays, got {x1.dtype.name}")
    shape = tf.broadcast_static_shape(x1.shape, x2.shape)
    return _logaddexp(tf.broadcast_to(x1, shape), tf.broadcast_to(x2, shape))


# -- linear algebra and reductions -----------------------------------------------------------------------------
def matmul(x1, x2, /):
    x1, x2 = _promote(x1, x2)
    v1, v2 = x1.shape.rank == 1, x2.shape.rank == 1
    out = tf.linalg.matmul(x1[None, :] if v1 else x1, x2[:, None] if v2 else x2)
    if v2:
        out = out[..., 0]
    if v1:
        out = out[..., 0, :] if not v2 else out[..., 0]
    return out


def sum(x, /, *, axis=None, dtype=None, keepdims=False):  # noqa: A001
    if dtype is None:
        dtype = {tf.bool: int64, tf.int32: int64}.get(x.dtype, x.dtype)
    if x.dtype != dtype:
        x = tf.cast(x, dtype)
    return tf.math.reduce_sum(x, axis=axis, keepdims=keepdims)


# -- dpcore extensions (see dpcore/xp.py) ------------------------------------------------------------------------
def dpcore_segment_sum(values, index, num_segments: int):
    """(m, c) rows scatter-added into (num_segments, c) rows by ``index`` (m,)."""
    return tf.math.unsorted_segment_sum(values, index, num_segments)


def dpcore_device(x):
    """TF device string of ``x`` ("" for symbolic tensors inside ``tf.function``: default placement)."""
    return x.device
