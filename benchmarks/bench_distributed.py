"""Data-parallel training throughput: 1 process with batch_size 2 vs 2 processes with batch_size 1 (the same
global batches, docs/distributed.md), per backend, and the time of one all-reduce of the parameters.

    python benchmarks/bench_distributed.py [--backends torch,jax] [--steps 20] [--rounds 1] [--model water]

Training: the DeePMD-kit water example (192 atoms, se_e2_a, or ``--model dpa1``: se_atten_v2 of
examples/water_dpa1) on water data_0-2, ``dpcore train --numb-steps N`` in a fresh folder, 1 thread per process;
s/step is the loop's own average over steps 2..N (rank 0's log), first step (compilation) excluded.  2 processes:
``torchrun --standalone --nproc_per_node=2`` (torch), ``python -m dpcore.train.launch --nproc-per-node 2`` (jax).
Rounds interleave the runs (JAX's persistent compilation cache is shared by them).  All-reduce: 2 processes
sum a float64 tree of the model's size with the adapter's ``all_reduce_sum`` (the call the training step
makes), median of 30 after 5 warm-ups.
The load average is printed with every line: on a shared machine only ratios measured side by side mean much.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import WATER, water_input  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
for _k in ("WORLD_SIZE", "RANK", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "XLA_FLAGS"):
    ENV.pop(_k, None)
LAUNCH = {"torch": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
          "jax": [sys.executable, "-m", "dpcore.train.launch", "--nproc-per-node", "2"]}
ALLREDUCE = """
import sys, time, numpy as np
from dpcore.backends import get_backend
be = get_backend(sys.argv[1])
rank, size, _ = be.init_process_group()
n = int(sys.argv[2])
tree = be.tree_asarray({"w": np.full(n, 1.0 + rank)})
times = []
for i in range(35):
    t = time.perf_counter()
    out = be.all_reduce_sum(tree)
    be.to_numpy(out["w"][:1])
    times.append(time.perf_counter() - t)
assert float(be.to_numpy(out["w"][0])) == 3.0
if rank == 0:
    print("ALLREDUCE", np.median(times[5:]))
be.close_process_group()
"""


def model_input(model: str, batch_size: int) -> dict:
    cfg = water_input(10)
    if model == "dpa1":
        dpa1 = json.loads((ROOT / "examples" / "water_dpa1" / "input.json").read_text())
        cfg["model"] = dpa1["model"]
    for key in ("training_data", "validation_data"):
        cfg["training"][key]["batch_size"] = batch_size
    cfg["learning_rate"]["scale_by_worker"] = "none"
    return cfg


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def train_run(backend: str, workers: int, model: str, steps: int, cache: str) -> dict:
    with tempfile.TemporaryDirectory() as work:
        Path(work, "input.json").write_text(json.dumps(model_input(model, 2 // workers)))
        prefix = [sys.executable] if workers == 1 else LAUNCH[backend] + ([sys.executable] if backend == "jax" else [])
        cmd = prefix + ["-m", "dpcore", "train", "input.json", "--backend", backend, "--numb-steps", str(steps)]
        before = load()
        proc = subprocess.run(cmd, cwd=work, env={**ENV, "JAX_COMPILATION_CACHE_DIR": cache}, capture_output=True,
                              text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    per = re.search(r"average ([\d.]+) s/step \(excluding the first step, ([\d.]+) s\)", proc.stderr)
    params = re.search(r"(\d+) trainable parameters", proc.stderr)
    return {"backend": backend, "workers": workers, "s_per_step": float(per.group(1)),
            "first_s": float(per.group(2)), "params": int(params.group(1)), "load": f"{before} -> {load()}"}


def allreduce_run(backend: str, n: int) -> float:
    with tempfile.TemporaryDirectory() as work:
        Path(work, "allreduce.py").write_text(ALLREDUCE)
        python = [] if backend == "torch" else [sys.executable]  # torchrun starts python itself
        proc = subprocess.run(LAUNCH[backend] + python + ["allreduce.py", backend, str(n)], cwd=work, env=ENV,
                              capture_output=True, text=True)
    found = re.search(r"ALLREDUCE ([\d.e-]+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"all-reduce run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return float(found.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="torch,jax")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--model", choices=("water", "dpa1"), default="water")
    ap.add_argument("--allreduce-only", type=int, default=None, metavar="N_PARAMS",
                    help="only time the all-reduce of N_PARAMS float64 (no training runs)")
    args = ap.parse_args(argv)
    backends = args.backends.split(",")
    if args.allreduce_only:
        return allreduce_table(backends, args.allreduce_only)
    if not WATER.is_dir():
        print(f"water data not found at {WATER}", file=sys.stderr)
        return 1
    print(f"model {args.model}, {args.steps} steps, load average (1/5/15 min) at start {load()}", flush=True)
    rows, cache = {}, tempfile.mkdtemp(prefix="jax_cache_")  # JAX's compilations shared by the runs
    for r in range(args.rounds):
        for backend in backends:
            for workers in (1, 2):
                res = train_run(backend, workers, args.model, args.steps, cache)
                rows.setdefault((backend, workers), []).append(res)
                print(f"round {r}: {backend} {workers} process(es): {res['s_per_step']:.4f} s/step (first "
                      f"{res['first_s']:.1f} s), load {res['load']}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    n = rows[(backends[0], 1)][0]["params"]
    print(f"\n{n} trainable parameters: {8 * n / 1e6:.2f} MB per all-reduce (float64)\n")
    print("| backend | 1 process, b = 2: s/step, frames/s | 2 processes x b = 1: s/step, frames/s | speed-up |")
    print("|---|---|---|---|")
    for backend in backends:
        one = min(x["s_per_step"] for x in rows[(backend, 1)])
        two = min(x["s_per_step"] for x in rows[(backend, 2)])
        print(f"| {backend} | {one:.3f}, {2 / one:.1f} | {two:.3f}, {2 / two:.1f} | {one / two:.2f}x |")
    print()
    return allreduce_table(backends, n)


def allreduce_table(backends, n: int) -> int:
    for backend in backends:
        t = allreduce_run(backend, n)
        print(f"all-reduce of {n} float64 over 2 processes, {backend}: {1e3 * t:.2f} ms (load {load()})", flush=True)
    print(f"load average at the end {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
