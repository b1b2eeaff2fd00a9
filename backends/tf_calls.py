"""Calls of a ``tf.function`` through its concrete functions, one per input signature.

A ``tf.function`` call works out the trace type of every argument before it finds its graph: ~1 ms for the 61
tensors of a water forward (parameters and pair data), 5% of a compressed model's evaluation.  After the first
calls of a signature (dpcore's key: the nested structure, shapes and dtypes, and Python values), this calls the
concrete function TensorFlow traced for it with the flat tensors.  The first ``WARM_CALLS`` calls of a signature
go through the ``tf.function`` itself (and the caller's wrapper, :func:`dpcore.backends.frameworks.quiet_calls`):
it traces, and XLA compiles and loads its cache then, not later.
"""

from __future__ import annotations

from .frameworks import load_framework as _load_framework

_load_framework("tensorflow")  # quiet, and refused where it would crash the process
import tensorflow as tf  # noqa: E402

WARM_CALLS = 3  # XLA clusters of a plain graph compile on their first runs: those keep the stderr filter


class ConcreteCalls:
    """``fn(*args)`` (positional, nested dicts/lists/tuples of tensors, None or Python scalars), fast after warm-up.

    ``function`` the ``tf.function``; ``wrapped`` what the first calls go through (``function`` or a wrapper of
    it), also ``__wrapped__`` for code that looks for the ``tf.function``.  Keyword calls always go through it.
    """

    def __init__(self, function, wrapped=None):
        self.function, self.__wrapped__ = function, wrapped or function
        self._concrete: dict = {}

    def __call__(self, *args, **kwargs):
        if kwargs:
            return self.__wrapped__(*args, **kwargs)
        try:
            key = _signature(args)
            entry = self._concrete.get(key)
        except TypeError:  # a leaf that is no tensor and no hashable value (a NumPy array): TensorFlow's call
            return self.__wrapped__(*args)
        if entry is None or entry[1] is None:
            out = self.__wrapped__(*args)
            count = 1 if entry is None else entry[0] + 1
            concrete = self.function.get_concrete_function(*args) if count == WARM_CALLS else None
            # a TensorFlow whose concrete functions take no flat tensors (before 2.14): its own calls for good
            self._concrete[key] = (count, concrete if hasattr(concrete, "_call_flat") else None)
            return out
        concrete = entry[1]
        tensors = [x for x in tf.nest.flatten(args) if isinstance(x, (tf.Tensor, tf.Variable))]
        return concrete._call_flat(tensors, concrete.captured_inputs)


def _signature(tree):
    """A hashable key of a nested argument: structure, tensor shapes and dtypes, other leaves by value."""
    if isinstance(tree, dict):
        return ("d",) + tuple((k, _signature(tree[k])) for k in sorted(tree))
    if isinstance(tree, (list, tuple)):
        return ("l" if isinstance(tree, list) else "t",) + tuple(_signature(x) for x in tree)
    if isinstance(tree, (tf.Tensor, tf.Variable)):
        return (tuple(tree.shape), tree.dtype)
    return ("v", type(tree), tree)
