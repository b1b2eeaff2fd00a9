"""Smooth switch function and the se_e2_a environment matrix (SPEC 2.1-2.3), with their backward.

All functions take arrays of any array-API namespace.  Distances in Å; the
environment matrix has units of 1/Å.
"""

from __future__ import annotations

from .xp import namespace


def check_cutoffs(rcut: float, rcut_smth: float) -> None:
    if not rcut > 0:
        raise ValueError(f"rcut must be > 0 Å, got {rcut}")
    if not rcut_smth < rcut:
        raise ValueError(f"rcut_smth must be smaller than rcut, got rcut_smth={rcut_smth} >= rcut={rcut}")


def switch(r, rcut_smth: float, rcut: float):
    """Switch ``sw(r)`` and its derivative ``dsw/dr`` (1/Å).

    ``u = (clip(r, rs, rc) - rs) / (rc - rs)``, ``sw = u^3 (-6u^2 + 15u - 10) + 1``:
    1 below ``rcut_smth``, 0 beyond ``rcut``, C2 at both ends.  r: any shape, Å.
    """
    xp = namespace(r)
    width = rcut - rcut_smth
    u = (xp.clip(r, rcut_smth, rcut) - rcut_smth) / width
    sw = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
    dsw = -30.0 * (u * u) * (u - 1.0) * (u - 1.0) / width
    return sw, dsw


def env_mat(rij, mask, rcut: float, rcut_smth: float, protection: float = 0.0):
    """Raw environment matrix rows ``R = sw(r) [1/(r+p), x/(r+p)^2, y/(r+p)^2, z/(r+p)^2]``.

    rij:  (..., nnei, 3) neighbour minus centre, zero in empty slots (Å)
    mask: (..., nnei) bool, True for real neighbours
    Returns ``R`` (..., nnei, 4) (exactly 0 in empty slots) and a cache for :func:`env_mat_vjp`.
    """
    xp = namespace(rij)
    maskf = xp.astype(mask, rij.dtype)
    r = xp.sqrt(xp.sum(rij * rij, axis=-1) + (1.0 - maskf))  # 1 in empty slots: no 1/0, finite gradient
    q = r + protection
    sw, dsw = switch(r, rcut_smth, rcut)
    sw = sw * maskf
    t0 = 1.0 / q
    t1 = rij / (q * q)[..., None]
    R = xp.concat([t0[..., None], t1], axis=-1) * sw[..., None]
    return R, (rij, maskf, r, q, sw, dsw * maskf)


def env_mat_vjp(gR, cache):
    """Pull ``dE/dR`` (..., nnei, 4) back to ``dE/drij`` (..., nnei, 3)."""
    xp = namespace(gR)
    rij, maskf, r, q, sw, dsw = cache
    g0 = gR[..., 0]
    ga = gR[..., 1:4]
    ga_dot_x = xp.sum(ga * rij, axis=-1)
    radial = g0 * (dsw / q - sw / (q * q)) + ga_dot_x * (dsw / (q * q) - 2.0 * sw / (q * q * q))
    return (radial / r)[..., None] * rij + (sw / (q * q))[..., None] * ga
