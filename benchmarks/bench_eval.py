"""Energy + forces + virial of one 192-atom water frame (the DeePMD-kit water example's network sizes).

    python benchmarks/bench_eval.py [--backends numpy,torch,jax] [--repeat 10]

Each backend runs in its own process (paddle must not follow tensorflow).  Prints a Markdown table of
ms/frame (median over repeats, after one warm-up call), split into host preparation (neighbour list,
pair data) and model time, for type_one_side true/false and both force modes.
Target (issue): <= 50 ms/frame on the best backend; DeePMD-kit's fastest backend here: 73 ms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water" / "data_0"
MODEL = {"type_map": ["O", "H"],
         "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0, "neuron": [25, 50, 100],
                        "resnet_dt": False, "axis_neuron": 16, "type_one_side": False, "seed": 1},
         "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1}}


def water_frame():
    if not (WATER / "type.raw").exists():
        sys.exit(f"water data not found at {WATER}")
    coord = np.load(WATER / "set.000" / "coord.npy")[:1].reshape(1, -1, 3).astype(np.float64)
    box = np.load(WATER / "set.000" / "box.npy")[:1].astype(np.float64)
    return coord, np.loadtxt(WATER / "type.raw", dtype=int), box


def run_one(backend: str, repeat: int) -> list[dict]:
    import dpcore
    from dpcore.backends import get_backend
    from dpcore.infer.inputs import prepare

    coord, atype, box = water_frame()
    be = get_backend(backend)
    rows = []
    for one_side in (True, False):
        cfg = json.loads(json.dumps(MODEL))
        cfg["descriptor"]["type_one_side"] = one_side
        model = dpcore.EnergyModel.from_config(cfg, seed=1)
        params = model.backend_params(be)
        modes = ["analytic"] + (["autodiff"] if be.capabilities.get("autodiff") else [])
        for mode in modes:
            t_host, t_model = [], []
            for _ in range(repeat + 1):
                t0 = time.perf_counter()
                inputs, blocks, _ = prepare(model, coord, atype, box)
                x = be.tree_asarray(inputs)
                t1 = time.perf_counter()
                out = be.model_forward(model.config, params, x, blocks, force_mode=mode)
                be.to_numpy(out["virial"])
                t2 = time.perf_counter()
                t_host.append(t1 - t0)
                t_model.append(t2 - t1)
            rows.append({"backend": backend, "type_one_side": one_side, "force_mode": mode,
                         "host_ms": 1e3 * float(np.median(t_host[1:])), "model_ms": 1e3 * float(np.median(t_model[1:]))})
    return rows


def backend_cli(doc: str, script: str, run_one, count: str = "repeat", default: int = 10, env=None):
    """The command line of a per-backend benchmark: ``--worker B`` prints ``run_one(B, n)`` (JSON rows) and
    returns None; otherwise every backend of ``--backends`` runs ``script --worker`` in its own process (paddle
    must not follow tensorflow) and ``(args, rows)`` is returned."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="numpy,torch,jax,tensorflow,paddle")
    p.add_argument(f"--{count}", type=int, default=default)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    n = getattr(args, count)
    if args.worker:
        print(json.dumps(run_one(args.worker, n)))
        return None
    rows = []
    for b in args.backends.split(","):
        proc = subprocess.run([sys.executable, script, "--worker", b, f"--{count}", str(n)], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            print(f"{b}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    return args, rows


def main():
    res = backend_cli(__doc__, __file__, run_one)
    if res is None:
        return
    _, rows = res
    print("| backend | type_one_side | forces | host ms | model ms | total ms/frame |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['type_one_side']} | {r['force_mode']} | {r['host_ms']:.1f} | {r['model_ms']:.1f} | "
              f"{r['host_ms'] + r['model_ms']:.1f} |")


if __name__ == "__main__":
    main()
