"""Adam over nested parameter dicts, written once against the array API (same update on every backend).

The update is ``torch.optim.Adam`` (non-amsgrad, ``maximize=False``), step ``t = 1, 2, ...``::

    g   <- g + weight_decay * p                      (L2 penalty added to the gradient, as torch)
    m   <- m + (1 - beta1) * (g - m)                  (torch's lerp form of beta1*m + (1-beta1)*g)
    v   <- beta2 * v + (1 - beta2) * g * g
    p   <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The state is a plain dict ``{"step": t, "m": tree, "v": tree}`` (trees mirror the parameters), so
it can be saved in a checkpoint by one backend and continued by another.  ``step`` and ``lr`` may
be Python numbers or 0-d arrays (e.g. traced values under ``jax.jit``); the scalar factors are
cast to each leaf's dtype so float32 parameters stay float32.
"""

from __future__ import annotations

from ..xp import namespace

__all__ = ["adam_init", "adam_update", "clip_by_global_norm", "tree_map"]


def tree_map(fn, *trees):
    """``fn`` applied leaf-wise over nested dicts with the structure of ``trees[0]``."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: tree_map(fn, *(t[k] for t in trees)) for k in first}
    return fn(*trees)


def adam_init(params: dict) -> dict:
    """Fresh Adam state: step 0, first and second moments zero (same dtype/device as each parameter)."""

    def zeros(p):
        xp = namespace(p)
        return xp.zeros_like(p)

    return {"step": 0, "m": tree_map(zeros, params), "v": tree_map(zeros, params)}


def _is_number(x) -> bool:
    """A plain Python number (NumPy scalars are arrays here: they carry a dtype that would promote)."""
    return type(x) in (int, float)


def _scalar(x, like):
    """A Python number as is; an array scalar cast to ``like``'s dtype."""
    if _is_number(x):
        return x
    xp = namespace(like)
    return xp.astype(x, like.dtype)


def adam_update(params: dict, grads: dict, state: dict, lr, beta1: float = 0.9, beta2: float = 0.999,
                eps: float = 1e-8, weight_decay: float = 0.0) -> tuple[dict, dict]:
    """One Adam step.  Returns ``(new_params, new_state)``; inputs are not modified.

    params, grads: nested dicts of arrays with the same structure; state: :func:`adam_init` output;
    lr: learning rate of this step (number or 0-d array).
    """
    t = state["step"] + 1
    if _is_number(t):
        bc1, bc2_sqrt = 1.0 - beta1 ** t, (1.0 - beta2 ** t) ** 0.5
    else:  # traced / array step: same formulas in the array's namespace
        xp = namespace(t)
        tf = xp.astype(t, xp.float64)
        bc1 = 1.0 - beta1 ** tf
        bc2_sqrt = xp.sqrt(1.0 - beta2 ** tf)
    step_size = lr / bc1

    def one(p, g, m, v):
        xp = namespace(p)
        if weight_decay != 0.0:
            g = g + weight_decay * p
        m = m + (1.0 - beta1) * (g - m)
        v = beta2 * v + (1.0 - beta2) * g * g
        denom = xp.sqrt(v) / _scalar(bc2_sqrt, p) + eps
        return p + (-_scalar(step_size, p)) * m / denom, m, v  # torch's addcdiv order of operations

    out = tree_map(one, params, grads, state["m"], state["v"])
    return _unzip(out, 0), {"step": t, "m": _unzip(out, 1), "v": _unzip(out, 2)}


def _unzip(tree, i: int):
    if isinstance(tree, dict):
        return {k: _unzip(v, i) for k, v in tree.items()}
    return tree[i]


def clip_by_global_norm(grads: dict, max_norm: float) -> dict:
    """``torch.nn.utils.clip_grad_norm_``: scale every gradient by ``min(1, max_norm / (|g| + 1e-6))``,
    ``|g|`` the 2-norm of all gradients together (``training.gradient_max_norm``)."""
    leaves = []
    tree_map(leaves.append, grads)
    xp = namespace(*leaves)
    total = xp.sqrt(sum(xp.sum(xp.astype(g, xp.float64) ** 2) for g in leaves))
    coef = max_norm / (total + 1e-6)
    coef = xp.where(coef < 1.0, coef, xp.ones_like(coef))
    return tree_map(lambda g: g * xp.astype(coef, g.dtype), grads)
