"""Training step time with a competing job on the machine: the framework's default threads against dpcore's
thread plan (backends/threads.py), side by side in one run.

    python benchmarks/bench_threads.py [--backends torch,paddle] [--steps 20] [--rounds 2] [--busy 1]

``--busy N`` starts N pure-Python busy loops (each holds one core) for the whole run, as another user's job
would.  Each measurement is one process training the water example (benchmarks/bench_train.py's input) for
``--steps`` steps; the configurations alternate round by round.  "framework default" = one thread per core
(what torch/Paddle/OpenBLAS choose by themselves); "dpcore auto" = the idle cores measured at start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import WATER, water_input  # noqa: E402

CONFIGS = {"framework default": str(os.cpu_count()), "dpcore auto": "auto"}


def run_one(backend: str, steps: int, threads: str) -> dict:
    from dpcore.backends import threads as plan
    from dpcore.train import train
    import tempfile

    chosen = plan.configure(threads)
    with tempfile.TemporaryDirectory() as work:
        out = train(water_input(steps), backend, workdir=work)
    return {"s_per_step": out["s_per_step"], "threads": chosen.intra}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="torch,paddle")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", type=int, default=1)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(args.worker[0], args.steps, args.worker[1])))
        return 0
    if not (WATER / "data_0" / "type.raw").exists():
        sys.exit(f"water data not found under {WATER}")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    env = {k: v for k, v in os.environ.items() if k not in ("DP_INTRA_OP_PARALLELISM_THREADS", "OMP_NUM_THREADS",
                                                            "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    results: dict = {}
    load0 = os.getloadavg()[0]
    try:
        for r in range(args.rounds):
            for backend in args.backends.split(","):
                for name, threads in (CONFIGS.items() if r % 2 == 0 else reversed(CONFIGS.items())):
                    proc = subprocess.run([sys.executable, __file__, "--worker", backend, threads, "--steps",
                                           str(args.steps)], capture_output=True, text=True, env=env)
                    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                    if not line:
                        sys.exit(f"{backend} {name} failed:\n{proc.stderr[-2000:]}")
                    results.setdefault((backend, name), []).append(json.loads(line[-1][7:]))
                    print(f"[round {r + 1}] {backend} {name}: {results[(backend, name)][-1]}", file=sys.stderr)
    finally:
        for p in busy:
            p.kill()
    print(f"Water training step (192 atoms, float64, batch 1), {args.steps} steps, {args.busy} busy loop(s) "
          f"running; load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of "
          f"{args.rounds} rounds\n")
    print("| backend | framework default s/step (threads) | dpcore auto s/step (threads) | ratio |")
    print("|---|---|---|---|")
    for backend in args.backends.split(","):
        a, b = results[(backend, "framework default")], results[(backend, "dpcore auto")]
        ta, tb = statistics.median(x["s_per_step"] for x in a), statistics.median(x["s_per_step"] for x in b)
        print(f"| {backend} | {ta:.3f} ({a[0]['threads']}) | {tb:.3f} ({'/'.join(str(x['threads']) for x in b)}) "
              f"| {ta / tb:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
