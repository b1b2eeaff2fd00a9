"""A spin model through the ASE calculator: magnetic forces, then a short NVE run at fixed spins.

    python examples/md/spin.py                       # examples/spin/run/spin.dp, else a fresh model
    python examples/md/spin.py --model my_spin.dp --backend jax

The model defaults to ``examples/spin/run/spin.dp`` (examples/spin/README.md: make_data.py, dpcore train,
dpcore freeze); when that file is absent, a fresh (untrained, so its numbers are small and meaningless)
model is built from the ``model`` section of ``examples/spin/input.json`` with
``dpcore.model_from_config(section, seed=1)``. The system is the 2x2x2 B2 Fe-Al cell of that example
(Fe on the cube corners, Al on the body centres) with random Fe moments of 1.6-2.8 μB; Al has none.
A trained model's magnetic force on an Fe atom points mostly along -s for |s| > 2.2 μB and along +s below
(the example's longitudinal term).

Magnetic moments are ASE's non-collinear initial moments, ``atoms.set_initial_magnetic_moments(m)`` with
``m`` of shape (N, 3) in μB. ``calc.get_magnetic_forces()`` is -dE/ds (N, 3) in eV/μB, zero on Al.
The NVE run moves the atoms with the spins held fixed (no spin dynamics: ASE has no spin integrator).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
SPIN_DIR = REPO / "examples" / "spin"
A0, M0 = 2.87, 2.2  # B2 lattice parameter (Å) and moment length (μB) of examples/spin/make_data.py


def load_spin_model(path):
    """(model, where it came from): ``path``, the trained example model, or a fresh model from input.json."""
    import dpcore
    from dpcore.calculator import load_model

    if path is not None:
        return load_model(path), str(path)
    trained = SPIN_DIR / "run" / "spin.dp"
    if trained.is_file():
        return dpcore.load(trained), str(trained)
    section = json.loads((SPIN_DIR / "input.json").read_text())["model"]
    return dpcore.model_from_config(section, seed=1), "a fresh model from examples/spin/input.json (untrained)"


def feal_cell(seed: int = 1):
    """16-atom 2x2x2 B2 Fe8Al8 cell, small random displacements, random Fe moments of M0 ± 0.6 μB."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    atoms = bulk("FeAl", "cesiumchloride", a=A0, cubic=True).repeat((2, 2, 2))
    atoms.set_initial_magnetic_moments(None)  # ase.build may have set collinear moments; these are (N, 3)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    direction = rng.normal(size=(len(atoms), 3))
    length = rng.uniform(M0 - 0.6, M0 + 0.6, (len(atoms), 1))  # as in the training data
    moments = length * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    moments[atoms.symbols == "Al"] = 0.0
    atoms.set_initial_magnetic_moments(moments)
    return atoms


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--steps", type=int, default=200, help="NVE steps at fixed spins (default 200; 0 to skip)")
    p.add_argument("--dt", type=float, default=1.0, help="fs")
    args = p.parse_args(argv)

    from ase import units
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    from dpcore.calculator import DP

    model, origin = load_spin_model(args.model)
    atoms = feal_cell()
    atoms.calc = DP(model, backend=args.backend)
    print(f"model: {origin}; {len(atoms)} atoms {atoms.get_chemical_formula()}, backend {args.backend}")
    print(f"energy {atoms.get_potential_energy():.6f} eV")
    fm = atoms.calc.get_magnetic_forces()
    print("atom  element  moment (μB)                magnetic force -dE/ds (eV/μB)")
    for i, (sym, m, f) in enumerate(zip(atoms.get_chemical_symbols(), atoms.get_initial_magnetic_moments(), fm)):
        print(f"{i:4d}  {sym:7s}  " + " ".join(f"{x:+7.3f}" for x in m) + "    " + " ".join(f"{x:+.3e}" for x in f))
    if args.steps > 0:
        rng = np.random.default_rng(1)
        atoms.set_momenta(rng.normal(0.0, 1.0, (len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 300))
        Stationary(atoms)
        dyn = VelocityVerlet(atoms, timestep=args.dt * units.fs)
        etot = []
        dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=1)
        dyn.run(args.steps)
        etot = np.array(etot) / len(atoms)
        slope = np.polyfit(np.arange(len(etot)) * args.dt / 1000.0, etot, 1)[0]
        print(f"NVE at fixed spins: {args.steps} steps of {args.dt} fs, total-energy drift {slope:+.2e} eV/atom/ps, "
              f"max |E(t) - E(0)| {np.abs(etot - etot[0]).max():.2e} eV/atom")


if __name__ == "__main__":
    main()
