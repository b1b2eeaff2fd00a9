"""Dense layers, embedding and fitting networks (SPEC 3), forward and input-backward.

A layer is a dict ``{"w": (n_in, n_out), "b": (n_out,) optional, "idt": (n_out,) optional}``;
a network is a dict ``{"0": layer, "1": layer, ...}``.  The residual rule is
fixed by the network kind: hidden layers are residual (``n_out == n_in`` adds
``x``, ``n_out == 2 n_in`` adds ``[x, x]``); the final fitting layer is linear
and not residual.  ``idt`` multiplies the activated output when present.
"""

from __future__ import annotations

import math

import numpy as np

from .precision import dtype_of
from .xp import namespace

_GELU_C = math.sqrt(2.0 / math.pi)


def _sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _tanh(xp, x):
    y = xp.tanh(x)
    return y, lambda: 1.0 - y * y


def _relu(xp, x):
    pos = x > 0
    return xp.where(pos, x, xp.zeros_like(x)), lambda: xp.astype(pos, x.dtype)


def _relu6(xp, x):
    return xp.clip(x, 0.0, 6.0), lambda: xp.astype((x > 0) & (x < 6.0), x.dtype)


def _softplus(xp, x):
    return xp.logaddexp(xp.zeros_like(x), x), lambda: _sigmoid(xp, x)


def _sigmoid_act(xp, x):
    s = _sigmoid(xp, x)
    return s, lambda: s * (1.0 - s)


def _silu(xp, x):
    s = _sigmoid(xp, x)
    return x * s, lambda: s + x * s * (1.0 - s)


def _gelu(xp, x):
    t = xp.tanh(_GELU_C * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1.0 + t), lambda: 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * x * x)


def _identity(xp, x):
    return x, lambda: xp.ones_like(x)


def _silut(threshold: float):
    sig_t = 1.0 / (1.0 + math.exp(-threshold))
    slope = sig_t + threshold * sig_t * (1.0 - sig_t)
    const = threshold * sig_t

    def act(xp, x):
        silu, dsilu = _silu(xp, x)
        th = xp.tanh(slope * (x - threshold))
        above = x >= threshold
        return xp.where(above, th + const, silu), lambda: xp.where(above, slope * (1.0 - th * th), dsilu())

    return act


_ACTIVATIONS = {
    "tanh": _tanh,
    "relu": _relu,
    "relu6": _relu6,
    "softplus": _softplus,
    "sigmoid": _sigmoid_act,
    "silu": _silu,
    "gelu": _gelu,
    "gelu_tf": _gelu,
    "none": _identity,
    "linear": _identity,
}


def get_activation(name: str | None):
    """Activation ``f(xp, x) -> (y, dy_dx_thunk)`` by DeePMD-kit name (case-insensitive, SPEC 3.2)."""
    key = "none" if name is None else str(name).lower()
    if key in _ACTIVATIONS:
        return _ACTIVATIONS[key]
    for prefix in ("silut", "custom_silu"):
        if key == prefix or key.startswith(prefix + ":"):
            threshold = float(key.split(":", 1)[1]) if ":" in key else 3.0
            return _silut(threshold)
    allowed = sorted(_ACTIVATIONS) + ["silut", "silut:T", "custom_silu:T"]
    raise ValueError(f"unknown activation_function {name!r}; expected one of {allowed}")


def _dense(xp, x, w):
    """``x @ w`` for x (..., n) and w (n, m) as ONE 2-D matrix product (stacked small products are slow)."""
    lead = tuple(x.shape[:-1])
    return xp.reshape(xp.reshape(x, (-1, x.shape[-1])) @ w, lead + (w.shape[-1],))


def _in_compute(xp, layer, inputs, compute):
    """``(inputs, w, b, idt)`` of a layer, cast to the mixed-precision ``compute`` dtype (unchanged if None)."""
    w, b, idt = layer["w"], layer.get("b"), layer.get("idt")
    if compute is None:
        return tuple(inputs), w, b, idt
    cd = dtype_of(xp, compute)
    cast = [None if a is None else xp.astype(a, cd) for a in (w, b, idt)]
    return tuple(xp.astype(a, cd) for a in inputs), *cast


def layer_forward(layer, x, activation, resnet: bool, compute=None):
    """One dense layer: x (..., n_in) -> y (..., n_out) and a cache for :func:`layer_vjp`.

    ``compute``: None, or a precision name (``"bfloat16"``, ``"float16"``) for DeePMD-kit's mixed precision: the
    input, weights, bias and ``idt`` are cast to it, the product and the activation run in it, and the
    activated output is cast back to ``x``'s dtype (the "output precision") before the residual sum.
    """
    xp = namespace(x)
    (xin,), w, b, idt = _in_compute(xp, layer, (x,), compute)
    z = _dense(xp, xin, w)
    if b is not None:
        z = z + b
    y, dact = activation(xp, z)
    if idt is not None:
        y = y * idt
    if compute is not None:
        y = xp.astype(y, x.dtype)
    n_in, n_out = w.shape
    if resnet and n_out == n_in:
        y = y + x
    elif resnet and n_out == 2 * n_in:  # y + [x, x], without materialising [x, x]
        lead = tuple(y.shape[:-1])
        y = xp.reshape(xp.reshape(y, lead + (2, n_in)) + x[..., None, :], lead + (n_out,))
    return y, (dact, n_in, n_out)


def layer_vjp(layer, gy, cache, resnet: bool):
    """Pull ``dE/dy`` back to ``dE/dx`` through one dense layer."""
    xp = namespace(gy)
    dact, n_in, n_out = cache
    gz = gy * xp.astype(dact(), gy.dtype)  # (a mixed-precision layer's derivative is in its compute dtype)
    if layer.get("idt") is not None:
        gz = gz * layer["idt"]
    gx = _dense(xp, gz, xp.matrix_transpose(layer["w"]))
    if resnet and n_out == n_in:
        gx = gx + gy
    elif resnet and n_out == 2 * n_in:  # both halves, summed through a reshape: slicing them costs torch's
        lead = tuple(gy.shape[:-1])       # backward a zero-filled full-size tensor per half
        gx = gx + xp.sum(xp.reshape(gy, lead + (2, n_in)), axis=-2)
    return gx


def _layers(net):
    return [net[str(i)] for i in range(len(net))]


def net_forward(net, x, activation: str, final_linear: bool = False, compute=None):
    """Embedding net (all layers residual-capable) or fitting net (``final_linear``: last layer linear, no residual).

    x: (..., in_dim) -> (..., out_dim); also returns the per-layer caches.  ``compute``: the mixed-precision
    compute dtype name of every layer but a fitting net's final one, which runs in ``x``'s dtype (as DeePMD-kit).
    """
    act = get_activation(activation)
    layers = _layers(net)
    caches = []
    for i, layer in enumerate(layers):
        last = final_linear and i == len(layers) - 1
        x, cache = layer_forward(layer, x, _identity if last else act, resnet=not last,
                                 compute=None if last else compute)
        caches.append(cache)
    return x, caches


def embedding_with_slope(net, x, activation: str, compute=None):
    """An embedding net's values and their derivative by its scalar input, in one forward-mode pass.

    x: (..., 1) -> ``(y, dy/dx)``, both (..., out_dim), as :func:`net_forward` (same layers, residual rule and
    mixed-precision casts) with the tangent ``dx = 1`` carried along: a layer maps ``dx`` to
    ``act'(z) * (dx @ w) * idt`` (+ the residual ``dx`` or ``[dx, dx]``).  One product per layer, the cost of a
    backward pass; the slope then serves every neighbour slot that shares the input (:mod:`dpcore.pair_share`).
    """
    xp = namespace(x)
    act = get_activation(activation)
    dx = xp.ones_like(x)
    for layer in _layers(net):
        (xin, din), w, b, idt = _in_compute(xp, layer, (x, dx), compute)
        z = _dense(xp, xin, w)
        if b is not None:
            z = z + b
        y, dact = act(xp, z)
        dy = dact() * _dense(xp, din, w)
        if idt is not None:
            y, dy = y * idt, dy * idt
        if compute is not None:
            y, dy = xp.astype(y, x.dtype), xp.astype(dy, x.dtype)
        n_in, n_out = w.shape
        if n_out == n_in:
            y, dy = y + x, dy + dx
        elif n_out == 2 * n_in:
            lead = tuple(y.shape[:-1])
            y = xp.reshape(xp.reshape(y, lead + (2, n_in)) + x[..., None, :], lead + (n_out,))
            dy = xp.reshape(xp.reshape(dy, lead + (2, n_in)) + dx[..., None, :], lead + (n_out,))
        x, dx = y, dy
    return x, dx


def net_vjp(net, gy, caches, final_linear: bool = False):
    """Pull ``dE/d(output)`` back to ``dE/d(input)`` through a network."""
    layers = _layers(net)
    for i in range(len(layers) - 1, -1, -1):
        last = final_linear and i == len(layers) - 1
        gy = layer_vjp(layers[i], gy, caches[i], resnet=not last)
    return gy


def child_rng(seed, *path: int) -> np.random.Generator:
    """Independent stream per network: ``default_rng([*path, seed])`` (DeePMD's child-seed scheme);
    ``seed`` an int, a list of ints, or None (fresh entropy)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([*path, *([seed] if isinstance(seed, int) else seed)])


def init_net(rng: np.random.Generator, in_dim: int, neuron, out_dim: int | None, resnet_dt: bool, dtype) -> dict:
    """Fresh network parameters (NumPy): ``w ~ N(0, 1/sqrt(n_in+n_out))``, ``b ~ N(0, 1)``, ``idt ~ N(0.1, 0.001)``.

    ``out_dim`` None: embedding net; otherwise a fitting net with a final linear layer of width ``out_dim``.
    """
    net = {}
    widths = list(neuron) + ([] if out_dim is None else [out_dim])
    n_in = in_dim
    for i, n_out in enumerate(widths):
        is_final = out_dim is not None and i == len(widths) - 1
        layer = {
            "w": rng.normal(0.0, 1.0 / math.sqrt(n_in + n_out), size=(n_in, n_out)).astype(dtype),
            "b": rng.normal(0.0, 1.0, size=(n_out,)).astype(dtype),
        }
        if resnet_dt and not is_final and n_out in (n_in, 2 * n_in):
            layer["idt"] = rng.normal(0.1, 0.001, size=(n_out,)).astype(dtype)
        net[str(i)] = layer
        n_in = n_out
    return net
