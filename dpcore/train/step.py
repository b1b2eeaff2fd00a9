"""The compiled training step (gradient, clipping, Adam) and validation step, and their cache."""

from __future__ import annotations

import json
from collections import OrderedDict

from .optim import adam_update, clip_by_global_norm
from .params import merge_params


def _jit_options(backend, update: bool = False) -> dict:
    """Extra ``backend.jit`` arguments of a step, from the backend registry (``step_jit``, ``update_jit``)."""
    info = backend.info
    if info is None:
        return {}
    return {**info.step_jit, **(info.update_jit if update else {})}


def _objective(model_cfg: dict, loss, blocks, flags: tuple, forward=None):
    """``objective(trainable, frozen, inputs, labels, lr) -> (loss, metrics)`` of one batch."""
    from ..model import energy

    forward = energy.forward if forward is None else forward
    find = dict(flags)

    def objective(trainable, frozen, inputs, labels, lr):
        out = forward(model_cfg, merge_params(trainable, frozen), inputs, blocks)
        return loss(out, {**labels, **find}, lr)

    return objective


def _adam_settings(opt_cfg: dict) -> tuple:
    return opt_cfg.get("adam_beta1", 0.9), opt_cfg.get("adam_beta2", 0.999), opt_cfg.get("weight_decay", 0.0)


def make_step(backend, model_cfg: dict, loss, blocks, flags: tuple, opt_cfg: dict, gradient_max_norm=None,
              forward=None, lr_scale: float = 1.0):
    """``step(trainable, adam_state, frozen, inputs, labels, lr) -> (trainable, adam_state, loss, metrics)``.

    Gradient of ``loss(energy.forward(cfg, trainable + frozen, inputs, blocks), labels, lr)`` with
    respect to ``trainable`` (analytic forces inside), optional global-norm clipping, then Adam with
    learning rate ``lr * lr_scale`` (``learning_rate.scale_by_worker``; the loss prefactors follow ``lr``);
    compiled with ``backend.jit`` (``blocks`` and the ``find_*`` ``flags`` are static).  ``forward``:
    the model function (default :func:`dpcore.model.energy.forward`; spin: :func:`dpcore.model.spin.forward`).
    """
    b1, b2, wd = _adam_settings(opt_cfg)
    grad_fn = backend.value_and_grad(_objective(model_cfg, loss, blocks, flags, forward), argnums=0, has_aux=True)

    def step(trainable, adam_state, frozen, inputs, labels, lr):
        (value, metrics), grads = grad_fn(trainable, frozen, inputs, labels, lr)
        if gradient_max_norm:
            grads = clip_by_global_norm(grads, gradient_max_norm)
        trainable, adam_state = adam_update(trainable, grads, adam_state, lr if lr_scale == 1.0 else lr * lr_scale,
                                            b1, b2, 1e-8, wd)
        return trainable, adam_state, value, metrics

    return backend.jit(step, **_jit_options(backend, update=True))


def make_grad(backend, model_cfg: dict, loss, blocks, flags: tuple, forward=None):
    """``grad(trainable, frozen, inputs, labels, lr) -> ((loss, metrics), grads)``: the first half of
    :func:`make_step`, for a data-parallel worker whose gradients are summed before the update."""
    grad_fn = backend.value_and_grad(_objective(model_cfg, loss, blocks, flags, forward), argnums=0, has_aux=True)
    return backend.jit(grad_fn, **_jit_options(backend))


def make_update(backend, opt_cfg: dict, gradient_max_norm=None, lr_scale: float = 1.0):
    """``update(trainable, adam_state, grads, lr) -> (trainable, adam_state)``: the second half of
    :func:`make_step` (clipping, Adam with ``lr * lr_scale``)."""
    b1, b2, wd = _adam_settings(opt_cfg)

    def update(trainable, adam_state, grads, lr):
        if gradient_max_norm:
            grads = clip_by_global_norm(grads, gradient_max_norm)
        return adam_update(trainable, grads, adam_state, lr if lr_scale == 1.0 else lr * lr_scale, b1, b2, 1e-8, wd)

    return backend.jit(update, **_jit_options(backend, update=True))


def make_eval(backend, model_cfg: dict, loss, blocks, flags: tuple, forward=None):
    """``evaluate(params, inputs, labels, lr) -> (loss, metrics)`` without gradients (validation)."""
    from ..model import energy

    forward = energy.forward if forward is None else forward

    find = dict(flags)

    def evaluate(params, inputs, labels, lr):
        out = forward(model_cfg, params, inputs, blocks)
        return loss(out, {**labels, **find}, lr)

    return backend.jit(evaluate, **_jit_options(backend))


class StepCache:
    """Compiled step / eval functions keyed by (type blocks, find flags, input shape), shared by every
    :class:`Trainer` of the process with the same ``context`` (backend, device, model/loss/optimizer settings,
    kind), so a restart or a second run in one process does not compile again (jax/tf: tens of seconds).
    The shape ``(nf, nloc)`` of ``inputs["coord"]`` is part of the key (jax/tf compile once per shape), so
    :attr:`used`, the keys this instance handed out, counts its compilations (:mod:`dpcore.train.buckets`)."""

    _shared: OrderedDict = OrderedDict()
    MAX = 256  # one entry per (batch shape, label set); eviction would recompile every time

    def __init__(self, factory, context: tuple):
        self.factory, self.context = factory, context
        self.used: set = set()

    def get(self, blocks, flags, inputs=None):
        shape = () if inputs is None else tuple(int(n) for n in inputs["coord"].shape[:2])
        key = (self.context, blocks, flags, shape)
        self.used.add(key[1:])
        fn = self._shared.pop(key, None)
        if fn is None:
            fn = self.factory(blocks, flags)
        self._shared[key] = fn
        while len(self._shared) > self.MAX:
            self._shared.popitem(last=False)
        return fn


def step_context(backend, *parts) -> tuple:
    return (backend.name, str(backend.device), id(backend)) + tuple(
        json.dumps(p, sort_keys=True, default=repr) for p in parts)

