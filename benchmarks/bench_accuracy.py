"""Validation accuracy of dpcore next to DeePMD-kit at equal steps: water and NiO (spin), several seeds, the spread.

    python benchmarks/bench_accuracy.py [--systems water,nio] [--steps 1000] [--seeds 1,2,3] [--dpcore jax]
                                        [--deepmd tf,pt] [--threads 1] [--out FILE.md] [--precision float32]

Inputs are DeePMD-kit's example settings, shortened to ``--steps``: water = examples/water/se_e2_a/input.json
(bench_train.py's model, stop_lr 3.51e-8, batch 1, training data_0-2, validation data_3, 3 batches of 1 frame);
NiO = benchmarks/nio_input.json (examples/spin/se_e2_a/input_torch.json, ``ener_spin`` loss).  Both with
decay_steps = max(1, steps // 20) (the examples decay 200 / 20 times over their full runs), disp_freq = steps // 10,
save_freq = steps.  Seed s sets descriptor, fitting_net and training seeds; dpcore and DeePMD-kit get the same file.

Per (system, seed, trainer), one process at a time, threads equal everywhere (DP_INTRA_OP_PARALLELISM_THREADS =
OMP_NUM_THREADS = --threads, DP_INTER_OP_PARALLELISM_THREADS = 1): train, freeze, then test on every frame of
the validation system -- ``dpcore train/freeze/test`` or ``dp --tf|--pt train/freeze`` and ``dp test``.
Reported: the test RMSEs (energy per atom, force of the real atoms, for NiO the magnetic force of the Ni atoms:
``Force spin RMSE`` of both tools), the last validation line of lcurve.out (its 3 validation frames), and
s/step = wall time of the whole train process / steps (start-up, statistics and compilation included).
DeePMD-kit's TF spin model needs another data layout: NiO runs DeePMD-kit ``pt`` only.  DeePMD-kit comes from
``$DPCORE_DPKIT_VENV`` (default .dpkit-venv/, made by .ci/deepmd_venv.sh); without it only dpcore rows.
Logs, inputs and lcurve files stay in a temp dir (printed); checkpoints and frozen models are removed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench_train import WATER, water_input  # noqa: E402

from dpcore.train.lcurve import read_lcurve  # noqa: E402

NIO = WATER.parent / "nio_spin"
VENV = Path(os.environ.get("DPCORE_DPKIT_VENV", REPO / ".dpkit-venv"))
DIST = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow", "paddle": "paddlepaddle"}
TEST_RE = {"e": r"Energy RMSE/Natoms\s*:\s*(\S+)", "f": r"Force\s+(?:atom\s+)?RMSE\s*:\s*(\S+)",
           "fm": r"Force spin RMSE\s*:\s*(\S+)"}
LCURVE = {"e": "rmse_e_val", "f": "rmse_f_val", "fr": "rmse_fr_val", "fm": "rmse_fm_val"}
UNITS = {"e": "eV/atom", "f": "eV/Å", "fm": "eV/μB"}


def system_input(system: str, steps: int, seed: int, run: Path, precision: str = "float64") -> tuple[dict, Path]:
    """The training input of one run and its validation system."""
    if system == "water":
        cfg = water_input(steps)
        cfg["training"]["training_data"]["batch_size"] = 1
        cfg["training"]["validation_data"].update(batch_size=1, numb_btch=3)
        cfg["learning_rate"]["stop_lr"] = 3.51e-8
        cfg["training"]["disp_file"] = str(run / "lcurve.out")
    else:
        cfg = json.loads((HERE / "nio_input.json").read_text())
        cfg.pop("_comment", None)
        for key in ("training_data", "validation_data"):
            data = cfg["training"][key]
            data["systems"] = [str((REPO / s).resolve()) for s in data["systems"]]
        cfg["training"].update(disp_file=str(run / "lcurve.out"), save_dir=str(run))
    cfg["learning_rate"]["decay_steps"] = max(1, steps // 20)
    cfg["training"].update(numb_steps=steps, disp_freq=max(1, steps // 10), save_freq=steps, seed=seed)
    cfg["model"]["descriptor"]["seed"] = cfg["model"]["fitting_net"]["seed"] = seed
    cfg["model"]["descriptor"]["precision"] = cfg["model"]["fitting_net"]["precision"] = precision
    return cfg, Path(cfg["training"]["validation_data"]["systems"][0])


def run_one(system: str, trainer: str, seed: int, steps: int, env: dict, root: Path,
            precision: str = "float64") -> dict:
    """Train, freeze and test one model in ``root/<system>-<trainer>-s<seed>``; returns the numbers or an error."""
    run = root / f"{system}-{trainer.replace(':', '-')}-s{seed}"
    run.mkdir()
    cfg, valid = system_input(system, steps, seed, run, precision)
    (run / "input.json").write_text(json.dumps(cfg, indent=1))
    kind, backend = trainer.split(":")
    if kind == "dpcore":
        py = [sys.executable, "-m", "dpcore"]
        model = "model.dp"
        stages = [("train", py + ["train", "input.json", "--backend", backend]),
                  ("freeze", py + ["freeze", "-o", model]), ("test", py + ["test", "-m", model, "-s", str(valid)])]
        run_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}
    else:
        dp = str(VENV / "bin" / "dp")
        model = "frozen.pth" if backend == "pt" else "frozen.pb"
        stages = [("train", [dp, f"--{backend}", "train", "input.json", "--skip-neighbor-stat"]),
                  ("freeze", [dp, f"--{backend}", "freeze", "-o", model]),
                  ("test", [dp, "test", "-m", model, "-s", str(valid)])]
        run_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out: dict = {"log": str(run / "run.log")}
    with open(run / "run.log", "w") as log:
        for stage, cmd in stages:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=run, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=max(3600, 20 * steps))
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            out[f"{stage}_s"] = time.perf_counter() - t0
            if rc != 0:
                out["error"] = f"{stage} exit {rc}"
                break
    text = (run / "run.log").read_text(errors="replace")
    if "error" not in out:
        test = text[text.rfind("\n$ "):]
        for key, pat in TEST_RE.items():
            m = re.search(pat, test)
            if m:
                out[key] = float(m.group(1))
        if "e" not in out or "f" not in out or (system == "nio" and "fm" not in out):
            out["error"] = "test: RMSE lines not found"
        out["s_per_step"] = out["train_s"] / steps
    lc = run / "lcurve.out"
    if lc.exists():
        head, data = read_lcurve(lc)
        if len(data) and head:
            vals = dict(zip(head, data[-1]))
            out["lcurve"] = f"{int(vals['step'])}: " + " / ".join(f"{vals[c]:.2e}" for c in LCURVE.values() if c in vals)
    if "error" in out:
        out["tail"] = "\n".join(text.strip().splitlines()[-15:])
    for f in run.iterdir():  # checkpoints and frozen models: tens of MB per run
        if f.name.startswith("model.ckpt") or f.name in (model, "checkpoint"):
            f.unlink()
    return out


def fmt(x: float) -> str:
    return f"{x:.3e}"


def tables(system: str, rows: list[dict], keys: list[str]) -> list[str]:
    cols = " | ".join(f"rmse_{k} ({UNITS[k]})" for k in keys)
    lc = "e / fr / fm" if system == "nio" else "e / f"
    out = [f"| trainer | seed | {cols} | lcurve last val (step: {lc}) | s/step | load before→after |",
           "|---|---|" + "---|" * len(keys) + "---|---|---|"]
    for r in rows:
        load = f"{r['load0']:.2f}→{r['load1']:.2f}"
        if "error" in r:
            last = (r.get("tail") or "").splitlines()[-1:] or [""]
            out.append(f"| {r['trainer']} | {r['seed']} | failed: {r['error']}: {last[0][-120:].replace('|', '/')} "
                       f"(log {r['log']})"
                       + " |" * len(keys) + f" {r.get('lcurve', '')} | | {load} |")
        else:
            out.append(f"| {r['trainer']} | {r['seed']} | " + " | ".join(fmt(r[k]) for k in keys)
                       + f" | {r.get('lcurve', '')} | {r['s_per_step']:.3f} | {load} |")
    out += ["", "| trainer | seeds ok | " + " | ".join(f"rmse_{k} mean (min–max)" for k in keys) + " | s/step mean |",
            "|---|---|" + "---|" * len(keys) + "---|"]
    for trainer in dict.fromkeys(r["trainer"] for r in rows):
        ok = [r for r in rows if r["trainer"] == trainer and "error" not in r]
        n = len([r for r in rows if r["trainer"] == trainer])
        if not ok:
            out.append(f"| {trainer} | 0/{n} |" + " |" * len(keys) + " |")
            continue
        cells = [f"{fmt(statistics.mean(v))} ({fmt(min(v))}–{fmt(max(v))})" for v in
                 ([r[k] for r in ok] for k in keys)]
        out.append(f"| {trainer} | {len(ok)}/{n} | " + " | ".join(cells)
                   + f" | {statistics.mean(r['s_per_step'] for r in ok):.3f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="water,nio")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--dpcore", default="jax", help="dpcore backends (they train identically; one is enough)")
    ap.add_argument("--deepmd", default="tf,pt", help="DeePMD-kit backends")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--out", help="also write the Markdown here")
    ap.add_argument("--precision", default="float64", help="descriptor and fitting_net precision of every run")
    args = ap.parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    seeds = [int(s) for s in split(args.seeds)]
    data = {"water": WATER / "data_0" / "type.raw", "nio": NIO / "data_0" / "type.raw"}
    notes, systems = [], []
    for system in split(args.systems):
        if system not in data:
            sys.exit(f"unknown system {system!r} (water, nio)")
        if data[system].exists():
            systems.append(system)
        else:
            notes.append(f"{system}: skipped, data not found under {data[system].parents[1]}")
            print(notes[-1], file=sys.stderr)
    if not systems:
        print("\n".join(notes))
        return 0
    trainers = [f"dpcore:{b}" for b in split(args.dpcore)]
    dp_version = "absent"
    if (VENV / "bin" / "dp").exists():
        trainers += [f"deepmd:{b}" for b in split(args.deepmd)]
        v = subprocess.run([str(VENV / "bin" / "dp"), "--version"], capture_output=True, text=True)
        last = (v.stdout + v.stderr).strip().splitlines()[-1:] or ["?"]
        dp_version = last[0].replace("DeePMD-kit ", "") if v.returncode == 0 else "?"
    else:
        notes.append(f"no DeePMD-kit venv at {VENV}: dpcore rows only")
        print(notes[-1], file=sys.stderr)
    if "nio" in systems and "deepmd:tf" in trainers:
        notes.append("nio: DeePMD-kit tf not run (its spin model takes another input and data layout; "
                     "with this input it fails feeding d_sea_t_natoms); DeePMD-kit pt only")
        print(notes[-1], file=sys.stderr)
    env = {**os.environ, "DP_INTRA_OP_PARALLELISM_THREADS": args.threads, "DP_INTER_OP_PARALLELISM_THREADS": "1",
           "OMP_NUM_THREADS": args.threads, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = Path(tempfile.mkdtemp(prefix="bench_accuracy_"))
    print(f"runs, logs and lcurve files in {root}", file=sys.stderr)
    load0, t_start = os.getloadavg(), time.time()
    results: dict = {s: [] for s in systems}
    for system in systems:
        for seed in seeds:
            for trainer in trainers:
                if system == "nio" and trainer == "deepmd:tf":
                    continue
                tag = f"[{system} seed {seed} {trainer}]"
                la = os.getloadavg()[0]
                print(f"{tag} training {args.steps} steps (load {la:.2f}) ...", file=sys.stderr, flush=True)
                t0 = time.time()
                r = run_one(system, trainer, seed, args.steps, env, root, args.precision)
                r.update(trainer=trainer, seed=seed, load0=la, load1=os.getloadavg()[0])
                msg = (f"FAILED ({r['error']}), log {r['log']}:\n{r.get('tail', '')}" if "error" in r else
                       f"rmse_e {fmt(r['e'])} rmse_f {fmt(r['f'])}" + (f" rmse_fm {fmt(r['fm'])}" if "fm" in r else "")
                       + f", {r['s_per_step']:.3f} s/step")
                print(f"{tag} done in {time.time() - t0:.0f} s (load {r['load1']:.2f}): {msg}", file=sys.stderr,
                      flush=True)
                results[system].append(r)
    versions = []
    for b in split(args.dpcore):
        try:
            versions.append(f"{b} {metadata.version(DIST.get(b, b))}")
        except metadata.PackageNotFoundError:
            versions.append(b)
    try:
        dpcore_version = metadata.version("dpcore")
    except metadata.PackageNotFoundError:
        dpcore_version = "?"
    decay = max(1, args.steps // 20)
    md = [f"# Validation accuracy at {args.steps} steps, dpcore vs DeePMD-kit", "",
          f"- date {datetime.datetime.now().isoformat(timespec='minutes')}; dpcore {dpcore_version} on "
          f"{', '.join(versions)}; DeePMD-kit {dp_version}"
          + (f" ({', '.join(split(args.deepmd)) or 'not run'})" if dp_version != "absent" else ""),
          f"- numb_steps {args.steps}, decay_steps {decay}, start_lr 1e-3, stop_lr 3.51e-8, disp_freq "
          f"{max(1, args.steps // 10)}; seeds {', '.join(map(str, seeds))} (descriptor, fitting_net and training seed); "
          f"precision {args.precision}",
          f"- threads {args.threads} (DP_INTRA_OP_PARALLELISM_THREADS, OMP_NUM_THREADS; inter-op 1), one run at a time;"
          " "
          f"load average {load0[0]:.2f} → {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"total {(time.time() - t_start) / 60:.1f} min",
          "- rmse_*: `dpcore test` / `dp test` of the frozen model on all frames of the validation system; "
          "lcurve: last line of lcurve.out (validation columns); s/step: train process wall time / steps "
          "(start-up, data statistics and compilation included)"]
    md += [f"- note: {n}" for n in notes]
    for system in systems:
        title = ("water (192 atoms, se_e2_a, batch 1), validation data_3" if system == "water" else
                 "NiO spin (32 atoms, 16 Ni with spin, ener_spin, batch 3), validation data_2; "
                 "rmse_f = real-atom force, rmse_fm = magnetic force of the Ni atoms")
        md += ["", f"## {title}", ""]
        md += tables(system, results[system], ["e", "f", "fm"] if system == "nio" else ["e", "f"])
    text = "\n".join(md) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
