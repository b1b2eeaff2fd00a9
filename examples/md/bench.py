"""Time per MD step through the ASE calculator next to ``model.evaluate``, per backend.

    python examples/md/bench.py                                  # every backend
    python examples/md/bench.py --backends numpy,jax --steps 1000

Each backend runs in its own process (paddle crashes when imported after tensorflow). A worker loads the
quickstart's model (see md.py), runs ``--steps`` NVE steps (velocity Verlet, 2 fs, 300 K) of the 108-atom
Cu-Au cell through :class:`dpcore.calculator.DP`, timing every step, and times ``model.evaluate`` alone on
``--eval-calls`` of the visited configurations, interleaved with the steps (so both see the same machine
load). Printed: a Markdown table (first call, which loads the framework and compiles where the backend
compiles; median, mean and max time per MD step after it; median ``model.evaluate``; the NVE drift) and the
load average (``uptime``) before and after. Results also go to ``examples/md/run/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from md import DEFAULT_OUT, cuau_cell, default_model, drift_per_atom_ps  # noqa: E402  (this folder)

BACKENDS = "numpy,array_api_strict,jax,torch,tensorflow,paddle"


def worker(backend: str, steps: int, eval_calls: int, model_path) -> dict:
    """One backend: timed NVE steps through the calculator and, interleaved, timed ``model.evaluate`` calls."""
    from ase import units
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    from dpcore.calculator import DP

    calc = DP(model_path, backend=backend)
    model = calc.model
    atoms = cuau_cell(3, seed=1)
    atoms.calc = calc
    rng = np.random.default_rng(1)
    atoms.set_momenta(rng.normal(0.0, 1.0, (len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 300))
    Stationary(atoms)
    t0 = time.perf_counter()
    atoms.get_forces()
    first = time.perf_counter() - t0

    dyn = VelocityVerlet(atoms, timestep=2.0 * units.fs)
    atype, box = calc.atom_types(atoms), atoms.cell[:].reshape(1, 9)
    every = max(1, steps // max(1, eval_calls))
    step_ms, eval_ms, etot, clock = [], [], [], [None]

    def observe():
        # Step times exclude this observer; model.evaluate is timed here, interleaved with the steps, so both
        # numbers see the same load on a shared machine.
        entered = time.perf_counter()
        if clock[0] is not None:
            step_ms.append(1e3 * (entered - clock[0]))
        etot.append(atoms.get_total_energy())
        if len(etot) % every == 0:
            t0 = time.perf_counter()
            model.evaluate(atoms.positions[None], atype, box, backend=backend)
            eval_ms.append(1e3 * (time.perf_counter() - t0))
        clock[0] = time.perf_counter()

    dyn.attach(observe, interval=1)
    dyn.run(steps)
    step_ms = np.array(step_ms)
    rec = np.column_stack([np.arange(len(etot)) * 2.0, np.zeros(len(etot)), np.zeros(len(etot)), etot])
    return {"backend": backend, "natoms": len(atoms), "steps": steps, "first_call_s": first,
            "md_step_ms_median": float(np.median(step_ms)), "md_step_ms_mean": float(step_ms.mean()),
            "md_step_ms_max": float(step_ms.max()), "evaluate_ms_median": float(np.median(eval_ms)),
            "evaluate_calls": len(eval_ms), "drift_eV_per_atom_ps": drift_per_atom_ps(rec, len(atoms))}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default=BACKENDS)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-calls", type=int, default=200)
    p.add_argument("--model", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    model = args.model or str(default_model())
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.eval_calls, model)))
        return
    before, rows = uptime(), []
    for backend in args.backends.split(","):
        proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--steps", str(args.steps),
                               "--eval-calls", str(args.eval_calls), "--model", model],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{backend}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{backend}: done", file=sys.stderr)
    after = uptime()
    print(f"model {model}; {rows[0]['natoms'] if rows else '?'} atoms, {args.steps} NVE steps of 2 fs\n")
    print("| backend | first call (s) | MD step median (ms) | MD step mean (ms) | MD step max (ms) | "
          "model.evaluate median (ms) | NVE drift (eV/atom/ps) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['first_call_s']:.2f} | {r['md_step_ms_median']:.1f} | {r['md_step_ms_mean']:.1f} | "
              f"{r['md_step_ms_max']:.1f} | {r['evaluate_ms_median']:.1f} | {r['drift_eV_per_atom_ps']:+.1e} |")
    print(f"\nbefore: {before}\nafter:  {after}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"rows": rows, "uptime_before": before, "uptime_after": after},
                                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
