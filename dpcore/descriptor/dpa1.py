"""DPA-1 descriptor (``type: "dpa1"``, alias ``"se_atten"``; SPEC_DPA1), the math: forward and analytic backward.

Per centre i, over ``nnei = sum(sel)`` neighbour slots of any type (mixed-type list, nearest first):

    R~_k  = m'_k (R_k - davg[t_i]) / dstd[t_i]               env matrix rows (1/Å), m' = 0 for excluded slots
    G0_k  = N([s_k, T[tau_k], T[t_i]])                        concat (T[t_i] dropped with type_one_side)
          = N_s(s_k) * (1 + g_t(tau_k, t_i) [* sw_k])         strip (N_t on the type table; sw_k if smooth)
    G     = attn_layer gated self-attention layers on G0      (:mod:`dpcore.attention`)
    A     = R~^T G / nnei;  D = A^T A[:, :axis_neuron]        flattened row-major, then T[t_i] appended
                                                              (``concat_output_tebd``)

``s_k = R~_k[0]``; ``tau_k`` the neighbour type, and for empty/excluded slots the type of the frame's first
atom (``pairs["first_type"]``, else ``centre_type[:, 0]``: DeePMD-kit gathers extended atom 0 there).

Parameters: ``{"davg", "dstd": (ntypes, nnei, 4), "type_embedding": net, "embedding": {"0": net},
"embedding_strip": {"0": net} (strip only), "attention": {"<l>": attention layer}}`` (layer layout in
:mod:`dpcore.attention`).  Configuration, parameters and files: :mod:`dpcore.descriptor.dpa1_config` and
:mod:`dpcore.descriptor.dpa1_io`.
"""

from __future__ import annotations

from ..attention import attention_layer, attention_layer_vjp, attention_opts
from ..env_mat import env_mat, env_mat_vjp
from ..network import net_forward, net_vjp
from ..precision import compute_precision
from ..type_embedding import type_embedding_table
from ..xp import namespace
from .dpa1_config import (args, check, dim_out, init_params, mode_of, nlist_sel, nnei_of, spin_backbone,  # noqa: F401
                          stats, trainable_mask, validate)
from .dpa1_io import deserialize, serialize  # noqa: F401

TYPE = "dpa1"
ALIASES = ("se_atten",)
MIXED_TYPES = True  # one neighbour block of sum(sel) slots, neighbours of any type
RHAT_EPS = 1e-12  # r^ = R~[1:4] / max(|R~[1:4]|, eps)


def _stat_rows(xp, table, centre_type):
    nf, nloc = centre_type.shape
    rows = xp.take(table, xp.reshape(centre_type, (-1,)), axis=0)
    return xp.reshape(rows, (nf, nloc) + tuple(table.shape[1:]))


def _gather_types(xp, T, index):
    """Rows of table T (m, c) at integer ``index`` of any shape -> index.shape + (c,)."""
    return xp.reshape(xp.take(T, xp.reshape(index, (-1,)), axis=0), tuple(index.shape) + (T.shape[1],))


def _isotropic(xp, params, centre_type):
    """(nf, nloc, 1, 1) bool: the centre type's angular davg is 0 and its three angular dstd are equal (as
    statistics make them), so ``R~[1:4]`` is parallel to ``r_ij``."""
    davg, dstd = params["davg"], params["dstd"]
    spread = xp.sum(xp.abs(davg[..., 1:4]), axis=(1, 2)) + xp.sum(xp.abs(dstd[..., 2:4] - dstd[..., 1:2]), axis=(1, 2))
    iso = xp.take(spread == 0, xp.reshape(centre_type, (-1,)), axis=0)
    return xp.reshape(iso, tuple(centre_type.shape) + (1, 1))


def _direction(xp, v, rij, r, maskf, iso):
    """``r^ = v / max(|v|, eps)`` of ``v = R~[1:4]`` (nf, nloc, nnei, 3) and a cache for :func:`_direction_vjp`.

    Where ``iso``, the same value is formed as ``m r_ij / r * min(1, |v| / eps)``: its derivative is
    ``(1 - r^ r^T) / r``, whereas differentiating ``v / |v|`` amplifies round-off by ``|dsw / sw|`` near rcut
    (autodiff forces of non-smooth models then differ by up to 1e-9 between backends)."""
    eps2 = RHAT_EPS * RHAT_EPS
    n2 = xp.sum(v * v, axis=-1, keepdims=True)
    big = n2 > eps2
    norm = xp.sqrt(xp.where(big, n2, xp.zeros_like(n2) + eps2))
    gen = v / norm
    u = rij / r[..., None]
    n2g = n2 + (1.0 - maskf[..., None]) * eps2  # empty slots: no sqrt(0)
    small = n2g < eps2
    s = xp.where(small, xp.sqrt(xp.where(small, n2g, xp.ones_like(n2g))) / RHAT_EPS, xp.ones_like(n2g))
    m = maskf[..., None]
    rhat = xp.where(iso, u * (s * m), gen)
    return rhat, (v, gen, norm, xp.astype(big, v.dtype), u, s, m, xp.astype(small, v.dtype), r, iso)


def _direction_vjp(xp, g, cache):
    """``(dE/dv, dE/dr_ij)`` from ``dE/dr^`` (the direct part bypasses the environment matrix)."""
    v, gen, norm, bigf, u, s, m, smallf, r, iso = cache
    zero = xp.zeros_like(g)
    g_gen, g_iso = xp.where(iso, zero, g), xp.where(iso, g, zero)
    gv = (g_gen - gen * (xp.sum(gen * g_gen, axis=-1, keepdims=True) * bigf)) / norm
    gu = g_iso * (s * m)
    grij = (gu - u * xp.sum(u * gu, axis=-1, keepdims=True)) / r[..., None]
    gs = xp.sum(g_iso * u, axis=-1, keepdims=True) * m * smallf  # s = |v| / eps below eps: ds/dv = v / (eps^2 s)
    return gv + (gs / (RHAT_EPS * RHAT_EPS * s)) * v, grij


def forward(cfg, params, rij, pairs, blocks=None):
    """Descriptor of every local atom.

    rij: (nf, nloc, nnei, 3) neighbour minus centre (Å) in the descriptor precision, zero in empty slots.
    pairs: ``nlist_mask`` (nf, nloc, nnei) bool, ``centre_type`` (nf, nloc), ``nei_type`` (nf, nloc, nnei),
    optional ``exclude_mask`` (nf, nloc, nnei) and ``first_type`` (nf,).  ``blocks`` is not used (mixed types).
    Returns ``D`` (nf, nloc, dim_out) and a cache for :func:`vjp`.
    """
    xp = namespace(rij)
    mode, smooth = mode_of(cfg)
    nnei = nnei_of(cfg)
    ntypes = params["davg"].shape[0]
    centre_type = pairs["centre_type"]
    nf, nloc = centre_type.shape
    mask = pairs["nlist_mask"]
    R, env_cache = env_mat(rij, mask, cfg["rcut"], cfg["rcut_smth"], cfg["env_protection"])
    dstd = _stat_rows(xp, params["dstd"], centre_type)
    Rn = (R - _stat_rows(xp, params["davg"], centre_type)) / dstd
    excl = pairs.get("exclude_mask")
    sw = env_cache[4]  # sw(r) * nlist_mask
    if excl is not None:
        exclf = xp.astype(excl, Rn.dtype)
        Rn = Rn * exclf[..., None]
        sw = sw * exclf
        mask = mask & (excl > 0)
    first = pairs.get("first_type")
    first = centre_type[:, 0] if first is None else first
    tau = xp.where(mask, pairs["nei_type"], xp.broadcast_to(xp.reshape(first, (nf, 1, 1)), mask.shape))
    T = type_embedding_table(params["type_embedding"])
    Ti = _gather_types(xp, T, centre_type)  # (nf, nloc, dt)
    s = Rn[..., 0:1]
    act, compute = cfg["activation_function"], compute_precision(cfg)
    emb = params["embedding"]["0"]
    if mode == "concat":
        parts = [s, _gather_types(xp, T, tau)]
        if not cfg["type_one_side"]:
            parts.append(xp.broadcast_to(Ti[:, :, None, :], tuple(tau.shape) + (Ti.shape[-1],)))
        G, ecache = net_forward(emb, xp.concat(parts, axis=-1), act, compute=compute)
        strip = None
    else:
        gs, ecache = net_forward(emb, s, act, compute=compute)
        nt1 = ntypes + 1
        if cfg["type_one_side"]:
            table_in, index = T, tau
        else:
            dt = T.shape[1]
            nbr = xp.broadcast_to(T[None, :, :], (nt1, nt1, dt))
            ctr = xp.broadcast_to(T[:, None, :], (nt1, nt1, dt))
            table_in = xp.reshape(xp.concat([nbr, ctr], axis=-1), (nt1 * nt1, 2 * dt))
            index = centre_type[:, :, None] * nt1 + tau
        gt = _gather_types(xp, net_forward(params["embedding_strip"]["0"], table_in, act, compute=compute)[0], index)
        gts = gt * sw[..., None] if smooth else gt
        G = gs * gts + gs
        strip = (gs, gt, gts)
    opts = attention_opts(cfg, smooth)
    rhat, rcache = None, None
    if cfg["attn_dotr"]:
        rhat, rcache = _direction(xp, Rn[..., 1:4], rij, env_cache[2], xp.astype(mask, Rn.dtype),
                                  _isotropic(xp, params, centre_type))
    layer_caches = []
    for l in range(cfg["attn_layer"]):
        G, lc = attention_layer(params["attention"][str(l)], G, sw, mask, rhat, opts)
        layer_caches.append(lc)
    A = (xp.matrix_transpose(Rn) @ G) / nnei
    m2 = cfg["axis_neuron"]
    D = xp.reshape(xp.matrix_transpose(A) @ A[..., :m2], (nf, nloc, -1))
    if cfg["concat_output_tebd"]:
        D = xp.concat([D, Ti], axis=-1)
    cache = (Rn, G, A, dstd, excl, env_cache, sw, ecache, strip, rcache, layer_caches, opts, smooth, mode)
    return D, cache


def vjp(cfg, params, gD, cache, blocks=None):
    """Pull ``dE/dD`` (nf, nloc, dim_out) back to ``dE/drij`` (nf, nloc, nnei, 3)."""
    xp = namespace(gD)
    Rn, G, A, dstd, excl, env_cache, sw, ecache, strip, rcache, layer_caches, opts, smooth, mode = cache
    nnei = nnei_of(cfg)
    m2, ng = cfg["axis_neuron"], A.shape[-1]
    nf, nloc = gD.shape[0], gD.shape[1]
    gD = xp.reshape(gD[..., : ng * m2], (nf, nloc, ng, m2))
    gA = A[..., :m2] @ xp.matrix_transpose(gD)  # (nf, nloc, 4, ng)
    gA_lead = A @ gD  # (nf, nloc, 4, m2)
    gA = gA + (xp.concat([gA_lead, xp.zeros_like(gA[..., m2:])], axis=-1) if m2 < ng else gA_lead)
    gA = gA / nnei
    gRn = G @ xp.matrix_transpose(gA)  # (nf, nloc, nnei, 4)
    gG = Rn @ gA  # (nf, nloc, nnei, ng)
    gsw = None
    grhat = None
    for l in range(len(layer_caches) - 1, -1, -1):
        gG, gsw_l, grhat_l = attention_layer_vjp(params["attention"][str(l)], gG, layer_caches[l], opts)
        if gsw_l is not None:
            gsw = gsw_l if gsw is None else gsw + gsw_l
        if grhat_l is not None:
            grhat = grhat_l if grhat is None else grhat + grhat_l
    emb = params["embedding"]["0"]
    if mode == "concat":
        gs = net_vjp(emb, gG, ecache)[..., 0:1]
    else:
        gs_out, gt, gts = strip
        gs = net_vjp(emb, gG * (gts + 1.0), ecache)
        if smooth:
            gsw_t = xp.sum(gG * gs_out * gt, axis=-1)
            gsw = gsw_t if gsw is None else gsw + gsw_t
    gv, grij_direct = (xp.zeros_like(gRn[..., 1:4]), None) if grhat is None else _direction_vjp(xp, grhat, rcache)
    gRn = gRn + xp.concat([gs, gv], axis=-1)
    if excl is not None:
        exclf = xp.astype(excl, gRn.dtype)
        gRn = gRn * exclf[..., None]
        if gsw is not None:
            gsw = gsw * exclf
    grij = env_mat_vjp(gRn / dstd, env_cache)
    if grij_direct is not None:
        grij = grij + grij_direct
    if gsw is not None:
        rij, r, dsw = env_cache[0], env_cache[2], env_cache[5]  # dsw/dr * nlist_mask
        grij = grij + (gsw * dsw / r)[..., None] * rij
    return grij
