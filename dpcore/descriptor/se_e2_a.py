"""se_e2_a ("smooth edition, two-body embedding, all information") descriptor (SPEC 4).

For centre i with normalised environment rows ``R~`` (nnei x 4) and embedding
matrix ``G`` (nnei x ng):  ``A = R~^T G / nnei`` (4 x ng) and
``D = A^T A[:, :axis_neuron]`` (ng x axis_neuron), flattened row-major.
``nnei = sum(sel)`` is the capacity, padded slots included.

Parameters: ``{"davg": (ntypes, nnei, 4), "dstd": (ntypes, nnei, 4),
"embedding": {"<k>": net}}`` with ``k = t_nbr`` (``type_one_side``) or
``k = t_centre + t_nbr * ntypes``.  ``cfg`` is the descriptor section of the
model config (normalised, SPEC 11.2).
"""

from __future__ import annotations

from ..by_type import apply_by_type, vjp_by_type
from ..env_mat import env_mat, env_mat_vjp
from ..network import net_forward, net_vjp
from ..xp import namespace


def dim_out(cfg) -> int:
    return cfg["neuron"][-1] * cfg["axis_neuron"]


def sections(cfg) -> list[int]:
    sec = [0]
    for s in cfg["sel"]:
        sec.append(sec[-1] + int(s))
    return sec


def _embedding_key(cfg, t_centre: int, t_nbr: int) -> str:
    ntypes = len(cfg["sel"])
    return str(t_nbr) if cfg["type_one_side"] else str(t_centre + t_nbr * ntypes)


def _stat_rows(xp, table, centre_type):
    """davg/dstd rows of each centre: table (ntypes, nnei, 4), centre_type (nf, nloc) -> (nf, nloc, nnei, 4)."""
    nf, nloc = centre_type.shape
    rows = xp.take(table, xp.reshape(centre_type, (-1,)), axis=0)
    return xp.reshape(rows, (nf, nloc) + tuple(table.shape[1:]))


def forward(cfg, params, rij, pairs, blocks=None):
    """Descriptor of every local atom.

    rij: (nf, nloc, nnei, 3) neighbour minus centre (Å), in the descriptor precision, zero in empty slots.
    pairs: dict with ``nlist_mask`` (nf, nloc, nnei) bool, ``centre_type`` (nf, nloc) int,
        optional ``exclude_mask`` (nf, nloc, nnei) (0 for descriptor-excluded pairs).
    Returns ``D`` (nf, nloc, ng * axis_neuron) and a cache for :func:`vjp`.
    """
    xp = namespace(rij)
    ntypes = len(cfg["sel"])
    nnei = sum(cfg["sel"])
    m2 = cfg["axis_neuron"]
    centre_type = pairs["centre_type"]
    R, env_cache = env_mat(rij, pairs["nlist_mask"], cfg["rcut"], cfg["rcut_smth"], cfg["env_protection"])
    dstd = _stat_rows(xp, params["dstd"], centre_type)
    Rn = (R - _stat_rows(xp, params["davg"], centre_type)) / dstd
    excl = pairs.get("exclude_mask")
    if excl is not None:
        Rn = Rn * xp.astype(excl, Rn.dtype)[..., None]
    nets = params["embedding"]
    sec = sections(cfg)
    A = None
    block_caches = []
    for tn in range(ntypes):
        Rt = Rn[:, :, sec[tn] : sec[tn + 1], :]

        def embed(tc, s, tn=tn):
            net = nets.get(_embedding_key(cfg, tc, tn))
            return None if net is None else net_forward(net, s, cfg["activation_function"])

        s = Rt[..., 0:1]
        if cfg["type_one_side"]:
            res = embed(0, s)
            G, cache = (None, None) if res is None else res
        else:
            G, cache = apply_by_type(embed, s, centre_type, ntypes, blocks)
        block_caches.append((G, cache))
        if G is not None:
            At = xp.matrix_transpose(Rt) @ G
            A = At if A is None else A + At
    A = A / nnei
    D = xp.matrix_transpose(A) @ A[..., :m2]
    nf, nloc = centre_type.shape
    return xp.reshape(D, (nf, nloc, -1)), (Rn, A, dstd, excl, env_cache, block_caches, centre_type)


def vjp(cfg, params, gD, cache, blocks=None):
    """Pull ``dE/dD`` (nf, nloc, ng * axis_neuron) back to ``dE/drij`` (nf, nloc, nnei, 3)."""
    xp = namespace(gD)
    Rn, A, dstd, excl, env_cache, block_caches, centre_type = cache
    ntypes = len(cfg["sel"])
    nnei = sum(cfg["sel"])
    m2 = cfg["axis_neuron"]
    ng = cfg["neuron"][-1]
    nf, nloc = gD.shape[0], gD.shape[1]
    gD = xp.reshape(gD, (nf, nloc, ng, m2))
    gA = A[..., :m2] @ xp.matrix_transpose(gD)  # (nf, nloc, 4, ng)
    gA_lead = A @ gD  # (nf, nloc, 4, m2)
    if m2 < ng:
        gA = gA + xp.concat([gA_lead, xp.zeros_like(gA[..., m2:])], axis=-1)
    else:
        gA = gA + gA_lead
    gA = gA / nnei
    nets = params["embedding"]
    sec = sections(cfg)
    parts = []
    for tn in range(ntypes):
        Rt = Rn[:, :, sec[tn] : sec[tn + 1], :]
        G, ecache = block_caches[tn]
        if G is None:
            parts.append(xp.zeros_like(Rt))
            continue
        gRt = G @ xp.matrix_transpose(gA)  # (nf, nloc, sel_t, 4)
        gG = Rt @ gA  # (nf, nloc, sel_t, ng)

        def embed_vjp(tc, g, c, tn=tn):
            return net_vjp(nets[_embedding_key(cfg, tc, tn)], g, c)

        if cfg["type_one_side"]:
            gs = embed_vjp(0, gG, ecache)
        else:
            gs = vjp_by_type(embed_vjp, gG, centre_type, ntypes, blocks, ecache)
        parts.append(gRt + xp.concat([gs, xp.zeros_like(gRt[..., 1:])], axis=-1))
    gRn = xp.concat(parts, axis=2)
    if excl is not None:
        gRn = gRn * xp.astype(excl, gRn.dtype)[..., None]
    return env_mat_vjp(gRn / dstd, env_cache)

