"""Training step time of dpcore next to DeePMD-kit on the same input.json, side by side in one run.

    python benchmarks/bench_train_vs_deepmd.py [--steps 60] [--disp 10] [--rounds 2] [--threads 1]
                                               [--dpcore torch,jax,tensorflow,paddle] [--deepmd pt,tf] [--precision float32]

The input is the DeePMD-kit water example (benchmarks/bench_train.py's ``water_input``: se_e2_a [25, 50, 100],
fitting [240, 240, 240], float64, batch 1, validation 1 batch) with ``disp_freq = --disp``.  Every measurement
is one process; the configurations rotate round by round; threads are equal everywhere (DeePMD-kit and dpcore
both read ``DP_INTRA_OP_PARALLELISM_THREADS`` / ``DP_INTER_OP_PARALLELISM_THREADS``; printed), and every run is
pinned to the same ``--threads`` cores (``--pin``): JAX's XLA runtime sizes its thread pool from the cores the
process may use, not from these settings, and took a second core (~120% CPU) when not pinned.

What is timed, the same for both: the wall time of each display interval (``--disp`` training steps plus one
validation batch and the lcurve line) divided by ``--disp``, median over the intervals after the first (the
first pays for tracing and compilation).  dpcore's quick first compile (dpcore.train.tiers) is turned off
(``DPCORE_QUICK_STEPS=0``): its first 20 steps would fall in the measured intervals.  DeePMD-kit's intervals
come from its log (``Batch N: total wall time = T s``), dpcore's from its log (``... s/step``).  DeePMD-kit from
``$DPCORE_DPKIT_VENV`` (default .dpkit-venv/, made by .ci/deepmd_venv.sh); without it only dpcore's rows are
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_train import WATER, water_input  # noqa: E402

VENV = Path(os.environ.get("DPCORE_DPKIT_VENV", HERE.parent / ".dpkit-venv"))
DP_WALL = re.compile(r"Batch\s+(\d+): total wall time = ([\d.]+) s")
DPCORE_WALL = re.compile(r"step (\d+)/\d+ .*\| ([\d.]+) s/step")
TWIN = {"torch": "pt", "tensorflow": "tf", "jax": "jax", "paddle": "pd"}


def config(steps: int, disp: int, precision: str = "float64", type_one_side: bool = False) -> dict:
    cfg = water_input(steps)
    cfg["training"].update(disp_freq=disp, save_freq=10 ** 6, disp_file="lcurve.out")
    for key in ("descriptor", "fitting_net"):
        cfg["model"][key]["precision"] = precision
    if type_one_side:
        cfg["model"]["descriptor"]["type_one_side"] = True
    return cfg


def run(kind: str, steps: int, disp: int, env: dict, precision: str = "float64", cores=None,
        type_one_side: bool = False) -> dict:
    """One training run in its own process; returns the per-interval s/step after the first interval."""
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "input.json").write_text(json.dumps(config(steps, disp, precision, type_one_side)))
        if kind.startswith("deepmd:"):
            cmd = [str(VENV / "bin" / "dp"), f"--{kind.split(':')[1]}", "train", "input.json", "--skip-neighbor-stat"]
            run_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        else:
            cmd = [sys.executable, "-m", "dpcore", "train", "input.json", "--backend", kind.split(":")[1]]
            run_env = env
        pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
        proc = subprocess.run(cmd, cwd=work, env=run_env, capture_output=True, text=True, timeout=3600,
                              preexec_fn=pin)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0:
            return {"error": (text.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:160]}
        if kind.startswith("deepmd:"):
            walls = [float(t) / disp for b, t in DP_WALL.findall(text)]
        else:
            walls = [float(t) for s, t in DPCORE_WALL.findall(text) if int(s) > 1]
        lcurve = (Path(work) / "lcurve.out").read_text().splitlines()
        return {"per_step": walls[1:] or walls, "last_lcurve": lcurve[-1] if lcurve else ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--disp", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--dpcore", default="torch,jax,tensorflow,paddle")
    ap.add_argument("--deepmd", default="tf,pt")
    ap.add_argument("--precision", default="float64", help="descriptor and fitting precision of every run")
    ap.add_argument("--type-one-side", action="store_true", help="descriptor.type_one_side true in every run "
                    "(DeePMD-kit 3.2.0's JAX backend fails and its Paddle backend gives NaN forces at step 1 in "
                    "float64 without it)")
    ap.add_argument("--pin", default="auto", help="CPU cores every run is pinned to (sched_setaffinity), e.g. '0' "
                    "or '0,1'; 'auto': the first --threads cores; 'off': not pinned")
    args = ap.parse_args(argv)
    if args.pin == "off":
        cores = None
    else:
        allowed = sorted(os.sched_getaffinity(0))
        cores = set(allowed[:int(args.threads)] if args.pin == "auto" else (int(c) for c in args.pin.split(",")))
    if not (WATER / "data_0" / "type.raw").exists():
        sys.exit(f"water data not found under {WATER}")
    kinds = [f"dpcore:{b}" for b in args.dpcore.split(",") if b]
    if (VENV / "bin" / "dp").exists():
        kinds += [f"deepmd:{b}" for b in args.deepmd.split(",") if b]
    else:
        print(f"(no DeePMD-kit venv at {VENV}: dpcore only)", file=sys.stderr)
    env = {**os.environ, "DP_INTRA_OP_PARALLELISM_THREADS": args.threads, "DP_INTER_OP_PARALLELISM_THREADS": "1",
           "OMP_NUM_THREADS": args.threads, "TF_CPP_MIN_LOG_LEVEL": "3", "DPCORE_QUICK_STEPS": "0"}
    results: dict = {k: [] for k in kinds}
    errors: dict = {}
    load0 = os.getloadavg()
    for r in range(args.rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        for kind in order:
            out = run(kind, args.steps, args.disp, env, args.precision, cores, args.type_one_side)
            if "error" in out:
                errors[kind] = out["error"]
            else:
                results[kind] += out["per_step"]
            print(f"[round {r + 1}] {kind}: {out.get('error') or statistics.median(out['per_step']):}", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    one_side = ", type_one_side" if args.type_one_side else ""
    print(f"Water training (192 atoms, se_e2_a, {args.precision}{one_side}, batch 1), "
          f"{args.steps} steps, display every {args.disp}; "
          f"threads {args.threads} (DP_INTRA_OP_PARALLELISM_THREADS, OMP_NUM_THREADS), "
          f"{'not pinned' if cores is None else 'pinned to core(s) ' + ','.join(map(str, sorted(cores)))}, {args.rounds} rounds; "
          f"load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    fastest = min((v for k, v in med.items() if k.startswith("deepmd:")), default=None)
    print("| run | s/step (median of intervals) | vs DeePMD-kit's fastest | vs its DeePMD-kit twin |")
    print("|---|---|---|---|")
    for kind in kinds:
        if kind not in med:
            print(f"| {kind} | failed: {errors.get(kind, 'no timing lines')} | | |")
            continue
        twin = f"deepmd:{TWIN.get(kind.split(':')[1], '')}"
        vs_fast = f"{fastest / med[kind]:.2f}x" if fastest and kind.startswith("dpcore") else ""
        vs_twin = f"{med[twin] / med[kind]:.2f}x" if twin in med and kind.startswith("dpcore") else ""
        print(f"| {kind} | {med[kind]:.4f} | {vs_fast} | {vs_twin} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
