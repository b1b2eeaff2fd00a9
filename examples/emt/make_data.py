"""Training data for the dpcore example: a 32-atom Cu-Au fcc alloy labelled with ASE's EMT potential.

    python examples/emt/make_data.py                 # writes examples/emt/data/{train,valid}/...
    python examples/emt/make_data.py --out /tmp/emt --seed 7 --frames 50 --valid-frames 10

Every frame is the 2x2x2 conventional fcc cell (32 atoms) with a new random arrangement of the
Cu and Au atoms on its sites, a random lattice parameter (+-2 % around Vegard's law), a random
small symmetric strain (~1 %) and Gaussian "thermal" displacements (standard deviation 0.02-0.08
Å).  Systems (deepmd/npy, SPEC 10.1; atoms left in random type order):

    data/train/Cu24Au8     --frames frames        data/train/Cu28Au4   --frames frames
    data/valid/Cu24Au8     --valid-frames frames (other random arrangements)

each with ``type.raw``, ``type_map.raw`` (Cu, Au) and ``set.000/{coord,box,energy,force,virial}.npy``
in eV, Å, eV/Å.  The virial is DeePMD-kit's ``W = -V * stress`` (ASE's stress is positive under
tension), i.e. ``W[k, d] = -dE/d eps[d, k]`` for the deformation ``r -> r (I + eps)`` (row vectors).
The output is a pure function of ``--seed``.  Takes a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TYPE_MAP = ["Cu", "Au"]
A_CU, A_AU = 3.61, 4.08  # EMT-ish lattice parameters, Å
DEFAULT_OUT = Path(__file__).resolve().parent / "data"


def label(atoms) -> dict:
    """EMT energy (eV), forces (natoms, 3) eV/Å and DeePMD virial (9,) eV of an ASE Atoms object."""
    from ase.calculators.emt import EMT

    atoms = atoms.copy()
    atoms.calc = EMT()
    energy = atoms.get_potential_energy()
    force = atoms.get_forces()
    virial = -atoms.get_volume() * atoms.get_stress(voigt=False)  # DeePMD sign: W = -V * sigma
    return {"energy": float(energy), "force": force, "virial": virial.reshape(9)}


def random_frame(symbols, rng):
    """One strained, thermally displaced 2x2x2 fcc cell: atom i (element ``symbols[i]``) on a random site."""
    from ase.build import bulk

    x_au = np.mean(np.asarray(symbols) == "Au")
    a0 = (1 - x_au) * A_CU + x_au * A_AU
    atoms = bulk("Cu", "fcc", a=a0 * (1 + rng.uniform(-0.02, 0.02)), cubic=True).repeat((2, 2, 2))
    atoms.positions = atoms.positions[rng.permutation(len(atoms))]  # a fresh arrangement of the elements
    atoms.set_chemical_symbols(list(symbols))
    eps = rng.normal(0.0, 0.01, (3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.08), atoms.positions.shape)
    return atoms


def make_system(path, n_au: int, nframes: int, rng) -> Path:
    """Write one deepmd/npy system of ``nframes`` frames of Cu_{32-n_au} Au_{n_au}.

    ``type.raw`` is fixed for a system (in a random order, so readers must handle unsorted types), but
    every frame puts the atoms on the lattice sites in a new random order: each frame is another
    arrangement of the alloy, so the model sees many chemical environments.
    """
    path = Path(path)
    symbols = np.array(["Cu"] * 32)
    symbols[rng.choice(32, n_au, replace=False)] = "Au"
    frames = [random_frame(symbols, rng) for _ in range(nframes)]
    labels = [label(f) for f in frames]
    s = path / "set.000"
    s.mkdir(parents=True, exist_ok=True)
    (path / "type.raw").write_text(" ".join(str(TYPE_MAP.index(x)) for x in symbols) + "\n")
    (path / "type_map.raw").write_text("\n".join(TYPE_MAP) + "\n")
    np.save(s / "coord.npy", np.array([f.positions.reshape(-1) for f in frames]))
    np.save(s / "box.npy", np.array([f.cell[:].reshape(-1) for f in frames]))
    np.save(s / "energy.npy", np.array([lb["energy"] for lb in labels]))
    np.save(s / "force.npy", np.array([lb["force"].reshape(-1) for lb in labels]))
    np.save(s / "virial.npy", np.array([lb["virial"] for lb in labels]))
    return path


def make_data(out=DEFAULT_OUT, seed: int = 1, frames: int = 150, valid_frames: int = 50) -> list[Path]:
    """All systems of the example under ``out``; deterministic for ``seed``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    return [
        make_system(out / "train" / "Cu24Au8", 8, frames, rng),
        make_system(out / "train" / "Cu28Au4", 4, frames, rng),
        make_system(out / "valid" / "Cu24Au8", 8, valid_frames, rng),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--frames", type=int, default=150, help="frames per training system (default 150)")
    p.add_argument("--valid-frames", type=int, default=50, help="frames of the validation system (default 50)")
    args = p.parse_args(argv)
    if args.frames < 1 or args.valid_frames < 1:
        p.error("--frames and --valid-frames must be >= 1")
    for path in make_data(args.out, args.seed, args.frames, args.valid_frames):
        e = np.load(path / "set.000" / "energy.npy")
        print(f"{path}: {len(e)} frames, energy {e.min():.3f} .. {e.max():.3f} eV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
