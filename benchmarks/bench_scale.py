"""Time per atom and peak memory from 192 to 12,288 (and 98,304) atoms, per backend, next to DeePMD-kit.

    python benchmarks/bench_scale.py [--sizes 1,2,4] [--calls 2] [--large] [--only dpcore:jax,dpkit:pb]
                                     [--max-memory 256MB] [--chunk-size N] [--compressed]

The water frame of ``../shared/data/water/data_0`` (192 atoms) replicated n x n x n (n = 1, 2, 4: 192, 1,536,
12,288 atoms; ``--large`` adds n = 8: 98,304 atoms), the water model of ``bench_vs_deepmd.py`` (same weights as
``.dp``; DeePMD-kit's ``dp convert-backend`` makes ``.pth`` and ``.pb`` of it when its venv exists).  Every
(measurement, size) pair runs in its own process with 1 thread (the settings are printed): one warm-up call
(JAX compiles there), then ``--calls`` timed calls of energy + forces + virial; the child reports the median
wall time, the median CPU time of the process (``time.process_time``: on a shared machine it moves less with
the load than the wall time) and its peak memory (``resource.getrusage(...).ru_maxrss``, which includes the
framework's own footprint).  dpcore runs with its default chunk policy (``model.evaluate`` without
arguments) unless ``--max-memory`` or ``--chunk-size`` is given.  ``--compressed`` adds the compressed model
(``dpcore compress``) on every dpcore backend and DeePMD-kit's compressed ``.pb`` (``dp --tf compress``), as in
``bench_vs_deepmd.py``.  The load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_vs_deepmd import (THREADS, VENV, WATER, build_model, compressed_model, deepmd_files, dpkit,  # noqa: E402
                             water_frame, write_training_input)

DPCORE_BACKENDS = ("numpy", "jax", "torch", "tensorflow", "paddle")

# one measurement in its own process: prints {"wall": [...], "cpu": [...], "maxrss_mb": ..., "energy": ...}
WORKER = r"""
import json, resource, sys, time
import numpy as np
kind, model_file, frame_file, calls, kw = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
f = np.load(frame_file)
coord, atype, box = f["coord"], f["atype"], f["box"]
if kind.startswith("dpkit"):
    from deepmd.infer import DeepPot
    dp = DeepPot(model_file)
    def call():
        return float(np.asarray(dp.eval(coord.reshape(1, -1), box, atype)[0]).ravel()[0])
else:
    import dpcore
    backend = kind.split(":", 1)[1]
    from dpcore.backends import threads
    threads.configure(1)  # 1 intra-op and 1 inter-op thread in the framework and BLAS (backends/threads.py)
    model = dpcore.load(model_file)
    def call():
        return float(model.evaluate(coord, atype, box, backend=backend, **kw)["energy"][0, 0])
energy = call()
wall, cpu = [], []
for _ in range(calls):
    t0, c0 = time.perf_counter(), time.process_time()
    call()
    wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
print(json.dumps({"wall": wall, "cpu": cpu, "energy": energy,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(kind: str, model_file: Path, frame_file: Path, calls: int, kw: dict) -> dict:
    python = str(VENV / "bin" / "python") if kind.startswith("dpkit") else sys.executable
    env = {**os.environ, **THREADS}
    if kind.startswith("dpkit"):
        env.pop("PYTHONPATH", None)  # DeePMD-kit's venv, not this project's paths
    proc = subprocess.run([python, "-c", WORKER, kind, str(model_file), str(frame_file), str(calls), json.dumps(kw)],
                          capture_output=True, text=True, env=env, timeout=7200)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(kinds, sizes, natoms, res) -> None:
    """ms/atom (CPU and wall) per size, the largest-to-1,536 ratio of CPU time per atom, peak MB per size."""
    head = " | ".join(f"{natoms[s]} atoms ms/atom cpu (wall)" for s in sizes)
    peaks = " | ".join(f"peak MB {natoms[s]}" for s in sizes)
    ratio_pairs = [(s, 2) for s in sizes if s > 2] if 2 in sizes else []
    ratios = " | ".join(f"{natoms[a]}/{natoms[b]}" for a, b in ratio_pairs)
    print(f"| measurement | {head} | {ratios + ' | ' if ratios else ''}{peaks} |")
    print("|---" * (1 + 2 * len(sizes) + len(ratio_pairs)) + "|")
    for k in kinds:
        cells, per_atom = [], {}
        for s in sizes:
            r = res.get((k, s), {})
            if "cpu" not in r:
                cells.append(f"failed: {r.get('error', '?')[:60]}" if r else "")
                continue
            per_atom[s] = 1e3 * float(np.median(r["cpu"])) / natoms[s]
            cells.append(f"{per_atom[s]:.3f} ({1e3 * float(np.median(r['wall'])) / natoms[s]:.3f})")
        rat = [f"{per_atom[a] / per_atom[b]:.2f}x" if a in per_atom and b in per_atom else "" for a, b in ratio_pairs]
        mem = [f"{res[(k, s)]['maxrss_mb']:.0f}" if "maxrss_mb" in res.get((k, s), {}) else "" for s in sizes]
        print(f"| {k} | {' | '.join(cells)} | {' | '.join(rat) + ' | ' if rat else ''}{' | '.join(mem)} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,2,4", help="replications n (n^3 x 192 atoms), comma-separated")
    p.add_argument("--large", action="store_true", help="also n = 8 (98,304 atoms)")
    p.add_argument("--calls", type=int, default=2, help="timed calls per measurement after the warm-up")
    p.add_argument("--only", default=None, help="comma-separated measurements, e.g. dpcore:jax,dpkit:pb")
    p.add_argument("--max-memory", default=None, help="dpcore's max_memory (default: its own default)")
    p.add_argument("--chunk-size", type=int, default=None, help="dpcore's chunk_size (centre atoms per call)")
    p.add_argument("--no-deepmd", dest="deepmd", action="store_false", help="skip DeePMD-kit even if installed")
    p.add_argument("--compressed", action="store_true", help="also the compressed models (dpcore and DeePMD-kit)")
    args = p.parse_args()
    if not (WATER / "type.raw").exists():
        sys.exit(f"water data not found at {WATER}")
    sizes = [int(s) for s in args.sizes.split(",")] + ([8] if args.large else [])
    kw = {k: v for k, v in (("max_memory", args.max_memory), ("chunk_size", args.chunk_size)) if v is not None}
    work = Path(tempfile.mkdtemp(prefix="dpcore-scale-"))
    dp_file = build_model(work)
    natoms = {}
    for s in sizes:
        coord, atype, box = water_frame(s)
        np.savez(work / f"frame{s}.npz", coord=coord, atype=atype, box=box)
        natoms[s] = coord.shape[1]
    kinds = {f"dpcore:{b}": dp_file for b in DPCORE_BACKENDS}
    if args.compressed:
        write_training_input(work)
        kinds.update({f"dpcore-compressed:{b}": compressed_model(dp_file) for b in DPCORE_BACKENDS})
    if args.deepmd and (VENV / "bin" / "dp").exists() and args.compressed:
        files = deepmd_files(dp_file)
        kinds.update({f"dpkit:{k}": files[k] for k in ("pb", "pth", "pb-compressed") if k in files})
    elif args.deepmd and (VENV / "bin" / "dp").exists():
        for suffix in ("pb", "pth"):  # DeePMD-kit's files of the same weights
            target = dp_file.with_suffix(f".{suffix}")
            proc = dpkit(["dp", "convert-backend", dp_file, target], work)
            if proc.returncode == 0:
                kinds[f"dpkit:{suffix}"] = target
            else:
                print(f"dp convert-backend -> .{suffix} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    if args.only:
        kinds = {k: v for k, v in kinds.items() if k in args.only.split(",")}
    res = {}
    for s in sizes:
        for k, path in kinds.items():
            res[(k, s)] = measure(k, path, work / f"frame{s}.npz", args.calls, kw if k.startswith("dpcore") else {})
            print(f"{k} {natoms[s]} atoms: {json.dumps({a: b for a, b in res[(k, s)].items()})[:200]}", file=sys.stderr,
                  flush=True)
    print(f"\nwater, float64, energy + forces + virial, 1 thread ({', '.join(f'{k}={v}' for k, v in THREADS.items() if 'THREAD' in k)}); "
          f"dpcore {kw or 'default chunk policy'}; median of {args.calls} calls after a warm-up; "
          f"load average {tuple(round(x, 2) for x in os.getloadavg())}\n")
    print_table(list(kinds), sizes, natoms, res)
    energies = {k: [res[(k, s)].get("energy") for s in sizes] for k in kinds}
    print("\nenergies (eV):", json.dumps(energies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
