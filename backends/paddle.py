"""Paddle backend: a namespace shim, conversion, places and ``paddle.grad``-based ``value_and_grad``.

``import paddle`` below is the framework (absolute import; this module is ``dpcore.backends.paddle``).
Creating :class:`PaddleBackend` registers :mod:`dpcore.backends.paddle_namespace` for ``paddle.Tensor``
in :mod:`dpcore.xp`; nothing global is changed (no ``paddle.set_device``, default dtype untouched):
arrays are placed explicitly on ``device`` ("cpu", "gpu", "gpu:N"; None = Paddle's current device).

Paddle operators that deviate from the array API (the shim cannot reach operators; the core avoids them):

* ``x.shape`` is a ``paddle.Size`` (a list subclass, equal to the tuple): ``tuple + x.shape`` fails,
  ``tuple(x.shape)`` works;
* ``a @ b`` with float32/float64 operands returns the FIRST operand's dtype (silent downcast); ``a + b``
  promotes correctly (with a logged warning);
* a 0-d float64 tensor times a float32 tensor gives float32 (0-d tensors act like Python scalars);
* int64 tensor with a Python float gives the default float dtype (float32); mixed int32/int64 raises.

``jit`` is the identity.  Measured (Paddle 3.3.1 CPU, 12 atoms x 2 frames, analytic forces):
``paddle.jit.to_static`` in its default SOT mode compiles for ~11 s, then runs at 10.7 ms per call against
7.5 ms eager, and changes float64 forces by ~1e-7 relative (the env-mat switch already differs by ~4e-9),
breaking the 1e-10 agreement.  ``full_graph=True`` fails: traced values are ``paddle.pir.Value``, not
``paddle.Tensor`` (no namespace), and with the shim registered for them too, ``paddle.arange`` fails on
a traced shape in :func:`dpcore.xp.gather_rows`.
Analytic forces are also the faster training path here (fwd+bwd of an energy+force loss: 27 ms analytic,
42 ms autodiff with ``create_graph``).
"""

from __future__ import annotations

import numpy as np

from .frameworks import load_framework as _load_framework

_load_framework("paddle")  # quiet, and refused where it would crash the process
import paddle  # noqa: E402

from dpcore.xp import namespace_name, register_namespace

from . import paddle_namespace
from .base import Backend
from .registry import info as backend_info
from .table_kernel import TableKernel, register as register_table_kernel
from .tree import leaves as _tree_leaves
from .tree import rebuild as _rebuild


def _differentiable(x) -> bool:
    return isinstance(x, paddle.Tensor) and x.dtype in (paddle.float32, paddle.float64)


def _watched(x):
    """``x`` itself if it already takes part in a graph (never detached), else a grad-requiring alias."""
    if not _differentiable(x) or not x.stop_gradient:
        return x
    y = x.detach()
    y.stop_gradient = False
    return y


def _kernel_usable(*tensors) -> bool:
    grad = paddle.is_grad_enabled()
    return all(t.place.is_cpu_place() and (t.stop_gradient or not grad) for t in tensors)


class PaddleBackend(Backend):
    name = "paddle"
    info = backend_info("paddle")
    capabilities = info.capabilities

    def __init__(self, device=None):
        super().__init__(device)
        self.place = paddle_namespace._place(device)  # ValueError / RuntimeError for unknown / unavailable devices
        register_namespace(paddle.Tensor, paddle_namespace)
        self.settings = {
            "paddle_version": paddle.__version__,
            "device": str(self.place) if self.place is not None else paddle.get_device(),
            "default_dtype": paddle.get_default_dtype(),
            "set_device": False,
            "jit": "identity",
            "gradient": "paddle.grad",
            # compressed models: the fused kernel on CPU tensors outside autograd (backends/table_kernel.py)
            "table_kernel": register_table_kernel(namespace_name(paddle_namespace), TableKernel(
                _kernel_usable, lambda t: t.numpy(), lambda a, like: paddle.to_tensor(a, place=like.place))),
        }

    def namespace(self):
        return paddle_namespace

    def asarray(self, x):
        """NumPy array (or scalar) -> tensor on ``self.device``, dtype kept; Paddle tensors returned unchanged."""
        if isinstance(x, paddle.Tensor):
            return x
        return paddle_namespace.asarray(np.asarray(x), device=self.place)

    def to_numpy(self, x) -> np.ndarray:
        return x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x)

    def value_and_grad(self, f, argnums=(0,), has_aux=False, create_graph=False):
        """JAX-style ``value_and_grad`` with ``paddle.grad``; arguments may be nested dicts/lists of tensors.

        Gradients of non-float leaves are None; float leaves the value does not depend on get zeros.
        ``create_graph=True`` keeps the graph so that the gradients can be differentiated again.
        """
        single = isinstance(argnums, int)
        nums = (argnums,) if single else tuple(argnums)

        def g(*args):
            args = list(args)
            originals = {i: args[i] for i in nums}
            watched = {}
            for i in nums:
                watched[i] = [_watched(leaf) for leaf in _tree_leaves(args[i])]
                args[i] = _rebuild(args[i], iter(watched[i]))
            with paddle.set_grad_enabled(True):
                out = f(*args)
                value = out[0] if has_aux else out
                if not isinstance(value, paddle.Tensor) or value.size != 1:
                    raise TypeError(f"value_and_grad: f must return a scalar tensor, got {type(value).__name__} "
                                    f"of shape {getattr(value, 'shape', None)}")
                wrt = [t for i in nums for t in watched[i] if _differentiable(t)]
                grads = [None] * len(wrt)
                if wrt and not value.stop_gradient:
                    grads = paddle.grad([value], wrt, create_graph=create_graph, allow_unused=True)
            by_id = {id(t): (paddle.zeros_like(t) if gr is None else gr) for t, gr in zip(wrt, grads)}
            result = tuple(_rebuild(originals[i], iter([by_id.get(id(t)) for t in watched[i]])) for i in nums)
            return out, (result[0] if single else result)

        return g

    def jit(self, f):
        return f


BACKEND_CLASS = PaddleBackend
