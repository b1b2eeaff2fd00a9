"""dpcore against DeePMD-kit on the same weights and input, side by side in one run.

    python benchmarks/bench_vs_deepmd.py [--rounds 3] [--calls 15] [--replicate 1] [--only dpcore:jax,dpkit:pth]

The water se_e2_a model (DeePMD-kit's water example sizes, statistics from the water data) is written by
dpcore as ``model.dp``; DeePMD-kit's ``dp convert-backend`` makes ``model.pth`` (PyTorch) and ``model.pb``
(TensorFlow) from it, and ``dp --tf compress`` a compressed ``.pb`` when it can; DeePMD-kit also reads
``model.dp`` itself with its NumPy backend (``dpkit:dp``), which returns the energy only (its forces and virial
are NaN): the twin of dpcore's NumPy, which computes all three.  Every measurement is one
process (a fresh interpreter per backend and file) that evaluates energy + forces + virial of the same frame
(water ``data_0`` frame 0, 192 atoms; ``--replicate n`` repeats the cell n x n x n) ``--calls`` times after a
warm-up and reports the median and its own peak memory (ru_maxrss).  Rounds are interleaved (every
measurement once per round, the order rotating), threads are 1 everywhere (the settings are printed), and
the load average is printed with the table.  Needs ../shared/data/water and the DeePMD-kit venv of
``bash .ci/deepmd_venv.sh`` (``DPCORE_DPKIT_VENV``, default .dpkit-venv/; several venvs separated by ``:`` are
tried in order for each file, e.g. a second one with jax and flax for ``.hlo``).  DeePMD-kit 3.2.0 cannot export
the example's ``type_one_side: false`` model to ``.hlo`` (a ``ConcretizationTypeError`` in its per-type blocks);
``--type-one-side`` measures a ``type_one_side: true`` model instead, where it can.

Compressed models (default; ``--no-compressed`` skips them): ``dpcore compress -t input.json`` (min_nbor_dist
from the water data, default step 0.01) makes ``model-compressed.dp``, measured on every dpcore backend as
``dpcore-compressed:<backend>``; a second table gives compressed vs uncompressed ms/frame per backend.
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
ROOT = HERE.parent
WATER = ROOT.parent / "shared" / "data" / "water" / "data_0"
# DeePMD-kit venvs, in order (os.pathsep-separated): each of its files is made, and measured, by the first venv
# that can (the CI's has torch and TensorFlow; .hlo and Paddle's .json need jax / paddlepaddle beside deepmd-kit)
VENVS = [Path(p) for p in os.environ.get("DPCORE_DPKIT_VENV", str(ROOT / ".dpkit-venv")).split(os.pathsep) if p]
VENV = VENVS[0]
KIND_VENV: dict = {}  # "dpkit:<suffix>" -> the venv that made its file
MODEL = {"type_map": ["O", "H"],
         "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0, "neuron": [25, 50, 100],
                        "resnet_dt": False, "axis_neuron": 16, "type_one_side": False, "seed": 1},
         "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1}}
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "DP_INTRA_OP_PARALLELISM_THREADS": "1", "DP_INTER_OP_PARALLELISM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
DPCORE_BACKENDS = ("numpy", "jax", "torch", "tensorflow", "paddle")
TWINS = {"torch": "pth", "tensorflow": "pb", "numpy": "dp", "jax": "hlo", "paddle": "json"}
# DeePMD-kit's inference files per backend (`dp convert-backend` by suffix); .hlo (JAX) and .json (Paddle) need
# jax / paddlepaddle in DeePMD-kit's venv (not in the CI's, which has torch and tensorflow)
DPKIT_SUFFIXES = ("pth", "pb", "hlo", "json")

# one measurement in its own process: prints {"ms": [...], "maxrss_mb": ..., "energy": ...}
WORKER = r"""
import json, resource, sys, time
import numpy as np
kind, model_file, frame_file, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
f = np.load(frame_file)
coord, atype, box = f["coord"], f["atype"], f["box"]
if kind.startswith("dpkit"):
    from deepmd.infer import DeepPot
    dp = DeepPot(model_file)
    def call():
        e, frc, v = dp.eval(coord.reshape(1, -1), box, atype)[:3]
        call.forces = bool(np.isfinite(np.asarray(frc)).all())
        return float(np.asarray(e).ravel()[0])
else:
    import dpcore
    backend = kind.split(":", 1)[1]
    from dpcore.backends import threads
    threads.configure(1)  # 1 intra-op and 1 inter-op thread in the framework and BLAS (backends/threads.py)
    model = dpcore.load(model_file)
    def call():
        out = model.evaluate(coord, atype, box, backend=backend)
        call.forces = bool(np.isfinite(np.asarray(out["force"])).all())
        return float(out["energy"][0, 0])
energy = call()
ms = []
for _ in range(calls):
    t0 = time.perf_counter(); call(); ms.append(1e3 * (time.perf_counter() - t0))
print(json.dumps({"ms": ms, "energy": energy, "forces": call.forces,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def water_frame(replicate: int):
    coord = np.load(WATER / "set.000" / "coord.npy")[:1].reshape(1, -1, 3)
    box = np.load(WATER / "set.000" / "box.npy")[:1].reshape(3, 3)
    atype = np.loadtxt(WATER / "type.raw", dtype=int)
    shifts = np.array([[i, j, k] for i in range(replicate) for j in range(replicate) for k in range(replicate)])
    coord = (coord[:, None, :, :] + (shifts @ box)[None, :, None, :]).reshape(1, -1, 3)
    return coord, np.tile(atype, len(shifts)), (box * replicate).reshape(1, 9)


def build_model(workdir: Path) -> Path:
    """The water model with descriptor statistics and energy bias from the water data, saved as model.dp."""
    import dpcore
    from dpcore.stat.descriptor import descriptor_stats

    model = dpcore.model_from_config(MODEL, seed=1)
    coord = np.load(WATER / "set.000" / "coord.npy")[:10]
    frames = [{"coord": coord.reshape(10, -1, 3), "atype": np.tile(np.loadtxt(WATER / "type.raw", dtype=int), (10, 1)),
               "box": np.load(WATER / "set.000" / "box.npy")[:10]}]
    davg, dstd = descriptor_stats(model.config, frames)
    params = model.params
    params["descriptor"]["davg"], params["descriptor"]["dstd"] = davg, dstd
    params["out_bias"] = np.array([-93.6, -187.2]) / 3.0  # ~ eV per atom of water, so the energies are realistic
    model.set_params(params)
    path = workdir / "model.dp"
    model.save(path)
    return path


def dpkit(args, cwd, venv=None) -> subprocess.CompletedProcess:
    return subprocess.run([str((venv or VENV) / "bin" / args[0]), *map(str, args[1:])], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **THREADS}, timeout=1800)


def deepmd_files(dp_file: Path) -> dict:
    """DeePMD-kit's files of the same weights: {"dp": path, "pth": path, "pb": path, "hlo": path, "json": path,
    "pb-compressed": path} (those that work; "dp" is dpcore's own file, read by DeePMD-kit's NumPy backend)."""
    out = {"dp": dp_file}  # DeePMD-kit's NumPy backend reads the file as it is
    for suffix in DPKIT_SUFFIXES:
        target = dp_file.with_suffix(f".{suffix}")
        for venv in VENVS:
            proc = dpkit(["dp", "convert-backend", dp_file, target], dp_file.parent, venv)
            if proc.returncode == 0:
                out[suffix], KIND_VENV[f"dpkit:{suffix}"] = target, venv
                break
            print(f"dp convert-backend -> .{suffix} failed ({venv}): {proc.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
    if "pb" in out:
        target = dp_file.with_name("model-compressed.pb")
        venv = KIND_VENV["dpkit:pb"]
        proc = dpkit(["dp", "--tf", "compress", "-i", out["pb"], "-o", target, "-t", dp_file.parent / "input.json"],
                     dp_file.parent, venv)
        if proc.returncode == 0:
            out["pb-compressed"], KIND_VENV["dpkit:pb-compressed"] = target, venv
        else:
            print(f"dp --tf compress failed: {[l for l in proc.stderr.splitlines() if 'Error' in l][-1:]}", file=sys.stderr)
    return out


def measure(kind: str, model_file: Path, frame_file: Path, calls: int) -> dict:
    python = str(KIND_VENV.get(kind, VENV) / "bin" / "python") if kind.startswith("dpkit") else sys.executable
    env = {**os.environ, **THREADS}
    if kind.startswith("dpkit"):
        env.pop("PYTHONPATH", None)  # DeePMD-kit's venv, not this project's paths
    proc = subprocess.run([python, "-c", WORKER, kind, str(model_file), str(frame_file), str(calls)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def interleaved(kinds: dict, frame_file: Path, rounds: int, calls: int, echo=None) -> tuple[dict, dict]:
    """Measure every ``{kind: model_file}`` once per round, the order rotating round by round: returns
    ``({kind: [ms, ...]}, {kind: [result of each round]})``, a failure's result being ``{"error": ...}``."""
    results, runs = {k: [] for k in kinds}, {k: [] for k in kinds}
    order = list(kinds)
    for r in range(rounds):
        for k in order[r % len(order):] + order[: r % len(order)]:
            runs[k].append(measure(k, kinds[k], frame_file, calls))
            results[k] += runs[k][-1].get("ms", [])
        if echo:
            echo(f"round {r + 1}/{rounds} done")
    return results, runs


def write_training_input(work: Path) -> None:
    """``input.json`` beside the model: what ``dp --tf compress -t`` and ``dpcore compress -t`` read (the model and
    the training data, for its neighbour statistics)."""
    (work / "input.json").write_text(json.dumps({
        "model": MODEL, "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-8, "decay_steps": 5000},
        "loss": {"type": "ener"}, "training": {"training_data": {"systems": [str(WATER)], "batch_size": 1},
                                               "numb_steps": 1}}))


def compressed_model(dp_file: Path) -> Path:
    """``dpcore compress -i model.dp -o model-compressed.dp -t input.json`` (made once per run)."""
    target = dp_file.with_name("model-compressed.dp")
    if not target.exists():
        from dpcore.cli import main as dpcore_main

        code = dpcore_main(["compress", "-i", str(dp_file), "-o", str(target), "-t", str(dp_file.parent / "input.json")])
        if code:
            sys.exit(f"dpcore compress failed (exit {code})")
    return target


def print_compressed_table(med: dict, energies: dict, peaks: dict) -> None:
    """Compressed vs uncompressed ms/frame per dpcore backend, with the energy difference (eV)."""
    print("\n| backend | uncompressed ms/frame | compressed ms/frame | speed-up | compressed peak MB | "
          "E(compressed) - E(uncompressed) (eV) |")
    print("|---|---|---|---|---|---|")
    for b in DPCORE_BACKENDS:
        u, c = f"dpcore:{b}", f"dpcore-compressed:{b}"
        if u not in med or c not in med:
            print(f"| {b} | {med.get(u, float('nan')):.1f} | {med.get(c, float('nan')):.1f} | | | |")
            continue
        print(f"| {b} | {med[u]:.1f} | {med[c]:.1f} | {med[u] / med[c]:.2f}x | {peaks[c]:.0f} | "
              f"{energies[c] - energies[u]:.1e} |")
    if "dpkit:pb" in med and "dpkit:pb-compressed" in med:
        print(f"| DeePMD-kit TF (.pb) | {med['dpkit:pb']:.1f} | {med['dpkit:pb-compressed']:.1f} | "
              f"{med['dpkit:pb'] / med['dpkit:pb-compressed']:.2f}x | {peaks['dpkit:pb-compressed']:.0f} | "
              f"{energies['dpkit:pb-compressed'] - energies['dpkit:pb']:.1e} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=15)
    p.add_argument("--replicate", type=int, default=1, help="n x n x n copies of the 192-atom cell")
    p.add_argument("--only", default=None, help="comma-separated measurements, e.g. dpcore:jax,dpkit:pth")
    p.add_argument("--no-compressed", dest="compressed", action="store_false",
                   help="skip dpcore's compressed model (dpcore-compressed:<backend>)")
    p.add_argument("--type-one-side", action="store_true",
                   help="descriptor type_one_side: true (DeePMD-kit 3.2.0's JAX cannot export the example's false)")
    args = p.parse_args()
    if args.type_one_side:
        MODEL["descriptor"]["type_one_side"] = True
    if not (WATER / "type.raw").exists():
        sys.exit(f"water data not found at {WATER}")
    work = Path(tempfile.mkdtemp(prefix="dpcore-bench-"))
    dp_file = build_model(work)
    write_training_input(work)
    coord, atype, box = water_frame(args.replicate)
    np.savez(work / "frame.npz", coord=coord, atype=atype, box=box)
    files = deepmd_files(dp_file) if (VENV / "bin" / "dp").exists() else {}
    kinds = {f"dpcore:{b}": dp_file for b in DPCORE_BACKENDS}
    if args.compressed:
        kinds.update({f"dpcore-compressed:{b}": compressed_model(dp_file) for b in DPCORE_BACKENDS})
    kinds.update({f"dpkit:{k}": v for k, v in files.items()})
    if args.only:
        kinds = {k: v for k, v in kinds.items() if k in args.only.split(",")}
    results, runs = interleaved(kinds, work / "frame.npz", args.rounds, args.calls,
                                echo=lambda line: print(line, file=sys.stderr, flush=True))
    ok = {k: [r for r in rs if "error" not in r] for k, rs in runs.items()}
    errors = {k: r["error"] for k, rs in runs.items() for r in rs if "error" in r}
    peaks = {k: max(r["maxrss_mb"] for r in rs) for k, rs in ok.items() if rs}
    energies = {k: rs[-1]["energy"] for k, rs in ok.items() if rs}
    energy_only = {k for k, rs in ok.items() if rs and not rs[-1].get("forces", True)}
    print(f"\n{coord.shape[1]} atoms, float64, energy + forces + virial, 1 thread ({', '.join(f'{k}={v}' for k, v in THREADS.items() if 'THREAD' in k)}); "
          f"median over {args.rounds} rounds x {args.calls} calls; load average {os.getloadavg()}\n")
    print("| measurement | ms/frame (median) | peak MB | energy (eV) | vs DeePMD-kit twin | vs DeePMD-kit fastest |")
    print("|---|---|---|---|---|---|")
    ref = next((energies[k] for k in kinds if k.startswith("dpcore") and k in energies), None)
    med = {k: float(np.median(v)) for k, v in results.items() if v}
    fastest = min((v for k, v in med.items() if k.startswith("dpkit") and k not in energy_only), default=None)
    for k in kinds:
        if k not in med:
            print(f"| {k} | failed: {errors.get(k, '?')[:80]} | | | | |")
            continue
        twin = TWINS.get(k.split(":", 1)[1]) if k.startswith("dpcore") else None
        if twin and k.startswith("dpcore-compressed") and f"dpkit:{twin}-compressed" in med:
            twin = f"{twin}-compressed"  # a compressed model's twin is DeePMD-kit's compressed file where it has one
        tw = f"{med[f'dpkit:{twin}'] / med[k]:.2f}x ({twin})" if twin and f"dpkit:{twin}" in med else ""
        fa = f"{fastest / med[k]:.2f}x" if fastest and k.startswith("dpcore") else ""
        wrong = ref is not None and abs(energies[k] - ref) > 1e-8 * abs(ref)
        energy = f"{energies[k]:.6f}" + (f" (WRONG: dpcore {ref:.6f})" if wrong else "") + \
            (" (energy only: forces NaN)" if k in energy_only else "")
        print(f"| {k} | {med[k]:.1f} | {peaks[k]:.0f} | {energy} | {tw} | {fa} |")
    if args.compressed:
        print_compressed_table(med, energies, peaks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
