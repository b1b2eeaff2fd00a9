"""FLOP count of one se_e2_a energy + forces + virial evaluation, and this machine's floor for it.

    python benchmarks/bench_floor.py [--natoms 192] [--sel 46,92] [--neuron 25,50,100] [--axis 16]
                                     [--fitting 240,240,240] [--repeat 20]

Counts the multiply-adds of the dense parts (embedding nets on every neighbour slot, the ``R~^T G`` contraction,
the descriptor product, the fitting net), forward and the input-backward that forces need (no weight
gradients at inference), for the uncompressed and the compressed model (tabulated embedding: the quintic
evaluation and the gathered-coefficient product of dpcore/tabulated.py).  The floor is the time those
matrix products take as plain float64 GEMMs of the same shapes on this machine with 1 BLAS thread (NumPy),
plus the ``tanh`` of the embedding nets: what no backend can beat without changing the arithmetic.
The machine's load average is printed: the floor is measured, not assumed.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def gemms(natoms: int, sel: list[int], neuron: list[int], axis: int, fitting: list[int], compressed: bool) -> list:
    """The matrix products of one evaluation as (m, k, n, count, what); forward and input-backward."""
    nnei = sum(sel)
    rows = natoms * nnei
    ng = neuron[-1]
    out = []
    if compressed:  # W (4 x 6K) @ C (6K x ng) per atom and type block, and its transpose in the backward
        for k in sel:
            out += [(4, 6 * k, ng, natoms, "tabulated product"), (6 * k, ng, 4, natoms, "tabulated product (bwd)")]
    else:
        widths = [1] + list(neuron)
        for a, b in zip(widths[:-1], widths[1:]):
            out += [(rows, a, b, 1, f"embedding {a}->{b}")]
            if a > 1:  # the first layer's input gradient is an elementwise product
                out += [(rows, b, a, 1, f"embedding {b}->{a} (bwd)")]
    out += [(4, nnei, ng, natoms, "R~^T G"), (nnei, ng, 4, natoms, "R~^T G (bwd)"),
            (ng, 4, axis, natoms, "D = A^T A<"), (ng, axis, 4, natoms, "D (bwd)")]
    widths = [ng * axis] + list(fitting) + [1]
    for a, b in zip(widths[:-1], widths[1:]):
        out += [(natoms, a, b, 1, f"fitting {a}->{b}"), (natoms, b, a, 1, f"fitting {b}->{a} (bwd)")]
    return out


def flops(products) -> float:
    return sum(2.0 * m * k * n * c for m, k, n, c, _ in products)


def time_products(products, repeat: int) -> float:
    """Median seconds of all the products as NumPy float64 GEMMs (batched ones as one matmul call)."""
    rng = np.random.default_rng(0)
    args = [(rng.normal(size=(c, m, k) if c > 1 else (m, k)), rng.normal(size=(k, n))) for m, k, n, c, _ in products]
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for a, b in args:
            a @ b
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs))


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--natoms", type=int, default=192)
    ap.add_argument("--sel", type=ints, default=[46, 92])
    ap.add_argument("--neuron", type=ints, default=[25, 50, 100])
    ap.add_argument("--axis", type=int, default=16)
    ap.add_argument("--fitting", type=ints, default=[240, 240, 240])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    threadpool_limits(1)
    load0 = os.getloadavg()[0]
    rows = args.natoms * sum(args.sel)
    x = np.random.default_rng(1).normal(size=(rows, sum(args.neuron)))
    t0 = time.perf_counter()
    for _ in range(5):
        np.tanh(x)
    tanh_s = (time.perf_counter() - t0) / 5
    print(f"se_e2_a, {args.natoms} atoms, sel {args.sel}, embedding {args.neuron}, axis {args.axis}, fitting "
          f"{args.fitting}; float64, energy + forces + virial, 1 thread; load average {load0:.2f} -> "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| model | GFLOP per evaluation (dense products) | GEMM time here ms | + tanh ms | floor ms | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for compressed in (False, True):
        prods = gemms(args.natoms, args.sel, args.neuron, args.axis, args.fitting, compressed)
        g, t = flops(prods), time_products(prods, args.repeat)
        th = 0.0 if compressed else tanh_s
        print(f"| {'compressed' if compressed else 'uncompressed'} | {g / 1e9:.3f} | {1e3 * t:.1f} | "
              f"{1e3 * th:.1f} | {1e3 * (t + th):.1f} | {g / t / 1e9:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
