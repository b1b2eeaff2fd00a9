"""The embedding of one se_e2_a (centre block, neighbour section): ``R~^T G`` from the section's net, or from its
table in a compressed model, on the used slots only (:mod:`dpcore.slot_trim`), with the trimmed empty slots'
constant contribution added once, or once per distinct input (:mod:`dpcore.pair_share`); and its backward to the
environment rows.  :mod:`dpcore.descriptor.se_e2_a`
runs it per block."""

from __future__ import annotations

from ..network import embedding_with_slope, net_forward, net_vjp
from ..tabulated import table_geometry, tabulated_contraction, tabulated_contraction_vjp, tabulated_net
from ..xp import gather_rows, kernel, namespace


def embedding_key(cfg, t_centre: int, t_nbr: int) -> str:
    ntypes = len(cfg["sel"])
    return str(t_nbr) if cfg["type_one_side"] else str(t_centre + t_nbr * ntypes)


class Net:
    """Embedding net ``k`` of a (centre type, neighbour type) pair: ``values(s)`` (..., ng) of inputs s (..., 1),
    ``contract(r)`` = ``R~^T G`` (..., 4, ng) of rows r (..., K, 4) with its cache, and ``contract_vjp``."""

    def __init__(self, net, activation, compute):
        self.net, self.act, self.compute = net, activation, compute

    def values(self, s):
        return net_forward(self.net, s, self.act, compute=self.compute)[0]

    def values_and_slope(self, s):
        return embedding_with_slope(self.net, s, self.act, compute=self.compute)

    def contract(self, r):
        G, ncache = net_forward(self.net, r[..., 0:1], self.act, compute=self.compute)
        return namespace(r).matrix_transpose(r) @ G, (r, G, ncache)

    def contract_vjp(self, gA, cache):
        xp = namespace(gA)
        r, G, ncache = cache
        gr = G @ xp.matrix_transpose(gA)  # (..., K, 4)
        gs = net_vjp(self.net, r @ gA, ncache)  # dE/ds through G: (..., K, 1)
        return gr + xp.concat([gs, xp.zeros_like(gr[..., 1:])], axis=-1)


class Table:
    """The same for a compressed model's table (:mod:`dpcore.tabulated`: ``G`` is never formed).  ``contract`` runs
    the backend's fused kernel where one is registered for the arrays (``kernel`` of :mod:`dpcore.xp`)."""

    def __init__(self, table, info):
        self.table, self.info = table, info

    def values(self, s):
        return tabulated_net(self.table, self.info, s)[0]

    def values_and_slope(self, s):
        return tabulated_net(self.table, self.info, s)

    def contract(self, r):
        fused = kernel(namespace(r), "tabulated_contraction")
        if fused is not None:
            geometry = table_geometry(self.info, self.table.shape[0])
            A = fused.contract(self.table, geometry, r)
            if A is not None:
                return A, (fused, geometry, r)
        A, cache = tabulated_contraction(self.table, self.info, r)
        return A, (None, cache)

    def contract_vjp(self, gA, cache):
        if cache[0] is None:
            return tabulated_contraction_vjp(gA, cache[1])
        fused, geometry, r = cache
        return fused.contract_vjp(self.table, geometry, r, gA)


def embedding(cfg, params, tc: int, tn: int, compute):
    """The :class:`Net` or :class:`Table` of a pair of types, or None (no network: zero contribution)."""
    key = embedding_key(cfg, tc, tn)
    if cfg.get("compress"):
        table = params["compress"]["table"].get(key)
        return None if table is None else Table(table, cfg["compress"]["info"][key])
    net = params["embedding"].get(key)
    return None if net is None else Net(net, cfg["activation_function"], compute)


def _empty_slot_rows(params, tc: int, lo: int, hi: int):
    """Normalised rows ``-davg/dstd`` (hi - lo, 4) of empty slots ``lo:hi`` for centre type ``tc``."""
    return -params["davg"][tc, lo:hi, :] / params["dstd"][tc, lo:hi, :]


def column_rows(params, tc: int, sec, tn: int, width: int):
    """The rows of an empty slot in each of the first ``width`` columns of section ``tn`` (width, 4)."""
    return _empty_slot_rows(params, tc, sec[tn], sec[tn] + width)


def empty_rows(params, tc: int, sec, tn: int, width: int):
    """Normalised rows ``-davg/dstd`` (n_empty, 4) of the slots ``width:`` of section ``tn`` for centre type
    ``tc``, empty for every atom of the block (None when none are trimmed)."""
    lo, hi = sec[tn] + width, sec[tn + 1]
    if lo >= hi:
        return None
    return _empty_slot_rows(params, tc, lo, hi)


def shared_contract(emb, r, share, columns):
    """``R~^T G`` (nf, nb, 4, ng) of rows r (nf, nb, w, 4) with the net run once per distinct input
    (:mod:`dpcore.pair_share`): ``share = (src, dst, slots, reader)`` of the block; ``columns`` (w, 4): the rows
    ``-davg/dstd`` of the empty slots of each column, whose net values ``G_e`` (w, ng) enter through small
    products with the empty-slot mask (no select over the slots)."""
    xp = namespace(r)
    src, dst, slots, reader = share
    nf, nb, w = r.shape[0], r.shape[1], r.shape[2]
    x = gather_rows(xp, xp.reshape(r[..., 0:1], (nf, nb * w, 1)), src, reader)  # (nf, U, 1)
    values, slopes = emb.values_and_slope(x)
    G_e, slope_e = emb.values_and_slope(columns[:, 0:1])  # (w, ng)
    real = xp.astype(xp.reshape(dst >= 0, (nf, nb, w)), r.dtype)
    index = xp.where(dst >= 0, dst, xp.zeros_like(dst))  # empty slots read input 0, masked out

    def to_slots(per_input):
        return xp.reshape(gather_rows(xp, per_input, index, slots), (nf, nb, w, per_input.shape[-1]))

    G = to_slots(values)
    empty = 1.0 - real
    # empty slots: sum_c (1 - real_c) columns_c^T G_e[c] = (1 - real) @ M, M[c] = columns_c^T G_e[c] (w, 4 * ng)
    M = xp.reshape(columns[:, :, None] * G_e[:, None, :], (w, -1))
    A = xp.matrix_transpose(r * real[..., None]) @ G + xp.reshape(empty @ M, (nf, nb, 4, G.shape[-1]))
    return A, (r, real, G, lambda: to_slots(slopes), columns, G_e, slope_e)


def shared_contract_vjp(gA, cache):
    """``dE/dr`` (nf, nb, w, 4) of :func:`shared_contract`: through ``r`` and, slot by slot, through ``s = r[..., 0]``
    with the slope of the slot's input (of its column for an empty slot)."""
    xp = namespace(gA)
    r, real, G, slope, columns, G_e, slope_e = cache
    empty = 1.0 - real
    w = G_e.shape[0]
    gr_real = G @ xp.matrix_transpose(gA)  # (nf, nb, w, 4)
    # empty slots, one product: [G_e[c] @ gA^T | slope_e[c] @ gA^T] (nf, nb, 2w, 4)
    per_column = xp.matrix_transpose(gA @ xp.matrix_transpose(xp.concat([G_e, slope_e], axis=0)))
    gr = real[..., None] * gr_real + empty[..., None] * per_column[:, :, :w, :]
    gs_real = xp.sum((r @ gA) * slope(), axis=-1)  # dE/ds per slot
    gs_empty = xp.sum(per_column[:, :, w:, :] * columns, axis=-1)  # (nf, nb, w)
    gs = (real * gs_real + empty * gs_empty)[..., None]
    return gr + xp.concat([gs, xp.zeros_like(gr[..., 1:])], axis=-1)


class _Shared:
    """The contraction of a block whose slots share embedding inputs (:func:`shared_contract`)."""

    def __init__(self, emb, share, columns):
        self.emb, self.share, self.columns = emb, share, columns

    def contract(self, r):
        return shared_contract(self.emb, r, self.share, self.columns)

    def contract_vjp(self, gA, cache):
        return shared_contract_vjp(gA, cache)

    def values(self, s):
        return self.emb.values(s)


def embed_contract(emb, r, width: int, empty, share=None):
    """``R~^T G`` (nf, nb, 4, ng) of a (centre block, neighbour section) ``r`` (nf, nb, sel_t, 4), the embedding
    ``emb`` run on the first ``width`` slots only; ``empty`` (n_empty, 4): the rows of the trimmed slots (or
    None), whose constant contribution (an empty slot still counts, as in DeePMD-kit) is added once.
    ``share``: the (src, dst, slots, reader) indices of :mod:`dpcore.pair_share` for those ``width`` slots and the
    rows (width, 4) of their empty slots, or None."""
    xp = namespace(r)
    At, inner = None, None
    if share is not None and width > 0:
        emb = _Shared(emb, share[:4], share[4])
    if width > 0 or empty is None:
        At, inner = emb.contract(r if width == r.shape[2] else r[:, :, :width, :])
    if empty is not None:
        Ae = xp.matrix_transpose(empty) @ emb.values(empty[:, 0:1])  # (4, ng), the same for every atom
        At = xp.zeros_like(r[:, :, 0:1, 0:1]) + Ae if At is None else At + Ae
    return At, (emb, r, width, inner)


def embed_contract_vjp(gA, cache):
    """``dE/dR~`` (nf, nb, sel_t, 4) of a block from ``dE/dA`` (nf, nb, 4, ng); zero on the trimmed slots."""
    xp = namespace(gA)
    emb, r, width, inner = cache
    if inner is None:
        return xp.zeros_like(r)
    gr = emb.contract_vjp(gA, inner)
    return gr if width == r.shape[2] else xp.concat([gr, xp.zeros_like(r[:, :, width:, :])], axis=2)
