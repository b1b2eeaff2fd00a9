"""DPA-1 next to DeePMD-kit's PyTorch backend: training s/step and validation RMSEs at equal steps, and evaluation
time of the 192-atom water frame, side by side in one run.

    python benchmarks/bench_dpa1.py [--steps 20] [--disp 10] [--backends torch,jax,tensorflow,paddle] [--calls 5]

Input: ``examples/water_dpa1/input.json`` (DeePMD-kit's examples/water/se_atten settings: se_atten_v2, sel 120,
attn 128 x 2 layers, neuron [25, 50, 100], fitting [240, 240, 240], float64) with ``numb_steps = --steps`` (the
learning rate decays over those steps in both programs), ``disp_freq = --disp``, absolute data paths.
Every trainer is one process with 1 thread (settings printed): ``dpcore train --backend <b>`` and
``dp --pt train`` (DeePMD-kit 3.2 venv, ``DPCORE_DPKIT_VENV``).  s/step is each program's own average, which
both define the same way: wall time after the first display interval (step 1: data, statistics, compilation),
validation included.  The two programs start from different random weights (each its own initialiser for
seed 1) and draw different batches, so their RMSEs agree only statistically; dpcore's backends must give one
identical lcurve.out (checked and printed).

Evaluation: dpcore's torch model after training (``dpcore freeze``), DeePMD-kit's ``dp convert-backend`` of the
same file to ``.pth``; energy + forces + virial of water data_0 frame 0, ``--calls`` calls after a warm-up per
process, ``--rounds`` interleaved rounds (benchmarks/bench_vs_deepmd.py's worker).  The load average is printed
before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_vs_deepmd import THREADS, VENV, interleaved, water_frame  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "water"
EXAMPLE = ROOT / "examples" / "water_dpa1" / "input.json"
BACKENDS = ("torch", "jax", "tensorflow", "paddle")
EVAL_BACKENDS = ("numpy", "torch", "jax", "tensorflow", "paddle")


def bench_input(steps: int, disp: int) -> dict:
    cfg = json.loads(EXAMPLE.read_text())
    cfg.pop("_comment", None)
    tr = cfg["training"]
    for part in ("training_data", "validation_data"):
        tr[part]["systems"] = [str(SHARED / Path(s).name) for s in tr[part]["systems"]]
    tr.pop("save_dir", None)
    tr.update(numb_steps=steps, disp_file="lcurve.out", disp_freq=disp, save_freq=steps)
    return cfg


def run_trainer(name: str, work: Path, cfg: dict) -> dict:
    """One training process in ``work/<name>``: {"s_per_step", "wall_s", "lcurve" (text)} or {"error"}."""
    folder = work / name.replace(":", "_")
    folder.mkdir()
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    env = {**os.environ, **THREADS}
    if name == "dpkit:pt":
        env.pop("PYTHONPATH", None)
        cmd = [str(VENV / "bin" / "dp"), "--pt", "train", "input.json"]
        pattern = r"average training time: ([0-9.]+) s/batch"
    else:
        cmd = [sys.executable, "-m", "dpcore", "train", "input.json", "--backend", name.split(":", 1)[1]]
        pattern = r"average ([0-9.]+) s/step"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - t0
    found = re.findall(pattern, proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found or not (folder / "lcurve.out").exists():
        return {"error": ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1][:120]}
    return {"s_per_step": float(found[-1]), "wall_s": wall, "lcurve": (folder / "lcurve.out").read_text(),
            "folder": folder}


def lcurve_rows(text: str) -> dict:
    """{step: {column: value}} of an lcurve.out text."""
    lines = text.splitlines()
    names = lines[0].lstrip("#").split()
    data = np.loadtxt(lines, ndmin=2)
    return {int(r[0]): dict(zip(names[1:], r[1:])) for r in data}


def eval_files(work: Path, dp_run: Path) -> dict:
    """dpcore's frozen model (.dp) of a run and DeePMD-kit's .pth of the same file."""
    model = work / "model.dp"
    subprocess.run([sys.executable, "-m", "dpcore", "freeze", str(dp_run), "-o", str(model)], check=True,
                   capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    files = {f"dpcore:{b}": model for b in EVAL_BACKENDS}
    proc = subprocess.run([str(VENV / "bin" / "dp"), "convert-backend", str(model), str(work / "model.pth")],
                          cwd=work, env={**env, **THREADS}, capture_output=True, text=True, timeout=1800)
    if proc.returncode == 0:
        files["dpkit:pth"] = work / "model.pth"
    else:
        print(f"dp convert-backend -> .pth failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return files


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--disp", type=int, default=10)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--no-dpkit", dest="dpkit", action="store_false", help="skip DeePMD-kit")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--keep", default=None, help="folder for the runs (default: a temporary one, removed)")
    args = p.parse_args()
    if not (SHARED / "data_0" / "type.raw").exists():
        sys.exit(f"water data not found at {SHARED}")
    work = Path(args.keep or tempfile.mkdtemp(prefix="dpcore-bench-dpa1-"))
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    cfg = bench_input(args.steps, args.disp)
    names = [f"dpcore:{b}" for b in args.backends.split(",")]
    if args.dpkit and (VENV / "bin" / "dp").exists():
        names.insert(1, "dpkit:pt")  # between two dpcore runs: both see similar load
    runs = {}
    for n in names:
        runs[n] = run_trainer(n, work, cfg)
        print(f"{n}: {runs[n].get('s_per_step', runs[n].get('error'))}", file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print(f"\nDPA-1 water training, {args.steps} steps (disp_freq {args.disp}), float64, batch 1 frame, 1 thread "
          f"({', '.join(f'{k}={v}' for k, v in THREADS.items() if 'THREAD' in k)}); load average {load0} before, "
          f"{load1} after training\n")
    ok = {n: r for n, r in runs.items() if "error" not in r}
    ref = ok.get("dpkit:pt")
    curves = {n: r["lcurve"] for n, r in ok.items() if n.startswith("dpcore")}
    same = len(set(curves.values())) == 1
    print(f"dpcore lcurve.out identical on {', '.join(curves)}: {'yes' if same else 'NO'}\n")
    steps = sorted(set.intersection(*(set(lcurve_rows(r["lcurve"])) for r in ok.values()))) if ok else []
    print("| trainer | s/step | s/step / DeePMD-kit PT's | " + " | ".join(f"step {s} rmse_e_val / rmse_f_val" for s in steps) + " |")
    print("|---|---|---|" + "---|" * len(steps))
    for n in names:
        r = runs[n]
        if "error" in r:
            print(f"| {n} | failed: {r['error']} |")
            continue
        rows = lcurve_rows(r["lcurve"])
        ratio = f"{r['s_per_step'] / ref['s_per_step']:.2f}x" if ref else ""
        cells = " | ".join(f"{rows[s]['rmse_e_val']:.3g} / {rows[s]['rmse_f_val']:.3g}" for s in steps)
        print(f"| {n} | {r['s_per_step']:.3f} | {ratio} | {cells} |")

    dp_run = next((r["folder"] for n, r in ok.items() if n.startswith("dpcore")), None)
    if dp_run is None or args.calls <= 0:
        return 0 if same else 1
    coord, atype, box = water_frame(1)
    np.savez(work / "frame.npz", coord=coord, atype=atype, box=box)
    files = eval_files(work, dp_run)
    results, runs = interleaved(files, work / "frame.npz", args.rounds, args.calls)
    errors = {k: r["error"] for k, rs in runs.items() for r in rs if "error" in r}
    energies = {k: r["energy"] for k, rs in runs.items() for r in rs if "error" not in r}
    med = {k: float(np.median(v)) for k, v in results.items() if v}
    pth = med.get("dpkit:pth")
    print(f"\nDPA-1 evaluation, 192 atoms, energy + forces + virial, median over {args.rounds} rounds x {args.calls} "
          f"calls, 1 thread; load average {os.getloadavg()}\n")
    print("| evaluator | ms/frame | DeePMD-kit .pth time / this | energy (eV) | E - E(.pth) (eV) |")
    print("|---|---|---|---|---|")
    e_ref = energies.get("dpkit:pth")
    for k in files:
        if k not in med:
            print(f"| {k} | failed: {errors.get(k, '?')[:80]} | | | |")
            continue
        ratio = f"{pth / med[k]:.2f}x" if pth and k != "dpkit:pth" else ""
        diff = f"{energies[k] - e_ref:.1e}" if e_ref is not None else ""
        print(f"| {k} | {med[k]:.1f} | {ratio} | {energies[k]:.6f} | {diff} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
