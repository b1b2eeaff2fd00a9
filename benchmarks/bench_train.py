"""Seconds per training step on the DeePMD-kit water example (192 atoms, se_e2_a [25, 50, 100], fitting
[240, 240, 240], float64, batch 1 frame, energy + force loss), one process per backend.

    python benchmarks/bench_train.py [--backends torch,jax,tensorflow,paddle] [--steps 40]

Each backend process runs ``dpcore.train.loop.train`` on water data_0-2 (validation data_3) for ``--steps``
steps, displaying only at step 1, and reports the loop's own timing: the average over steps 2..N
(the first step pays for tracing / compilation, reported separately), host work (batch, pair data)
included.  The machine's load average is printed with the table: the timings are only comparable
on an otherwise idle machine.
Target (issue): <= 0.10 s/step on the best backend; DeePMD-kit's fastest backend here: 0.15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water"
BACKENDS = ("torch", "jax", "tensorflow", "paddle")


def water_input(steps: int) -> dict:
    return {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                                 "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16, "seed": 1,
                                 "precision": "float64"},
                  "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1, "precision": "float64"}},
        "learning_rate": {"type": "exp", "decay_steps": 100, "start_lr": 1e-3, "stop_lr": 1e-5},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(WATER / f"data_{i}") for i in range(3)], "batch_size": "auto"},
                     "validation_data": {"systems": [str(WATER / "data_3")], "batch_size": 1, "numb_btch": 1},
                     "numb_steps": steps, "seed": 10, "disp_freq": 10 ** 9, "save_freq": 10 ** 9},
    }


def run_one(backend: str, steps: int) -> dict:
    from dpcore.train import train

    with tempfile.TemporaryDirectory() as work:
        out = train(water_input(steps), backend, workdir=work)
    return {"backend": backend, "s_per_step": out["s_per_step"], "first_step_s": out["first_step_s"],
            "steps": steps, "settings": {k: str(v) for k, v in out.get("settings", {}).items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(args.worker, args.steps)))
        return 0
    if not (WATER / "data_0" / "type.raw").exists():
        sys.exit(f"water data not found under {WATER}")
    rows = []
    load0 = os.getloadavg()[0]
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--steps", str(args.steps)],
                              capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            tail = "\n".join(proc.stderr.splitlines()[-5:])
            rows.append({"backend": backend, "error": tail or f"exit {proc.returncode}"})
        else:
            rows.append(json.loads(line[-1][7:]))
        print(f"[{backend}] done", file=sys.stderr)
    print(f"Water training step (192 atoms, float64, batch 1), {args.steps} steps; load average "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| backend | s/step | first step (compile) s |")
    print("|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | failed: {r['error'].splitlines()[-1]} | |")
        else:
            print(f"| {r['backend']} | {r['s_per_step']:.3f} | {r['first_step_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
