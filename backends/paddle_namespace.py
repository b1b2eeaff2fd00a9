"""Array-API namespace shim for Paddle: exactly the subset of :mod:`dpcore.backends.namespace_subset`.

array-api-compat does not cover Paddle, so the Paddle backend registers this module with
:func:`dpcore.xp.register_namespace` (when the backend object is created, never at import).
Each function follows the array API standard (2023.12) for the dtypes bool, int32, int64,
float32, float64; where Paddle differs, the difference is fixed here:

* ``reshape``: Paddle reads a 0 in the target shape as "copy this input dimension";
  the standard means an empty axis.
* ``concat``/``where``/``matmul`` with mixed float32/float64 inputs: Paddle refuses, or casts to the
  FIRST operand's dtype (``float32 @ float64 -> float32``); here they promote (to float64).
* ``where`` with a Python scalar: Paddle makes a float32 tensor of it (and logs a promotion warning);
  here the scalar takes the other operand's dtype.
* ``logaddexp``: Paddle's returns NaN when both inputs are the same infinity; here it is exact.
* ``take``: ``paddle.index_select`` (1-D indices, ``axis`` may be omitted for 1-D ``x``).
* creation functions accept ``device=`` as a string ("cpu", "gpu:0") or a Paddle place.

Default dtypes are Paddle's (``paddle.get_default_dtype()``, float32 unless the user changed it)
for Python floats, int64 for Python ints.  Operators (``+``, ``@``, ``x[..., None]``, ...) are Paddle's
own; see the module docstring of :mod:`dpcore.backends.paddle` for the ones that deviate.
"""

from __future__ import annotations

import builtins as _builtins

import numpy as _np

from .frameworks import load_framework as _load_framework

_load_framework("paddle")  # quiet, and refused where it would crash the process
import paddle as _paddle  # noqa: E402

__array_api_version__ = "2023.12"
__all__ = [
    "abs", "arange", "asarray", "astype", "broadcast_to", "clip", "concat", "exp", "logaddexp",
    "matmul", "matrix_transpose", "ones_like", "reshape", "sqrt", "sum", "take", "tanh", "where",
    "zeros", "zeros_like", "bool", "int32", "int64", "float32", "float64", "float16", "bfloat16",
    "dpcore_segment_sum", "dpcore_device",
]

_SCALAR = (_builtins.bool, _builtins.int, _builtins.float)
_KIND = {_paddle.bool: ("b", 1), _paddle.int32: ("i", 4), _paddle.int64: ("i", 8),
         _paddle.float16: ("f", 2), _paddle.bfloat16: ("f", 2), _paddle.float32: ("f", 4), _paddle.float64: ("f", 8)}


# -- helpers (private) ------------------------------------------------------------------------------------
def _device_key(device) -> str | None:
    """Normalised device name ("cpu", "gpu:0") of a string or Paddle place; None for the default device."""
    if device is None:
        return None
    s = str(device).lower().strip()
    if s.startswith("place(") and s.endswith(")"):
        s = s[6:-1]
    if s.startswith("cuda"):
        s = "gpu" + s[4:]
    if s == "gpu":
        s = "gpu:0"
    if s == "cpu" or (s.startswith("gpu:") and s[4:].isdigit()):
        return s
    raise ValueError(f"unknown Paddle device {device!r}; expected 'cpu', 'gpu', 'gpu:N' or a Paddle place")


def _place(device):
    """A Paddle place for ``device`` (string or place), or None."""
    key = _device_key(device)
    if key is None:
        return None
    if key != "cpu" and not _paddle.is_compiled_with_cuda():
        raise RuntimeError(f"Paddle device {device!r} asked for, but this Paddle build has no GPU support")
    return _paddle.CPUPlace() if key == "cpu" else _paddle.CUDAPlace(_builtins.int(key[4:]))


def _to_device(x, device):
    if device is None or _device_key(device) == _device_key(x.place):
        return x
    return x.to(_place(device))


def _promote(*dtypes):
    """Result dtype of the standard's promotion table within one kind; mixed kinds are an error."""
    if any(d not in _KIND for d in dtypes):
        raise TypeError(f"dtypes outside the dpcore subset (bool, int32, int64, float32, float64): {dtypes}")
    kinds = {_KIND[d][0] for d in dtypes}
    if len(kinds) > 1:
        raise TypeError(f"no array-API type promotion between {sorted(str(d) for d in dtypes)}")
    return _builtins.max(dtypes, key=lambda d: _KIND[d][1])


def _shape(shape) -> list:
    return [_builtins.int(shape)] if isinstance(shape, _SCALAR) else [_builtins.int(s) for s in shape]


def _default_dtype(value):
    if isinstance(value, _builtins.bool):
        return _paddle.bool
    if isinstance(value, _builtins.int):
        return _paddle.int64
    return _paddle.get_default_dtype()


def _as_operand(value, like):
    """Python scalar -> 0-d tensor of ``like``'s dtype and place (array operands unchanged)."""
    if isinstance(value, _SCALAR):
        return _to_device(_paddle.full([], value, dtype=like.dtype), like.place)
    return value


def _binary(x1, x2):
    """Both operands as tensors of one (promoted) dtype."""
    if isinstance(x1, _SCALAR) and isinstance(x2, _SCALAR):
        x1 = asarray(x1)
    if isinstance(x1, _SCALAR):
        x1 = _as_operand(x1, x2)
    x2 = _as_operand(x2, x1)
    if x1.dtype != x2.dtype:
        dt = _promote(x1.dtype, x2.dtype)
        x1, x2 = astype(x1, dt, copy=False), astype(x2, dt, copy=False)
    return x1, x2


# -- creation ----------------------------------------------------------------------------------------------
def asarray(obj, /, *, dtype=None, device=None, copy=None):
    """Tensor from a Paddle tensor (returned as is, not detached, unless dtype/device/copy ask otherwise),
    a NumPy array (dtype kept), a Python scalar or a nested list."""
    if isinstance(obj, _paddle.Tensor):
        out = obj if dtype is None or obj.dtype == dtype else obj.astype(dtype)
        out = _to_device(out, device)
        if out is obj and copy:
            out = obj.clone()
        elif out is not obj and copy is False:
            raise ValueError("asarray(copy=False) would need a copy (dtype or device change)")
        return out
    if copy is False:
        raise ValueError("asarray(copy=False) cannot share memory with a non-Paddle object")
    if isinstance(obj, (_np.ndarray, _np.generic)):  # dtype kept (np.float64 is also a Python float)
        obj = _np.asarray(obj)
        obj = obj if obj.flags.c_contiguous else obj.copy(order="C")  # Paddle needs C-contiguous memory
    elif dtype is None and isinstance(obj, _SCALAR):
        dtype = _default_dtype(obj)
    place = _place(device)
    return _paddle.to_tensor(obj, dtype=dtype, place=place) if place is not None else _paddle.to_tensor(obj, dtype=dtype)


def arange(start, /, stop=None, step=1, *, dtype=None, device=None):
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        ints = all(isinstance(v, _builtins.int) for v in (start, stop, step))
        dtype = _paddle.int64 if ints else _paddle.get_default_dtype()
    return _to_device(_paddle.arange(start, stop, step, dtype=dtype), device)


def zeros(shape, *, dtype=None, device=None):
    dtype = _paddle.get_default_dtype() if dtype is None else dtype
    return _to_device(_paddle.zeros(_shape(shape), dtype=dtype), device)


def zeros_like(x, /, *, dtype=None, device=None):
    return _to_device(_paddle.zeros_like(x, dtype=dtype), device)


def ones_like(x, /, *, dtype=None, device=None):
    return _to_device(_paddle.ones_like(x, dtype=dtype), device)


# -- dtype and shape ---------------------------------------------------------------------------------------
def astype(x, dtype, /, *, copy=True, device=None):
    if x.dtype != dtype:
        out = x.astype(dtype)
    else:
        out = x.clone() if copy else x
    return _to_device(out, device)


def reshape(x, /, shape, *, copy=None):
    """Standard reshape: a 0 in ``shape`` is an empty axis (Paddle would copy the input's dimension)."""
    shape = _shape(shape)
    if 0 not in shape:
        return _paddle.reshape(x, shape)
    if x.size != 0:
        raise ValueError(f"cannot reshape an array of size {x.size} into shape {tuple(shape)}")
    shape = [0 if s == -1 else s for s in shape]
    out = _paddle.reshape(x, shape)
    return out if list(out.shape) == shape else _to_device(_paddle.zeros(shape, dtype=x.dtype), x.place)


def broadcast_to(x, /, shape):
    return _paddle.broadcast_to(x, _shape(shape))


def matrix_transpose(x, /):
    if x.ndim < 2:
        raise ValueError(f"matrix_transpose needs an array with at least 2 dimensions, got {x.ndim}")
    perm = list(range(x.ndim))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return _paddle.transpose(x, perm)


def concat(arrays, /, *, axis=0):
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [_paddle.reshape(a, [-1]) for a in arrays], 0
    dt = _promote(*[a.dtype for a in arrays])
    return _paddle.concat([astype(a, dt, copy=False) for a in arrays], axis=axis)


def take(x, indices, /, *, axis=None):
    if axis is None:
        if x.ndim != 1:
            raise ValueError("take: axis is required for arrays with more than one dimension")
        axis = 0
    return _paddle.index_select(x, indices, axis=axis)


# -- element-wise ------------------------------------------------------------------------------------------
def abs(x, /):
    return _paddle.abs(x)


def exp(x, /):
    return _paddle.exp(x)


def sqrt(x, /):
    return _paddle.sqrt(x)


def tanh(x, /):
    return _paddle.tanh(x)


def logaddexp(x1, x2, /):
    """``log(exp(x1) + exp(x2))`` = ``max + log1p(exp(-|x1 - x2|))``; exact for equal infinities, gradient 1/2 at ties."""
    x1, x2 = _binary(x1, x2)
    d = _paddle.where(x1 == x2, _paddle.zeros_like(x1), x1 - x2)
    return _paddle.maximum(x1, x2) + _paddle.log1p(_paddle.exp(-_paddle.abs(d)))


def clip(x, /, min=None, max=None):
    if min is None and max is None:
        return x.clone()
    if not isinstance(min, (_paddle.Tensor, type(None))) and not isinstance(max, _paddle.Tensor):
        return _paddle.clip(x, min, max)
    out = x
    if min is not None:
        out = _paddle.maximum(out, astype(_as_operand(min, x), x.dtype, copy=False))
    if max is not None:
        out = _paddle.minimum(out, astype(_as_operand(max, x), x.dtype, copy=False))
    return out


def where(condition, x1, x2, /):
    x1, x2 = _binary(x1, x2)
    return _paddle.where(condition, x1, x2)


# -- linear algebra and reductions -------------------------------------------------------------------------
def matmul(x1, x2, /):
    x1, x2 = _binary(x1, x2)
    return _paddle.matmul(x1, x2)


def sum(x, /, *, axis=None, dtype=None, keepdims=False):
    """Sum; integer and bool inputs sum to int64 (the default integer), floats keep their dtype."""
    if dtype is None and _KIND.get(x.dtype, ("f", 0))[0] in "bi":
        dtype = _paddle.int64
    if isinstance(axis, tuple) and len(axis) == 0:
        return astype(x, x.dtype if dtype is None else dtype)
    if isinstance(axis, tuple):
        axis = list(axis)
    return _paddle.sum(x, axis=axis, dtype=dtype, keepdim=keepdims)


# -- dpcore extensions -------------------------------------------------------------------------------------
def dpcore_segment_sum(values, index, n):
    """Scatter-add rows: values (m, c), index (m,) in [0, n) -> (n, c); differentiable (``paddle.index_add``)."""
    out = _paddle.zeros([_builtins.int(n)] + list(values.shape[1:]), dtype=values.dtype)
    return _paddle.index_add(_to_device(out, values.place), index, 0, values)


def dpcore_device(x):
    """The Paddle place of ``x`` (accepted by every ``device=`` argument of this namespace)."""
    return x.place


# dtypes last: inside this module ``bool`` etc. then name Paddle dtypes (helpers above use ``_builtins``)
bool = _paddle.bool
int32 = _paddle.int32
int64 = _paddle.int64
float16 = _paddle.float16  # mixed-precision compute dtypes (training.mixed_precision)
bfloat16 = _paddle.bfloat16
float32 = _paddle.float32
float64 = _paddle.float64
