"""Neighbour gated self-attention and layer normalisation of DPA-1 (SPEC_DPA1 5), forward and backward.

Every function works on a stack of neighbour environments: leading axes ``...`` (e.g. ``nf, nloc``), then
``n = nnei`` neighbour slots and a feature axis.  One attention layer (DeePMD-kit's
``NeighborGatedAttentionLayer`` with one head) maps the embedding matrix ``G`` (..., n, ng) to

    Y = G W_in + b_in;  q, k, v = Y[:, :h], Y[:, h:2h], Y[:, 2h:]   (rows unit-normalised if ``normalize``)
    L = alpha q k^T                                          alpha = (h * scaling_factor)^-1/2 or temperature
    smooth:     P = softmax_b((L + 20) sw_a sw_b - 20) * m_a * sw_a sw_b
    non-smooth: P = softmax_b(L over keys with m_b = 1) * m_a
    dotr:       P = P * (r^_a . r^_b)
    G' = LayerNorm(G + (P v) W_out + b_out)

``sw`` (..., n) is the switch of each slot (0 for padding/excluded), ``m`` (..., n) its 0/1 mask and ``r^``
(..., n, 3) the unit direction (SPEC_DPA1 2).  The backward returns ``dE/dG``, ``dE/dsw`` and ``dE/dr^``.
Layer parameters: ``{"in_proj": {"w": (ng, 3h), "b": (3h,)}, "out_proj": {"w": (h, ng), "b": (ng,)},
"layer_norm": {"w": (ng,), "b": (ng,)}}``.
"""

from __future__ import annotations

from .network import _dense
from .xp import namespace

ATTN_SHIFT = 20.0  # logit shift c of the smooth attention (fixed in DeePMD-kit)


def layer_norm(x, w, b, eps: float):
    """``(x - mean) / sqrt(var + eps) * w + b`` over the last axis (biased variance); x (..., ng)."""
    xp = namespace(x)
    n = x.shape[-1]
    xc = x - xp.sum(x, axis=-1, keepdims=True) / n
    s = xp.sqrt(xp.sum(xc * xc, axis=-1, keepdims=True) / n + eps)
    xh = xc / s
    return xh * w + b, (xh, s)


def layer_norm_vjp(gy, w, cache):
    """Pull ``dE/dy`` back to ``dE/dx`` through :func:`layer_norm`."""
    xp = namespace(gy)
    xh, s = cache
    n = gy.shape[-1]
    gxh = gy * w
    mean_g = xp.sum(gxh, axis=-1, keepdims=True) / n
    mean_gx = xp.sum(gxh * xh, axis=-1, keepdims=True) / n
    return (gxh - mean_g - xh * mean_gx) / s


def row_max(xp, x):
    """Maximum over the last axis, keepdims (a pairwise ``where`` tree: only functions of the core's subset)."""
    while x.shape[-1] > 1:
        n = x.shape[-1]
        h = n // 2
        a, b = x[..., :h], x[..., h : 2 * h]
        m = xp.where(a >= b, a, b)
        x = m if n == 2 * h else xp.concat([m, x[..., 2 * h :]], axis=-1)
    return x


def _unit(xp, x):
    norm = xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
    return x / norm, norm


def _unit_vjp(xp, g, u, norm):
    return (g - u * xp.sum(u * g, axis=-1, keepdims=True)) / norm


def softmax_masked(L, key_mask):
    """Softmax over the last axis restricted to keys with ``key_mask`` (bool, broadcast to L); rows without
    any key give 0 (no NaN, also in the gradients)."""
    xp = namespace(L)
    low = -row_max(xp, -L)
    c = row_max(xp, xp.where(key_mask, L, xp.broadcast_to(low, L.shape)))
    arg = xp.where(key_mask, L - c, xp.zeros_like(L))
    e = xp.exp(arg) * xp.astype(key_mask, L.dtype)
    s = xp.sum(e, axis=-1, keepdims=True)
    return e / xp.where(s > 0, s, xp.ones_like(s))


def softmax(L):
    """Softmax over the last axis (shifted by the row maximum)."""
    xp = namespace(L)
    e = xp.exp(L - row_max(xp, L))
    return e / xp.sum(e, axis=-1, keepdims=True)


def attention_layer(layer, G, sw, mask, rhat, opts: dict):
    """One gated attention layer: G (..., n, ng) -> G' (..., n, ng) and a cache for :func:`attention_layer_vjp`.

    sw (..., n) switch (0 in empty slots), mask (..., n) bool, rhat (..., n, 3) or None (no ``dotr``);
    opts: ``smooth``, ``normalize``, ``alpha`` (logit scale), ``eps`` (layer-norm epsilon).
    """
    xp = namespace(G)
    h = layer["in_proj"]["w"].shape[1] // 3
    Y = _dense(xp, G, layer["in_proj"]["w"]) + layer["in_proj"]["b"]
    q, k, v = Y[..., :h], Y[..., h : 2 * h], Y[..., 2 * h :]
    norms = None
    if opts["normalize"]:
        (q, nq), (k, nk), (v, nv) = _unit(xp, q), _unit(xp, k), _unit(xp, v)
        norms = (nq, nk, nv)
    qs = q * opts["alpha"]
    L = qs @ xp.matrix_transpose(k)
    maskf = xp.astype(mask, G.dtype)
    S = None
    if opts["smooth"]:
        swa, swb = sw[..., :, None], sw[..., None, :]
        S = swa * swb
        P0 = softmax((L + ATTN_SHIFT) * swa * swb - ATTN_SHIFT)  # DeePMD-kit's order of the products
    else:
        P0 = softmax_masked(L, mask[..., None, :])
    P1 = P0 * maskf[..., :, None]
    P2 = P1 * swa * swb if S is not None else P1
    Dr = None if rhat is None else rhat @ xp.matrix_transpose(rhat)
    P3 = P2 * Dr if Dr is not None else P2
    O = P3 @ v
    X = G + _dense(xp, O, layer["out_proj"]["w"]) + layer["out_proj"]["b"]
    out, ln_cache = layer_norm(X, layer["layer_norm"]["w"], layer["layer_norm"]["b"], opts["eps"])
    return out, (q, k, v, qs, norms, L, S, maskf, P0, P1, P2, P3, Dr, rhat, sw, ln_cache)


def attention_layer_vjp(layer, gout, cache, opts: dict):
    """Pull ``dE/dG'`` back: returns ``dE/dG`` (..., n, ng), ``dE/dsw`` (..., n) or None (non-smooth) and
    ``dE/dr^`` (..., n, 3) or None (no ``dotr``)."""
    xp = namespace(gout)
    q, k, v, qs, norms, L, S, maskf, P0, P1, P2, P3, Dr, rhat, sw, ln_cache = cache
    gX = layer_norm_vjp(gout, layer["layer_norm"]["w"], ln_cache)
    gO = _dense(xp, gX, xp.matrix_transpose(layer["out_proj"]["w"]))
    gP3 = gO @ xp.matrix_transpose(v)
    gv = xp.matrix_transpose(P3) @ gO
    grhat = None
    if Dr is not None:
        gDr = gP3 * P2
        grhat = (gDr + xp.matrix_transpose(gDr)) @ rhat
        gP2 = gP3 * Dr
    else:
        gP2 = gP3
    gS = None
    if S is not None:
        gP1 = gP2 * S
        gS = gP2 * P1
    else:
        gP1 = gP2
    gP0 = gP1 * maskf[..., :, None]
    gLp = P0 * (gP0 - xp.sum(gP0 * P0, axis=-1, keepdims=True))
    gsw = None
    if S is not None:
        gL = gLp * S
        gS = gS + gLp * (L + ATTN_SHIFT)
        gsw = xp.sum(gS * sw[..., None, :], axis=-1) + xp.sum(gS * sw[..., :, None], axis=-2)
    else:
        gL = gLp
    gq = (gL @ k) * opts["alpha"]
    gk = xp.matrix_transpose(gL) @ qs
    if norms is not None:
        nq, nk, nv = norms
        gq, gk, gv = _unit_vjp(xp, gq, q, nq), _unit_vjp(xp, gk, k, nk), _unit_vjp(xp, gv, v, nv)
    gY = xp.concat([gq, gk, gv], axis=-1)
    gG = gX + _dense(xp, gY, xp.matrix_transpose(layer["in_proj"]["w"]))
    return gG, gsw, grhat


def attention_opts(cfg: dict, smooth: bool) -> dict:
    """Evaluation settings of the attention layers from a DPA-1 config section."""
    h = cfg["attn"]
    temperature = cfg.get("temperature")
    alpha = (h * cfg["scaling_factor"]) ** -0.5 if temperature is None else float(temperature)
    eps = 1e-5 if cfg.get("ln_eps") is None else float(cfg["ln_eps"])
    return {"smooth": bool(smooth), "normalize": bool(cfg["normalize"]), "alpha": alpha, "eps": eps}
