"""Training data for the dpcore spin example: a toy B2 "FeAl" magnet labelled with an exact spin-lattice model.

    python examples/spin/make_data.py                 # writes examples/spin/data/{train,valid}/...
    python examples/spin/make_data.py --out /tmp/spin --seed 7 --frames 50 --valid-frames 10

Every frame is the 2x2x2 B2 (CsCl) cell, 16 atoms, Fe on the cube corners and Al on the body
centres, with a random lattice parameter (+-2 % around A0), a random small symmetric strain (~1 %),
Gaussian "thermal" displacements (standard deviation 0.03-0.10 Å) and a random spin on every Fe
atom: a uniformly random direction and a length between 1.6 and 2.8 μB (Al carries no spin).
``Fe10Al6`` puts Fe on two random Al sites (antisites).  The energy is a toy model, not iron or
aluminium (eV, Å, μB)::

    E = Σ_{pairs} φ_{t_i t_j}(r_ij)                      Morse pair potential, one per type pair
      - Σ_{pairs of Fe} J(r_ij) s_i·s_j                  Heisenberg exchange, J decays with distance
      + Σ_{Fe} A (|s_i|² - M0²)²                         longitudinal (Landau) term of the moment length

    φ(r) = D [(1 - exp(-α (r - r_e)))² - 1] sw(r)        J(r) = J0 exp(-(r - R_J) / λ) sw(r)
    sw(r) = 1 for r < RS, 1 - 10x³ + 15x⁴ - 6x⁵ with x = (r - RS)/(RC - RS) up to RC, 0 beyond

The pair sums run over every periodic image within RC (an atom also interacts with its own images),
each unordered pair once.  The switch makes φ, J and their first two derivatives vanish at RC.
Labels, computed analytically (``tests/test_example_spin.py`` checks them against finite
differences of the energy):

* ``force``     = -∂E/∂r_i at fixed spins                              (eV/Å)
* ``force_mag`` = -∂E/∂s_i (0 for Al)                                  (eV/μB)
* ``virial``    W[k, d] = -∂E/∂ε[d, k] for r -> r (I + ε), box -> box (I + ε) (row vectors) at fixed
  spins, flattened as 3k + d (SPEC 6.4, 7.1); here = -½ Σ_{ordered pairs} u'(r) r_k r_d / r  (eV)

Systems (deepmd/npy, SPEC 10.1 and 7.2: real atoms only, ``spin.npy`` beside ``coord.npy``)::

    data/train/Fe8Al8   --frames frames          data/train/Fe10Al6   --frames frames
    data/valid/Fe8Al8   --valid-frames frames

each with ``type.raw``, ``type_map.raw`` (Fe, Al) and
``set.000/{coord,box,energy,force,force_mag,spin,virial}.npy``.  The output is a pure function of
``--seed``.  Takes a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TYPE_MAP = ["Fe", "Al"]
A0 = 2.87  # B2 lattice parameter, Å
RS, RC = 3.5, 4.5  # switch start and cutoff of every interaction, Å
# Morse parameters (D eV, alpha 1/Å, r_e Å) per type pair
MORSE = {(0, 0): (0.30, 1.4, 2.85), (0, 1): (0.40, 1.6, 2.50), (1, 1): (0.20, 1.4, 2.90)}
J0, R_J, LAMBDA = 0.01, 2.87, 0.6  # exchange eV/μB², Å, Å
A_L, M0 = 0.02, 2.2  # longitudinal term eV/μB⁴, μB
MAGNETIC = (True, False)
DEFAULT_OUT = Path(__file__).resolve().parent / "data"


# ------------------------------------------------------------------------------------------ the model
def switch(r):
    """``sw(r)`` and ``dsw/dr``: 1 below RS, a quintic to 0 at RC (zero slope and curvature at both ends)."""
    x = np.clip((r - RS) / (RC - RS), 0.0, 1.0)
    sw = 1 - 10 * x**3 + 15 * x**4 - 6 * x**5
    dsw = (-30 * x**2 + 60 * x**3 - 30 * x**4) / (RC - RS)
    return sw, dsw


def morse(r, ti, tj):
    """φ(r) and φ'(r) for the type pairs ``(ti, tj)`` (arrays of equal shape)."""
    lo, hi = np.minimum(ti, tj), np.maximum(ti, tj)
    par = np.array([[MORSE[(min(a, b), max(a, b))] for b in range(2)] for a in range(2)])  # (2, 2, 3)
    d, a, re = (par[lo, hi, k] for k in range(3))
    e = np.exp(-a * (r - re))
    v = d * ((1 - e) ** 2 - 1)
    dv = 2 * d * a * e * (1 - e)
    sw, dsw = switch(r)
    return v * sw, dv * sw + v * dsw


def exchange(r):
    """J(r) and J'(r) (eV/μB², eV/(μB² Å))."""
    j = J0 * np.exp(-(r - R_J) / LAMBDA)
    sw, dsw = switch(r)
    return j * sw, -j / LAMBDA * sw + j * dsw


def neighbor_pairs(coord, box, rc=RC):
    """All ordered pairs ``(i, j, shift)`` with ``0 < |r_j + shift @ box - r_i| < rc``, every periodic image.

    Returns ``i, j`` (npair,) and ``rij`` (npair, 3) = r_j + n·box - r_i.  Each unordered pair appears twice
    (i->j and j->i); a pair of an atom with its own image appears for n and -n.
    """
    cell = box.reshape(3, 3)
    vol = abs(np.linalg.det(cell))
    # plane spacing of each lattice direction -> how many images are needed to cover rc
    spacing = vol / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    nmax = np.ceil(rc / spacing).astype(int) + 1  # +1: atoms need not be inside the cell
    grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1).reshape(-1, 3)
    shifts = grid @ cell  # (nimg, 3)
    rij = coord[None, :, None, :] + shifts[None, None, :, :] - coord[:, None, None, :]  # (n, n, nimg, 3)
    r = np.linalg.norm(rij, axis=-1)
    i, j, k = np.nonzero((r < rc) & (r > 1e-8))
    return i, j, rij[i, j, k]


def labels(coord, box, atype, spin) -> dict:
    """Exact energy (eV), force (natoms, 3), force_mag (natoms, 3) and virial (9,) of one frame.

    ``coord`` (natoms, 3) Å, ``box`` (9,) Å (rows a, b, c), ``atype`` (natoms,) indices into TYPE_MAP,
    ``spin`` (natoms, 3) μB (ignored, i.e. treated as zero, on non-magnetic atoms).
    """
    coord, spin = np.asarray(coord, float), np.asarray(spin, float)
    mag = np.asarray(MAGNETIC)[atype]
    spin = np.where(mag[:, None], spin, 0.0)
    i, j, rij = neighbor_pairs(coord, box)
    r = np.linalg.norm(rij, axis=-1)
    phi, dphi = morse(r, atype[i], atype[j])
    jr, djr = exchange(r)
    both = mag[i] & mag[j]
    jr, djr = np.where(both, jr, 0.0), np.where(both, djr, 0.0)
    sisj = np.einsum("pd,pd->p", spin[i], spin[j])
    u = phi - jr * sisj  # pair energy
    du = dphi - djr * sisj  # its r-derivative at fixed spins
    s2 = np.einsum("id,id->i", spin, spin)
    energy = 0.5 * u.sum() + np.sum(np.where(mag, A_L * (s2 - M0**2) ** 2, 0.0))
    natoms = len(coord)
    # dE/dr_i = -Σ_{j,n} u'(r) r̂_ij (pair function symmetric in i <-> j)
    force = np.zeros((natoms, 3))
    np.add.at(force, i, (du / r)[:, None] * rij)
    force_mag = np.zeros((natoms, 3))
    np.add.at(force_mag, i, jr[:, None] * spin[j])  # -dE/ds_i = Σ_{j,n} J(r) s_j
    force_mag -= np.where(mag, 4 * A_L * (s2 - M0**2), 0.0)[:, None] * spin
    virial = -0.5 * np.einsum("p,pk,pd->kd", du / r, rij, rij)
    return {"energy": float(energy), "force": force, "force_mag": force_mag, "virial": virial.reshape(9)}


# ---------------------------------------------------------------------------------------- the frames
def b2_sites():
    """Fractional positions of the 2x2x2 B2 cell: 8 corner (Fe) sites, then 8 body-centre (Al) sites."""
    cube = np.array([[a, b, c] for a in range(2) for b in range(2) for c in range(2)], dtype=float)
    return np.concatenate([cube, cube + 0.5]) / 2.0


def random_frame(atype, rng):
    """coord (natoms, 3), box (9,), spin (natoms, 3) of one strained, displaced cell with random spins."""
    a = A0 * (1 + rng.uniform(-0.02, 0.02))
    eps = rng.normal(0.0, 0.01, (3, 3))
    cell = 2 * a * np.eye(3) @ (np.eye(3) + 0.5 * (eps + eps.T))
    coord = b2_sites() @ cell + rng.normal(0.0, rng.uniform(0.03, 0.10), (len(atype), 3))
    return coord, cell.reshape(9), random_spins(atype, rng)


def random_spins(atype, rng):
    """Spins (natoms, 3) μB: uniformly random directions, lengths uniform in M0 ± 0.6; zero on non-magnetic atoms."""
    direction = rng.normal(size=(len(atype), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    spin = direction * rng.uniform(M0 - 0.6, M0 + 0.6, (len(atype), 1))
    spin[~np.asarray(MAGNETIC)[atype]] = 0.0
    return spin


def make_system(path, n_antisite: int, nframes: int, rng) -> Path:
    """Write one deepmd/npy system: the B2 cell with ``n_antisite`` Al sites (random, fixed) taken by Fe."""
    path = Path(path)
    atype = np.array([0] * 8 + [1] * 8)
    atype[8 + rng.choice(8, n_antisite, replace=False)] = 0
    frames = [random_frame(atype, rng) for _ in range(nframes)]
    lab = [labels(c, b, atype, s) for c, b, s in frames]
    s = path / "set.000"
    s.mkdir(parents=True, exist_ok=True)
    (path / "type.raw").write_text(" ".join(str(t) for t in atype) + "\n")
    (path / "type_map.raw").write_text("\n".join(TYPE_MAP) + "\n")
    np.save(s / "coord.npy", np.array([c.reshape(-1) for c, _, _ in frames]))
    np.save(s / "box.npy", np.array([b for _, b, _ in frames]))
    np.save(s / "spin.npy", np.array([sp.reshape(-1) for _, _, sp in frames]))
    np.save(s / "energy.npy", np.array([lb["energy"] for lb in lab]))
    for k in ("force", "force_mag", "virial"):
        np.save(s / f"{k}.npy", np.array([lb[k].reshape(-1) for lb in lab]))
    return path


def make_data(out=DEFAULT_OUT, seed: int = 1, frames: int = 200, valid_frames: int = 50) -> list[Path]:
    """All systems of the example under ``out``; deterministic for ``seed``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    return [
        make_system(out / "train" / "Fe8Al8", 0, frames, rng),
        make_system(out / "train" / "Fe10Al6", 2, frames, rng),
        make_system(out / "valid" / "Fe8Al8", 0, valid_frames, rng),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--frames", type=int, default=200, help="frames per training system (default 200)")
    p.add_argument("--valid-frames", type=int, default=50, help="frames of the validation system (default 50)")
    args = p.parse_args(argv)
    if args.frames < 1 or args.valid_frames < 1:
        p.error("--frames and --valid-frames must be >= 1")
    for path in make_data(args.out, args.seed, args.frames, args.valid_frames):
        e = np.load(path / "set.000" / "energy.npy")
        fm = np.load(path / "set.000" / "force_mag.npy")
        f = np.load(path / "set.000" / "force.npy")
        print(f"{path}: {len(e)} frames, energy {e.min():.3f} .. {e.max():.3f} eV, "
              f"rms force {np.sqrt(np.mean(f**2)):.3f} eV/Å, rms force_mag {np.sqrt(np.mean(fm**2)):.3f} eV/μB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
