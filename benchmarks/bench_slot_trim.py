"""Trimmed neighbour sections (dpcore.slot_trim) against the full ``sel`` sections, in one process per backend.

    python benchmarks/bench_slot_trim.py [--backends numpy,torch,jax,tensorflow,paddle] [--calls 9]

The water frame of bench_eval.py (192 atoms) and the model of bench_vs_deepmd.py (sel [46, 92], the water
example's network sizes, statistics from the water data), energy + forces + virial, 1 thread; per backend the
same inputs are evaluated with the full type blocks and with the trimmed ones (the widths ``evaluate`` uses on
that backend), calls interleaved, median ms of each; uncompressed and compressed (``dpcore compress``, default
step).  Prints the widths, the largest difference of the outputs, the table and the load average.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "DP_INTRA_OP_PARALLELISM_THREADS": "1", "DP_INTER_OP_PARALLELISM_THREADS": "1"}


def water_model(compressed: bool):
    """bench_vs_deepmd's water model (statistics and energy bias from the water data), optionally compressed."""
    import tempfile

    import dpcore
    from bench_eval import water_frame
    from bench_vs_deepmd import build_model

    with tempfile.TemporaryDirectory() as work:
        model = dpcore.load(build_model(Path(work)))
    if compressed:
        from dpcore.descriptor.tabulate import compress_model

        compress_model(model, 0.89)
    return model, water_frame()


def run_one(backend: str, calls: int) -> list[dict]:
    from dpcore.backends import get_backend
    from dpcore.infer.inputs import prepare

    be = get_backend(backend)
    rows = []
    for compressed in (False, True):
        model, (coord, atype, box) = water_model(compressed)
        inputs, blocks, _ = prepare(model, coord, atype, box)
        trimmed = be.slot_trim(model.config)(blocks, inputs["nlist_mask"])
        x, params = be.tree_asarray(inputs), model.backend_params(be)
        times = {"full": [], "trimmed": []}
        outs = {}
        for i in range(calls + 1):
            for name, b in (("full", blocks), ("trimmed", trimmed))[:: 1 if i % 2 else -1]:
                t0 = time.perf_counter()
                out = be.model_forward(model.config, params, x, b)
                out = {k: np.asarray(be.to_numpy(v), dtype=np.float64) for k, v in out.items()}
                if i:  # the first call of each compiles (jax, tensorflow)
                    times[name].append(time.perf_counter() - t0)
                outs[name] = out
        diff = max(float(np.abs(outs["trimmed"][k] - outs["full"][k]).max()) for k in ("energy", "force", "virial"))
        rows.append({"backend": backend, "compressed": compressed, "widths": [list(b[3]) for b in trimmed],
                     "full_ms": 1e3 * float(np.median(times["full"])),
                     "trimmed_ms": 1e3 * float(np.median(times["trimmed"])), "max_diff": diff})
    return rows


def main():
    from bench_eval import backend_cli

    load0 = os.getloadavg()
    res = backend_cli(__doc__, __file__, run_one, "calls", 9, env={**os.environ, **THREADS})
    if res is None:
        return
    _, rows = res
    print(f"1 thread; load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}; sel [46, 92]")
    print("| backend | model | widths (O centres; H centres) | full ms | trimmed ms | speed-up | max diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        w = "; ".join(str(tuple(x)) for x in r["widths"])
        print(f"| {r['backend']} | {'compressed' if r['compressed'] else 'plain'} | {w} | {r['full_ms']:.1f} | "
              f"{r['trimmed_ms']:.1f} | {r['full_ms'] / r['trimmed_ms']:.2f}x | {r['max_diff']:.1e} |")


if __name__ == "__main__":
    main()
