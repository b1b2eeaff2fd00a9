"""The heap policy (backends/heap.py) A/B: glibc's default malloc (``DPCORE_HEAP=system``) against dpcore's, per
backend, for inference (the water frame of bench_vs_deepmd.py) and training (the water example of bench_train.py).

    python benchmarks/bench_heap.py [--backends numpy,jax,torch,tensorflow,paddle] [--rounds 2] [--calls 15]
                                    [--steps 24] [--no-train]

Every measurement is one process with 1 thread (bench_vs_deepmd.THREADS), the two settings alternating; each
reports its time, the minor page faults and system CPU time per call or step (``getrusage``, after a warm-up)
and its peak resident memory.  Training: ``dpcore.train.loop.train`` for 4 steps (compiles), again for 4 steps,
then for ``--steps`` in the same process; per step = (third run - second run) / (``--steps`` - 4) of the rusage
counters, and the loop's own s/step of the third run.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_vs_deepmd as vs  # noqa: E402

INFER = r"""
import json, resource, sys, time
import numpy as np
import dpcore
from dpcore.backends import threads
threads.configure(1)
backend, model_file, frame_file, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
f = np.load(frame_file)
model = dpcore.load(model_file)
for _ in range(3):
    model.evaluate(f["coord"], f["atype"], f["box"], backend=backend)
r0, ms = resource.getrusage(resource.RUSAGE_SELF), []
for _ in range(calls):
    t0 = time.perf_counter(); model.evaluate(f["coord"], f["atype"], f["box"], backend=backend)
    ms.append(1e3 * (time.perf_counter() - t0))
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ms": ms, "faults": (r1.ru_minflt - r0.ru_minflt) / calls, "sys_ms": 1e3 * (r1.ru_stime - r0.ru_stime) / calls,
                  "maxrss_mb": r1.ru_maxrss / 1024}))
"""

TRAIN = r"""
import json, resource, sys, tempfile
sys.path.insert(0, sys.argv[3])
from bench_train import water_input
from dpcore.backends import threads
from dpcore.train import train
threads.configure(1)
backend, steps = sys.argv[1], int(sys.argv[2])
def run(n):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as work:
        out = train(water_input(n), backend, workdir=work)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return r1.ru_minflt - r0.ru_minflt, r1.ru_stime - r0.ru_stime, out["s_per_step"]
run(4)  # compiles
a, b = run(4), run(steps)
n = steps - 4
print(json.dumps({"s_step": b[2], "faults": (b[0] - a[0]) / n, "sys_ms": 1e3 * (b[1] - a[1]) / n,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(code: str, args: list, heap: str) -> dict:
    env = {**os.environ, **vs.THREADS, "DPCORE_HEAP": heap}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=3600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(title: str, unit: str, rows: dict, backends: list) -> None:
    print(f"\n{title}\n")
    print(f"| backend | glibc default {unit} | dpcore heap {unit} | speed-up | faults per call/step (default -> dpcore) "
          "| system ms (default -> dpcore) | peak MB (default -> dpcore) |")
    print("|---|---|---|---|---|---|---|")
    for b in backends:
        s, d = rows.get((b, "system"), []), rows.get((b, "dpcore"), [])
        if not s or not d or any("error" in r for r in s + d):
            print(f"| {b} | {[r.get('error') for r in s + d if 'error' in r][:1] or 'not measured'} |||||")
            continue
        key = "ms" if unit == "ms" else "s_step"
        ts = statistics.median([x for r in s for x in (r[key] if isinstance(r[key], list) else [r[key]])])
        td = statistics.median([x for r in d for x in (r[key] if isinstance(r[key], list) else [r[key]])])
        mean = lambda rs, k: statistics.mean(r[k] for r in rs)  # noqa: E731
        print(f"| {b} | {ts:.4g} | {td:.4g} | {ts / td:.2f}x | {mean(s, 'faults'):.0f} -> {mean(d, 'faults'):.0f} "
              f"| {mean(s, 'sys_ms'):.1f} -> {mean(d, 'sys_ms'):.1f} | {max(r['maxrss_mb'] for r in s):.0f} -> "
              f"{max(r['maxrss_mb'] for r in d):.0f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="numpy,jax,torch,tensorflow,paddle")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--calls", type=int, default=15)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--no-train", dest="train", action="store_false")
    args = p.parse_args()
    if not (vs.WATER / "type.raw").exists():
        sys.exit(f"water data not found under {vs.WATER}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    load0 = os.getloadavg()
    infer, train = {}, {}
    with tempfile.TemporaryDirectory() as work:
        import numpy as np

        model = vs.build_model(Path(work))
        frame = Path(work) / "frame.npz"
        coord, atype, box = vs.water_frame(1)
        np.savez(frame, coord=coord, atype=atype, box=box)
        for r in range(args.rounds):
            for b in backends:
                for heap in (("system", "dpcore") if r % 2 == 0 else ("dpcore", "system")):
                    infer.setdefault((b, heap), []).append(measure(INFER, [b, model, frame, args.calls], heap))
                    if args.train and b != "numpy":
                        train.setdefault((b, heap), []).append(measure(TRAIN, [b, args.steps, HERE], heap))
                print(f"[round {r + 1}] {b} done", file=sys.stderr)
    print(f"1 thread, {args.rounds} rounds, settings alternating; load average {load0[0]:.2f} -> "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    table("Inference, water frame (192 atoms, energy + forces + virial), median of all calls", "ms", infer, backends)
    if args.train:
        table(f"Training, water example (batch 1), s/step of {args.steps} steps", "s/step", train,
              [b for b in backends if b != "numpy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
