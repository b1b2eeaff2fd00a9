"""Shared embedding inputs (dpcore.pair_share) against slot by slot, in one process per backend.

    python benchmarks/bench_pair_share.py [--backends numpy,torch,jax,tensorflow,paddle] [--calls 9]

Inference: the water frame and model of bench_slot_trim.py (192 atoms, sel [46, 92], the water example's network
sizes), energy + forces + virial, 1 thread, the trimmed blocks with and without the shared inputs, calls
interleaved, median ms of each; uncompressed and compressed (the tables share under a compiler only: on the
eager backends the compressed row shows why).  Training (the autodiff backends): two trainers of the water
example (bench_train.py's input) in the same process, one without shared inputs, 5-step windows interleaved
(``--calls`` windows each), median s/step.  Prints the counts of slots and inputs, the largest difference of
the outputs and the load average.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_slot_trim import THREADS, water_model  # noqa: E402


def _inference(be, compressed: bool, calls: int) -> dict:
    from dpcore.infer.inputs import prepare
    from dpcore.slot_trim import SlotTrim

    model, (coord, atype, box) = water_model(compressed)
    inputs, blocks, _ = prepare(model, coord, atype, box)
    trim = SlotTrim(model.config["descriptor"], True) if compressed else be.slot_trim(model.config)
    blocks = trim(blocks, inputs["nlist_mask"])
    shared = trim.share(inputs, blocks, model.params["descriptor"])
    params = model.backend_params(be)
    xs = {"slots": be.tree_asarray(inputs), "shared": be.tree_asarray(shared)}
    times, outs = {"slots": [], "shared": []}, {}
    for i in range(calls + 1):
        for name in ("slots", "shared")[:: 1 if i % 2 else -1]:
            t0 = time.perf_counter()
            out = be.model_forward(model.config, params, xs[name], blocks)
            outs[name] = {k: np.asarray(be.to_numpy(v), dtype=np.float64) for k, v in out.items()}
            if i:  # the first call of each compiles (jax, tensorflow)
                times[name].append(time.perf_counter() - t0)
    diff = max(float(np.abs(outs["shared"][k] - outs["slots"][k]).max()) for k in ("energy", "force", "virial"))
    dst = [v for k, v in shared.items() if k.startswith("share_dst")]
    return {"kind": "inference, compressed" if compressed else "inference", "slots_ms": 1e3 * np.median(times["slots"]),
            "shared_ms": 1e3 * np.median(times["shared"]), "max_diff": diff,
            "slots": int(sum(d.size for d in dst)), "inputs": int(sum(d.max(initial=-1) + 1 for d in dst))}


def _training(be, windows: int) -> dict:
    from bench_train import water_input

    from dpcore.train.loop import Trainer

    with tempfile.TemporaryDirectory() as w1, tempfile.TemporaryDirectory() as w2:
        trainers = {"shared": Trainer(water_input(10 ** 6), be, workdir=w1),
                    "slots": Trainer(water_input(10 ** 6), be, workdir=w2)}
        trainers["slots"].shaper.trim.share = lambda inputs, blocks, dparams: inputs
        step = {name: 0 for name in trainers}
        times = {name: [] for name in trainers}
        for i in range(windows + 1):
            for name, tr in list(trainers.items())[:: 1 if i % 2 else -1]:
                t0 = time.perf_counter()
                for _ in range(5):
                    tr.step(step[name])
                    step[name] += 1
                tr._wait()
                if i:  # the first window compiles
                    times[name].append((time.perf_counter() - t0) / 5)
    return {"kind": "training step", "slots_ms": 1e3 * np.median(times["slots"]),
            "shared_ms": 1e3 * np.median(times["shared"]), "max_diff": None, "slots": None, "inputs": None}


def run_one(backend: str, calls: int) -> list[dict]:
    from dpcore.backends import get_backend

    be = get_backend(backend)
    rows = [_inference(be, compressed, calls) for compressed in (False, True)]
    if be.capabilities.get("autodiff"):
        rows.append(_training(be, max(calls // 2, 3)))
    return [{"backend": backend, **r} for r in rows]


def main():
    from bench_eval import backend_cli

    load0 = os.getloadavg()
    res = backend_cli(__doc__, __file__, run_one, "calls", 9, env={**os.environ, **THREADS})
    if res is None:
        return
    _, rows = res
    print(f"1 thread; load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}; water frame, sel [46, 92]")
    print("| backend | what | slots -> inputs | slot by slot ms | shared ms | speed-up | max diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        counts = f"{r['slots']} -> {r['inputs']}" if r["slots"] else ""
        diff = f"{r['max_diff']:.1e}" if r["max_diff"] is not None else ""
        print(f"| {r['backend']} | {r['kind']} | {counts} | {r['slots_ms']:.1f} | {r['shared_ms']:.1f} | "
              f"{r['slots_ms'] / r['shared_ms']:.2f}x | {diff} |")


if __name__ == "__main__":
    main()
