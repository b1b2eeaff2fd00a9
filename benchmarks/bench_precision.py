"""Training step time by precision on the DeePMD-kit water example: float64, a float32 model, and
``training.mixed_precision`` (float32 parameters, bfloat16 products), per backend, one process per run.

    python benchmarks/bench_precision.py [--backends jax,tensorflow,torch] [--steps 60] [--rounds 2]

Each run is ``dpcore.train.loop.train`` on water data_0-2 (benchmarks/bench_train.py's input, the descriptor
and fitting ``precision`` set to the run's) with ``DPCORE_QUICK_STEPS=0`` (every step the optimized program) and
dpcore's thread plan; its s/step is the loop's own average after the first step.  Rounds are interleaved (every
backend and precision once, then again) and the median of the rounds is reported with its ratio to float64 on
the same backend.  The issue's target (#12): mixed precision >= 1.5x the float64 step on the best backend.
The machine's load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import WATER, water_input  # noqa: E402

PRECISIONS = ("float64", "float32", "mixed")
MIXED = {"output_prec": "float32", "compute_prec": "bfloat16"}


def run_one(backend: str, precision: str, steps: int) -> dict:
    from dpcore.train import train

    cfg = water_input(steps)
    if precision == "mixed":
        cfg["training"]["mixed_precision"] = dict(MIXED)
    else:
        for section in ("descriptor", "fitting_net"):
            cfg["model"][section]["precision"] = precision
    with tempfile.TemporaryDirectory() as work:
        out = train(cfg, backend, workdir=work)
    return {"s_per_step": out["s_per_step"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="jax,tensorflow,torch")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(*args.worker, args.steps)))
        return 0
    if not (WATER / "data_0" / "type.raw").exists():
        sys.exit(f"water data not found under {WATER}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    times: dict = {}
    load0 = os.getloadavg()
    env = dict(os.environ, DPCORE_QUICK_STEPS="0")
    for r in range(args.rounds):
        for backend in backends:
            for precision in PRECISIONS:
                proc = subprocess.run([sys.executable, __file__, "--worker", backend, precision,
                                       "--steps", str(args.steps)], capture_output=True, text=True, env=env)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
                    times.setdefault((backend, precision), []).append(tail)
                else:
                    times.setdefault((backend, precision), []).append(json.loads(line[-1][7:])["s_per_step"])
                print(f"[round {r + 1}] {backend} {precision}: {times[(backend, precision)][-1]}", file=sys.stderr)
    print(f"Water training step by precision, {args.steps} steps, median of {args.rounds} interleaved rounds; load "
          f"average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; XLA_FLAGS="
          f"{os.environ.get('XLA_FLAGS', '')!r} (dpcore's options added unless named there)\n")
    print("| backend | float64 s/step | float32 s/step | vs float64 | mixed_precision (bfloat16) s/step | vs float64 |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        cells, base = [], None
        for precision in PRECISIONS:
            got = times[(backend, precision)]
            values = [v for v in got if isinstance(v, float)]
            if not values:
                cells.append(f"failed: {got[-1]}")
                continue
            med = statistics.median(values)
            base = med if precision == "float64" else base
            cells.append(f"{med:.4f} ({' / '.join(f'{v:.4f}' for v in values)})")
            if precision != "float64":
                cells.append(f"{base / med:.2f}x" if base else "")
        print(f"| {backend} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
