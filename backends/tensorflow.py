"""TensorFlow backend: the core on ``tf.Tensor`` through the shim :mod:`dpcore.backends.tf_namespace`.

* gradients: ``tf.GradientTape`` over pytrees (nested dicts / lists / tuples of tensors);
* ``jit``: ``tf.function`` (graph mode; pass ``jit_compile=True`` for XLA); ``lower``/``compile_lowered``: the
  quick first program of a training step is its Python function run eagerly (:mod:`dpcore.train.tiers`);
* devices: ``None`` (TF's placement), ``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"cuda:0"`` or a TF device
  string such as ``"/GPU:0"``;
* settings applied when the backend object is created: TensorFloat-32 matmuls off (float32 stays
  float32 on Ampere+ GPUs).  Threads are left alone; TF's oneDNN CPU kernels are controlled by the
  environment variable ``TF_ENABLE_ONEDNN_OPTS`` (read at import, recorded in ``settings``).
  NumPy behaviour (``experimental_enable_numpy_behavior``, global) is never enabled.
* ``use_default_pf`` is not supported (DeePMD-kit's TensorFlow backend has no per-atom prefactor default).
"""

from __future__ import annotations

import os

import numpy as np

from .frameworks import load_framework as _load_framework
from .frameworks import quiet_calls

_load_framework("tensorflow")  # quiet, and refused where it would crash the process
import tensorflow as tf  # noqa: E402

from . import tf_namespace
from dpcore.xp import gather_rows, gather_rows_vjp, namespace_name, register_gather_rows, register_namespace

from .base import Backend
from .registry import info as backend_info
from .table_kernel import register as register_table_kernel
from .table_kernel_tf import TFTableKernel
from .tf_calls import ConcreteCalls
from .tree import leaves as _tree_leaves
from .tree import rebuild as _rebuild

_ARRAY_TYPES = (tf.Tensor, tf.Variable)


def tf_device_name(device) -> str | None:
    """TF device string for ``None`` / ``"cpu"`` / ``"gpu:1"`` / ``"cuda:0"`` / ``"/GPU:0"``."""
    if device is None or str(device) == "":
        return None
    name = str(device)
    if name.startswith("/"):
        return name
    kind, _, index = name.lower().partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    if kind not in ("cpu", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"tensorflow backend: unknown device {device!r}; use 'cpu', 'gpu', 'gpu:N' or '/GPU:N'")
    return f"/{kind.upper()}:{index or 0}"


def _differentiable(leaf) -> bool:
    return isinstance(leaf, _ARRAY_TYPES) and leaf.dtype.is_floating


def _gather_rows(x, index, inverse):
    """dpcore.xp.gather_rows with its gradient by gathers at ``inverse``: TensorFlow's gradient of a gather is a
    segment sum, which XLA on CPU runs as a loop over its rows (see backends/jax.py)."""

    @tf.custom_gradient
    def gather(x):
        return gather_rows(tf_namespace, x, index), lambda gy: gather_rows_vjp(tf_namespace, gy, index.shape.rank - 1,
                                                                           inverse)

    return gather(x)


register_gather_rows(namespace_name(tf_namespace), _gather_rows)


def _xla_around_host_calls(f):
    """``f`` traced with every operation but the host calls marked for XLA (``jit_scope``): TensorFlow compiles the
    marked operations between two host calls as one cluster (the water frame's compressed forward 29 -> 25 ms)."""
    def compile_op(node_def) -> bool:
        return node_def.op not in ("PyFunc", "PyFuncStateless", "EagerPyFunc")

    def traced(*args, **kwargs):
        with tf.xla.experimental.jit_scope(compile_ops=compile_op):
            return f(*args, **kwargs)

    return traced


class TensorFlowBackend(Backend):
    name = "tensorflow"
    info = backend_info("tensorflow")
    capabilities = info.capabilities

    def __init__(self, device=None):
        super().__init__(device)
        self.tf_device = tf_device_name(device)
        tf.config.experimental.enable_tensor_float_32_execution(False)
        for array_type in _ARRAY_TYPES:
            register_namespace(array_type, tf_namespace)
        self.settings = {
            "tensorflow_version": tf.__version__,
            "tensor_float_32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "numpy_behavior": False,
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "device": self.tf_device or "default placement",
            # compressed models: the fused kernel, in plain-graph forwards (backends/table_kernel_tf.py)
            "table_kernel": register_table_kernel(namespace_name(tf_namespace), TFTableKernel),
        }

    def namespace(self):
        return tf_namespace

    def asarray(self, x):
        if isinstance(x, _ARRAY_TYPES):
            return x
        with tf_namespace._on(self.tf_device):
            return tf.constant(np.asarray(x))

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, _ARRAY_TYPES):
            return np.asarray(x.numpy())
        return np.asarray(x)

    def value_and_grad(self, f, argnums=(0,), has_aux=False, create_graph=False):
        """``g(*args) -> (value, grads)`` (or ``((value, aux), grads)``) with ``tf.GradientTape``.

        ``grads`` mirrors each differentiated argument's pytree (None for non-float leaves).  TF records
        a gradient computation on every enclosing tape, so the gradients are differentiable whenever an
        outer tape watches their inputs (``create_graph=True`` is the documented way to rely on it; with
        ``False`` they are not cut either, since cutting would turn a second derivative into silent zeros).
        """
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

        def g(*args):
            args = list(args)
            for i in nums:
                args[i] = self.tree_asarray(args[i])
            leaves = [_tree_leaves(args[i]) for i in nums]
            sources = [leaf for ls in leaves for leaf in ls if _differentiable(leaf)]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(sources)
                out = f(*args)
            value = out[0] if has_aux else out
            flat = tape.gradient(value, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            flat = iter([tf.convert_to_tensor(gr) for gr in flat])  # IndexedSlices (from gather) -> dense
            grads = tuple(_rebuild(args[i], iter([next(flat) if _differentiable(leaf) else None for leaf in ls]))
                          for i, ls in zip(nums, leaves))
            return out, (grads[0] if isinstance(argnums, int) else grads)

        return g

    def jit(self, f, **kwargs):
        """``tf.function(f, autograph=False, **kwargs)``: traced once per input signature (static shapes, Python
        args by value).  dpcore's array code has no tensor-dependent Python control flow (it runs under
        ``jax.jit`` too), so AutoGraph's source rewriting is skipped: it was 2/3 of the first training step's
        time on the water example.  ``xla_around_host_calls=True``: a plain graph whose operations XLA compiles in
        clusters, all but the host calls (``tf.numpy_function``, which XLA cannot call: the fused table kernel).  XLA-compiled ones (``jit_compile=True``) drop TensorFlow's compile-cache
        messages from stderr (:func:`~dpcore.backends.frameworks.quiet_calls`)."""
        xla_around = kwargs.pop("xla_around_host_calls", False)
        if xla_around:
            f = _xla_around_host_calls(f)
        fn = tf.function(f, **{"autograph": False, **kwargs})
        # after a signature's first calls, its concrete function with the flat tensors (backends/tf_calls.py)
        return ConcreteCalls(fn, quiet_calls(self.name, fn) if kwargs.get("jit_compile") or xla_around else fn)

    def lower(self, fn, args: tuple):
        """TensorFlow traces and compiles a function at its first call: the "lowered" step is the jitted function
        with the arguments of its first call."""
        return _FirstCall(fn, args)

    def compile_lowered(self, lowered, options: dict | None = None):
        """With ``options`` (the registry's ``quick_compile``) the quick program: ``eager=True``, the step's Python
        function run op by op (nothing to trace or compile: the water step's first call takes ~0.8 s against ~3 s
        to trace it as a graph and ~11 s with XLA; then ~0.6 s/step against 0.21 as a graph and 0.15 with XLA),
        other options, the same function as a ``tf.function`` with them.  Without, the XLA function itself, called
        here once on the first call's arguments so that it is traced and compiled now (the results of that call
        are dropped: the steps are pure functions of their arguments)."""
        if options:
            fn = _python_function(lowered.fn)
            return fn if options.get("eager") else self.jit(fn, **options)
        args, lowered.args = lowered.args, None
        lowered.fn(*args)
        return lowered.fn


class _FirstCall:
    """A jitted function and the arguments of its first call (:meth:`TensorFlowBackend.lower`)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args


def _python_function(fn):
    """The Python function of a :meth:`TensorFlowBackend.jit` result (a ``tf.function``, maybe wrapped by
    :func:`~dpcore.backends.frameworks.quiet_calls`)."""
    while not hasattr(fn, "python_function"):
        fn = fn.__wrapped__
    return fn.python_function


BACKEND_CLASS = TensorFlowBackend
