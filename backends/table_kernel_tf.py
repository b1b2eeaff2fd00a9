"""The fused table kernel (:mod:`dpcore.backends.table_kernel`) in TensorFlow: ``tf.numpy_function`` calls.

They run eagerly and in graphs, not inside XLA, so a compressed model's forward is a plain graph where the kernel
is registered (registry ``kernel_forward_jit``).  Each call has a ``tf.custom_gradient`` that differentiates the
array version (:mod:`dpcore.tabulated`) under TensorFlow's tapes, so autodiff forces and second derivatives still
work; the analytic forces call the backward kernel directly.  Tensors on a GPU use the array version.
"""

from __future__ import annotations

import tensorflow as tf

from dpcore.tabulated import tabulated_contraction, tabulated_contraction_vjp

from . import table_kernel


def _on_cpu(*tensors) -> bool:
    return all("GPU" not in (getattr(t, "device", "") or "").upper() for t in tensors)


def _arrays_gradient(fn, inputs, upstream):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(inputs)
        out = fn(*inputs)
    return tape.gradient(out, inputs, output_gradients=upstream, unconnected_gradients=tf.UnconnectedGradients.ZERO)


class TFTableKernel:
    """The fast path registered for TensorFlow tensors (``dpcore.xp.kernel(xp, "tabulated_contraction")``)."""

    @staticmethod
    def contract(table, geometry, r):
        if not _on_cpu(table, r) or r.dtype != table.dtype:
            return None
        info = table_kernel.table_info(geometry)

        @tf.custom_gradient
        def contract(table, r):
            out = tf.numpy_function(lambda t, x: table_kernel.contract(t, geometry, x), [table, r], table.dtype,
                                    stateful=False)
            out.set_shape(tuple(r.shape[:-2]) + (4, table.shape[-1]))
            return out, lambda gA: _arrays_gradient(lambda t, x: tabulated_contraction(t, info, x)[0], [table, r], gA)

        return contract(table, r)

    @staticmethod
    def contract_vjp(table, geometry, r, gA):
        info = table_kernel.table_info(geometry)
        gA = tf.cast(gA, table.dtype)

        @tf.custom_gradient
        def contract_vjp(table, r, gA):
            out = tf.numpy_function(lambda t, x, g: table_kernel.contract_vjp(t, geometry, x, g), [table, r, gA],
                                    table.dtype, stateful=False)
            out.set_shape(r.shape)

            def grad(gr):
                def arrays(t, x, g):
                    return tabulated_contraction_vjp(g, tabulated_contraction(t, info, x)[1])

                return _arrays_gradient(arrays, [table, r, gA], gr)

            return out, grad

        return contract_vjp(table, r, gA)
