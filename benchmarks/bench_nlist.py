"""Time the host-side neighbour list: ms per frame for a few systems, the rows by whole-array NumPy (the
definition, dpcore/nlist.py) and by the Numba kernel the backends register (backends/nlist_kernel.py), side by
side in one run.

Usage: PYTHONPATH=. python benchmarks/bench_nlist.py [--frames N] [--repeat R]
The water frames come from /work/shared/data/water/data_0 when present (else random positions at water density).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np

from dpcore.nlist import build_neighbor_list
from dpcore.xp import register_kernel

WATER = Path("/work/shared/data/water/data_0")
RCUT, SEL = 6.0, [46, 92]  # the se_e2_a water example


def water_frames(nframes):
    """coord (nf, 192, 3), atype (192,), box (nf, 9): real data, or random atoms at the same density."""
    if WATER.is_dir():
        coord = np.load(WATER / "set.000" / "coord.npy")[:nframes].reshape(nframes, -1, 3).astype(np.float64)
        box = np.load(WATER / "set.000" / "box.npy")[:nframes].astype(np.float64)
        return coord, np.loadtxt(WATER / "type.raw", dtype=np.int64), box
    rng = np.random.default_rng(0)
    box = np.tile(np.diag([12.44] * 3).reshape(9), (nframes, 1))
    return rng.uniform(0, 12.44, (nframes, 192, 3)), np.repeat([0, 1], [64, 128]), box


def replicate(coord, atype, box, n):
    """An n x n x n supercell of every frame."""
    cells = box.reshape(-1, 3, 3)
    shifts = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)], dtype=float)
    big = (coord[:, None] + (shifts @ cells)[:, :, None]).reshape(len(coord), -1, 3)
    return big, np.tile(atype, n**3), (cells * n).reshape(-1, 9)


def time_per_frame(coord, atype, box, rcut, sel, repeat):
    """Best of `repeat` runs over all frames, in ms per frame."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        build_neighbor_list(coord, atype, box, rcut, sel)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / len(coord)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    coord, atype, box = water_frames(args.frames)
    small_cell = np.array([[2.6, 0.0, 0.0], [1.1, 2.4, 0.0], [0.7, -0.9, 2.2]]).reshape(1, 9)
    frac = np.random.default_rng(1).uniform(size=(args.frames, 3, 3))
    systems = [
        ("water", coord, atype, box, SEL),
        ("water 2x2x2", *replicate(coord, atype, box, 2), SEL),
        ("water 3x3x3", *replicate(coord, atype, box, 3), SEL),
        ("water as cluster (box None)", coord, atype, None, SEL),
        ("3 atoms, cell < rcut (3 shells)", frac @ small_cell.reshape(3, 3), np.array([0, 1, 1]),
         np.tile(small_cell, (args.frames, 1)), [300, 600]),
    ]
    kernel = None
    if importlib.util.find_spec("numba") is not None:
        from dpcore.backends import nlist_kernel

        kernel = nlist_kernel.neighbor_rows
    print(f"rcut = {RCUT} Å, {args.frames} frames, best of {args.repeat}, 1 thread; load average {os.getloadavg()}")
    print(f"| system | atoms | arrays ms/frame | kernel ms/frame | ratio |\n|---|---|---|---|---|")
    for name, c, t, b, sel in systems:
        ms = {}
        for label, rows in (("arrays", None), ("kernel", kernel)):
            if label == "kernel" and rows is None:
                continue
            register_kernel("numpy", "neighbor_rows", rows)
            time_per_frame(c[:1], t, None if b is None else b[:1], RCUT, sel, 1)  # compile / warm up
            ms[label] = time_per_frame(c, t, b, RCUT, sel, args.repeat)
        k = ms.get("kernel")
        print(f"| {name} | {c.shape[1]} | {ms['arrays']:.2f} | " +
              (f"{k:.2f} | {ms['arrays'] / k:.2f}x |" if k else "(numba not installed) | |"))

if __name__ == "__main__":
    main()
