"""Compilation cost of training: the first step on the water example, and the compiled steps of a dataset with
10 system compositions, with and without shape buckets (``training.shape_buckets``), one process per backend.

    python benchmarks/bench_compile.py [--backends jax,tensorflow,torch,paddle] [--skip-water]

Per backend process:

* water: ``train`` on the DeePMD-kit water example (benchmarks/bench_train.py's input, 40 steps); ``first step``
  is the loop's own timing of step 1 (the training step and, since lcurve.out has a line at step 1, the
  validation step: both compile on jax, run eagerly on TensorFlow), ``N steps`` the wall time of the run's steps,
  ``s/step`` the loop's average after the first step (after the quick steps where there are some); on a backend
  with a quick first compile (:mod:`dpcore.train.tiers`, jax and TensorFlow) the water run is made again without it
  (``DPCORE_QUICK_STEPS=0``, its own cold cache);
* 10 compositions: 10 synthetic water-like systems (n O + 2n H, n = 30, 33, ..., 57, water density, zero
  labels, batch 1 frame) with the water model; one training step on a batch of each system in turn, with
  ``shape_buckets`` 4: the number of compiled step shapes (:attr:`StepCache.used`) and the wall time of the
  10 steps.  Without buckets every composition is its own shape (10 compilations): counted from the batch
  shapes (not run: minutes on jax/tensorflow), its time estimated as 10 x the water first step;
* warm cache: the water run again in a new process with the same compiled-program cache (``DPCORE_COMPILE_CACHE``,
  a fresh temporary directory for the whole benchmark, so the first run is cold): the first step of a later run
  of the same model (docs/backends.md, "Compilation").

dpcore's XLA options apply (``--xla_cpu_use_fusion_emitters=false``); ``XLA_FLAGS=--xla_cpu_use_fusion_emitters=true
python benchmarks/bench_compile.py`` measures XLA's default code generator instead.

The machine's load average is printed with the table: absolute times move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import WATER, water_input  # noqa: E402

BACKENDS = ("jax", "tensorflow", "torch", "paddle")
MOLECULES = tuple(range(30, 60, 3))  # 10 compositions
WATER_STEPS = 40


def write_compositions(root: Path) -> list[str]:
    """Ten water-like systems (n O, 2n H at liquid-water density, 2 frames, zero labels) under ``root``."""
    rng = np.random.default_rng(0)
    paths = []
    for n in MOLECULES:
        box_len = 12.42 * (n / 64) ** (1 / 3)
        natoms, frames = 3 * n, []
        for _ in range(2):
            pos = [rng.uniform(0, box_len, 3)]
            while len(pos) < natoms:  # random positions at least 1 Å apart (minimum image)
                c = rng.uniform(0, box_len, 3)
                d = np.asarray(pos) - c
                d -= box_len * np.round(d / box_len)
                if np.min(np.sum(d * d, axis=1)) >= 1.0:
                    pos.append(c)
            frames.append(np.asarray(pos))
        s = root / f"water_{n}"
        (s / "set.000").mkdir(parents=True)
        np.savetxt(s / "type.raw", [0] * n + [1] * (2 * n), fmt="%d")
        (s / "type_map.raw").write_text("O\nH\n")
        np.save(s / "set.000" / "coord.npy", np.asarray(frames).reshape(2, -1))
        np.save(s / "set.000" / "box.npy", np.tile(np.eye(3).ravel() * box_len, (2, 1)))
        np.save(s / "set.000" / "energy.npy", np.zeros(2))
        np.save(s / "set.000" / "force.npy", np.zeros((2, natoms * 3)))
        paths.append(str(s))
    return paths


def compositions_run(backend: str, work: Path) -> dict:
    """One step per composition with ``shape_buckets`` 4; the shape count without buckets."""
    from dpcore.train.loop import Trainer

    paths = write_compositions(work / "data")
    cfg = water_input(len(paths))
    cfg["training"]["training_data"] = {"systems": paths, "batch_size": 1}
    cfg["training"]["validation_data"] = None
    out = {}
    for setting in ("off", 4):
        cfg["training"]["shape_buckets"] = setting
        trainer = Trainer(cfg, backend, workdir=str(work))
        s = trainer.train_s
        if setting == "off":  # the shapes only (compiling them all would take minutes)
            keys = {(b, f, (nf, int(np.shape(i["coord"])[1]))) for i, _, b, f, nf in
                    (trainer.shaper(s.make_batch(k, [0])) for k in range(len(s.systems)))}
            out["shapes_off"] = len(keys)
            continue
        t0 = time.perf_counter()
        for k in range(len(s.systems)):
            batch = s.make_batch(k, [0])
            s.next_batch = lambda b=batch: b  # the loop's step on this system's batch
            metrics = trainer.step(k)
        trainer.backend.to_numpy(metrics["rmse"])
        out.update(shapes_bucketed=len(trainer.steps.used), wall_bucketed_s=time.perf_counter() - t0,
                   buckets=[list(b) for b in trainer.shaper.buckets.shapes])
    return out


def run_one(backend: str, water: bool, compositions: bool = True) -> dict:
    from dpcore.train import train

    res = {"backend": backend}
    with tempfile.TemporaryDirectory() as work:
        if water:
            cfg = water_input(WATER_STEPS)
            r = train(cfg, backend, workdir=work)
            res.update(first_step_s=r["first_step_s"], s_per_step=r["s_per_step"], wall_s=r["wall_s"])
        if compositions:
            res.update(compositions_run(backend, Path(work)))
    return res


def _worker(backend: str, args: list, env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", backend] + args, capture_output=True, text=True,
                          env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        return {"backend": backend, "error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(line[-1][7:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--skip-water", action="store_true", help="only the 10-composition dataset")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--water-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(args.worker, not args.skip_water, not args.water_only)))
        return 0
    if not args.skip_water and not (WATER / "data_0" / "type.raw").exists():
        sys.exit(f"water data not found under {WATER} (or use --skip-water)")
    from dpcore.backends import info

    rows, load0 = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as plain_cache:
        env = dict(os.environ, DPCORE_COMPILE_CACHE=cache)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            row = _worker(backend, ["--skip-water"] if args.skip_water else [], env)
            if not args.skip_water and "error" not in row:
                warm = _worker(backend, ["--water-only"], env)
                row["warm_first_step_s"] = warm.get("first_step_s")
                if info(backend).quick_compile:
                    plain = _worker(backend, ["--water-only"],
                                    dict(os.environ, DPCORE_COMPILE_CACHE=plain_cache, DPCORE_QUICK_STEPS="0"))
                    row["plain"] = plain
            rows.append(row)
            print(f"[{backend}] done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(f"Compilation; load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} (dpcore's options added unless named there)\n")
    print("| backend | water first step s (cold cache) | water first step s (warm cache) | "
          f"water {WATER_STEPS} steps s | "
          f"water s/step | cold, no quick compile: first step s / {WATER_STEPS} steps s / s/step | "
          "10 compositions: compiled steps off -> buckets | 10 steps with buckets s | buckets |")
    print("|---|---|---|---|---|---|---|---|---|")

    def num(r, key, fmt):
        return format(r[key], fmt) if r.get(key) is not None else "-"

    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | failed: {r['error']} | | | | | | | |")
            continue
        plain = r.get("plain") or {}
        plain_cols = (f"{num(plain, 'first_step_s', '.1f')} / {num(plain, 'wall_s', '.1f')} / "
                      f"{num(plain, 's_per_step', '.3f')}" if plain else "-")
        print(f"| {r['backend']} | {num(r, 'first_step_s', '.1f')} | {num(r, 'warm_first_step_s', '.1f')} | "
              f"{num(r, 'wall_s', '.1f')} | {num(r, 's_per_step', '.3f')} | {plain_cols} | "
              f"{r.get('shapes_off', '-')} -> {r.get('shapes_bucketed', '-')} | {num(r, 'wall_bucketed_s', '.1f')} | "
              f"{r.get('buckets', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
