"""Molecular dynamics with a dpcore model through ASE: NVE (velocity Verlet), then NVT (Langevin).

    python examples/md/md.py                            # the quickstart's Cu-Au model, NumPy backend
    python examples/md/md.py --backend jax --steps 1000 --temperature 600
    python examples/md/md.py --model examples/emt/run   # a training checkpoint works too

The model defaults to ``examples/emt/run/emt.dp`` (README quickstart: make_data.py, dpcore train,
dpcore freeze), or the latest checkpoint in ``examples/emt/run`` when that file is absent. The system is a
3x3x3 fcc cell (108 atoms) of Cu with a random quarter of the sites Au, the composition of the training data.

Outputs go to ``--out`` (default ``examples/md/run/``): ``nve.traj`` and ``nvt.traj`` (ASE trajectories,
every ``--traj-every`` steps), ``nve.csv`` / ``nvt.csv`` (time, energies, temperature of every step),
``summary.json`` and, when matplotlib is installed, ``energies.png``. Printed: the NVE total-energy drift
in eV/atom/ps (slope of a straight-line fit of E_total/N against time) and the time per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL = REPO / "examples" / "emt" / "run" / "emt.dp"
DEFAULT_OUT = Path(__file__).resolve().parent / "run"
A_CU, A_AU = 3.61, 4.08  # Å, as in examples/emt/make_data.py (Vegard's law between them)


def default_model() -> Path:
    """The quickstart's frozen model, or its checkpoint folder when the model was not frozen."""
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    if (DEFAULT_MODEL.parent / "checkpoint").is_file():
        return DEFAULT_MODEL.parent
    sys.exit(f"no model at {DEFAULT_MODEL} (nor a checkpoint next to it): run the quickstart of README.md first\n"
             "  python examples/emt/make_data.py\n  dpcore train examples/emt/input.json --backend jax\n"
             "  dpcore freeze examples/emt/run -o examples/emt/run/emt.dp")


def cuau_cell(repeat: int = 3, x_au: float = 0.25, seed: int = 1):
    """An fcc Cu_(1-x) Au_x cell of 4 repeat^3 atoms, random arrangement, Vegard lattice parameter (Å)."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=(1 - x_au) * A_CU + x_au * A_AU, cubic=True).repeat((repeat,) * 3)
    atoms.symbols[rng.choice(len(atoms), round(x_au * len(atoms)), replace=False)] = "Au"
    return atoms


def run(atoms, dyn, steps: int, traj_path: Path, traj_every: int) -> np.ndarray:
    """Run ``steps`` steps of ``dyn`` on ``atoms``, recording every step (step 0 included).

    Returns (steps + 1, 5): time (fs), potential, kinetic and total energy (eV), temperature (K).
    """
    from ase import units
    from ase.io import Trajectory

    rows = []

    def record():
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        rows.append((dyn.get_time() / units.fs, epot, ekin, epot + ekin, atoms.get_temperature()))

    with Trajectory(str(traj_path), "w", atoms) as traj:
        dyn.attach(record, interval=1)
        dyn.attach(traj.write, interval=traj_every)
        dyn.run(steps)  # ASE calls the observers once before the first step too
    return np.array(rows)


def drift_per_atom_ps(records: np.ndarray, natoms: int) -> float:
    """Slope of a least-squares line through E_total / N against time, in eV/atom/ps."""
    t_ps = records[:, 0] / 1000.0
    return float(np.polyfit(t_ps, records[:, 3] / natoms, 1)[0])


def plot(runs: dict, natoms: int, path: Path) -> str:
    """Energies per atom against time for each run, into ``path``; a message if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    fig, axes = plt.subplots(len(runs), 1, figsize=(7, 3.2 * len(runs)), sharex=True, squeeze=False)
    for ax, (name, rec) in zip(axes[:, 0], runs.items()):
        e0 = rec[0, 3] / natoms
        for col, label in ((1, "potential"), (2, "kinetic"), (3, "total")):
            ax.plot(rec[:, 0] / 1000.0, rec[:, col] / natoms - (e0 if col != 2 else 0.0), label=label, lw=1)
        ax.set_ylabel("eV/atom (pot., total: − E_total(0))")
        ax.set_title(name)
        ax.legend(loc="best", fontsize=8)
    axes[-1, 0].set_xlabel("time (ps)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model file (.dp/.yaml) or checkpoint (default: the quickstart's)")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=1000, help="steps of each run (default 1000)")
    p.add_argument("--dt", type=float, default=2.0, help="time step in fs (default 2)")
    p.add_argument("--temperature", type=float, default=300.0, help="K: initial velocities and the thermostat")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    p.add_argument("--repeat", type=int, default=3, help="fcc cells per direction (4 repeat^3 atoms, default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--traj-every", type=int, default=10)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    try:  # ASE >= 3.29; MaxwellBoltzmannDistribution before (same distribution)
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

    from dpcore.calculator import DP

    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or default_model()
    calc = DP(model, backend=args.backend, device=args.device)
    atoms = cuau_cell(args.repeat, seed=args.seed)
    atoms.calc = calc
    n = len(atoms)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    Stationary(atoms)  # no centre-of-mass motion ...
    atoms.set_constraint(FixCom())  # ... ever (ASE's recommended form for Langevin, instead of its fixcm)
    t0 = time.perf_counter()
    atoms.get_forces()  # the first call: loads the backend, compiles where it compiles
    first = time.perf_counter() - t0
    print(f"model {model} ({args.backend}), {n} atoms {atoms.get_chemical_formula()}, dt {args.dt} fs, "
          f"first force call {first:.2f} s")

    runs, summary = {}, {"model": str(model), "backend": args.backend, "natoms": n, "dt_fs": args.dt,
                         "steps": args.steps, "first_call_s": first}
    for name, dyn in (("nve", VelocityVerlet(atoms, timestep=args.dt * units.fs)),
                      ("nvt", Langevin(atoms, timestep=args.dt * units.fs, temperature_K=args.temperature,
                                       friction=args.friction / units.fs, fixcm=False, rng=np.random.default_rng(args.seed)))):
        t0 = time.perf_counter()
        rec = run(atoms, dyn, args.steps, args.out / f"{name}.traj", args.traj_every)
        per_step = (time.perf_counter() - t0) / args.steps
        np.savetxt(args.out / f"{name}.csv", rec, delimiter=",", fmt="%.10g",
                   header="time_fs,epot_eV,ekin_eV,etot_eV,temperature_K")
        runs[name.upper()] = rec
        t_last = rec[len(rec) // 2:, 4]
        summary[name] = {"ms_per_step": 1e3 * per_step, "mean_T_second_half_K": float(t_last.mean())}
        line = f"{name.upper()}: {args.steps} steps, {1e3 * per_step:.1f} ms/step, <T> (2nd half) {t_last.mean():.0f} K"
        if name == "nve":  # the total energy is conserved only without the thermostat
            summary[name].update(drift_eV_per_atom_ps=drift_per_atom_ps(rec, n),
                                 max_abs_dE_eV_per_atom=float(np.abs(rec[:, 3] - rec[0, 3]).max() / n))
            line += (f", total-energy drift {summary[name]['drift_eV_per_atom_ps']:+.2e} eV/atom/ps, "
                     f"max |E(t) - E(0)| {summary[name]['max_abs_dE_eV_per_atom']:.2e} eV/atom")
        print(line)
    print(plot(runs, n, args.out / "energies.png"))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"trajectories, energies and summary.json in {args.out}")
    return summary


if __name__ == "__main__":
    main()
