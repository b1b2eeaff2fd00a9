"""``dpcore conformance --physics``: the physics checks (:mod:`dpcore.conformance.checks`) on every backend,
each backend in its own process (paddle crashes when imported after tensorflow; a crash must not take the
others down), then one table: a row per (model, check, output), a column per backend.

    python -m dpcore.conformance.physics --backend torch --cases cases.json --out torch.json   (one worker)

Without a model the checks run on a small, fast part of the catalogue (:data:`PHYSICS_CASES`).  This module
imports no framework; only a worker process does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# catalogue model -> systems (float64 energy and spin models; periodic, non-periodic, several image shells)
PHYSICS_CASES = {"two_side": ("pbc_triclinic", "cluster"), "spin": ("small_box",)}


def physics_cases(model_file=None, config_file=None) -> list[dict]:
    """``[{"name", "model": spec, "systems": [...]}]``: the user's model on the standard systems, or
    :data:`PHYSICS_CASES`."""
    from .cases import USER_SYSTEMS, model_spec
    from .runner import resolve_cases

    if model_file or config_file:
        case = resolve_cases(model_file=model_file, config_file=config_file)[0]  # validates the file
        return [{"name": case["name"].rsplit("-", 1)[0], "model": case["model"], "systems": list(USER_SYSTEMS)}]
    return [{"name": m, "model": model_spec(m), "systems": list(s)} for m, s in PHYSICS_CASES.items()]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _run_one(name: str, cases_path: Path, workdir: Path, jobs: int, timeout: float, echo) -> dict:
    from .runner import _exit_text, _worker_env

    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    cmd = [sys.executable, "-m", "dpcore.conformance.physics", "--backend", name, "--cases", str(cases_path),
           "--out", str(out)]
    echo(f"[{name}] physics checks started")
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_worker_env(jobs, None),
                                  timeout=timeout).returncode
            exit_text = _exit_text(code)
        except subprocess.TimeoutExpired:
            code, exit_text = -9, "killed (timeout)"
    info = {"exit_code": code, "exit": exit_text, "seconds": round(time.perf_counter() - t0, 1), "load": _load(),
            "results": [], "errors": {}}
    if out.exists():
        data = json.loads(out.read_text())
        info.update(results=data["results"], errors=data["errors"], version=data.get("version"))
    if code != 0 and not info["errors"] and not info["results"]:
        info["errors"]["(backend)"] = f"worker process {exit_text}:\n" + "\n".join(log.read_text().splitlines()[-20:])
    echo(f"[{name}] finished: {exit_text} after {info['seconds']} s")
    return info


def run_physics(backends, *, model_file=None, config_file=None, jobs: int = 2, timeout: float = 1800.0,
                keep=None, echo=print) -> dict:
    """Run the physics checks on ``backends`` (one process each, ``jobs`` at a time); the report dict."""
    from .runner import START_ORDER, resolve_backends

    names = resolve_backends(backends)
    cases = physics_cases(model_file, config_file)
    tmp = None if keep else tempfile.mkdtemp(prefix="dpcore-physics-")
    workdir = Path(keep or tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cases.json").write_text(json.dumps(cases, indent=1))
    load_start, t0 = _load(), time.perf_counter()
    try:
        order = sorted(names, key=lambda b: START_ORDER.index(b) if b in START_ORDER else -1)  # slowest first
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            infos = list(pool.map(lambda b: _run_one(b, workdir / "cases.json", workdir, jobs, timeout, echo), order))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    processes = {b: dict(zip(order, infos))[b] for b in names}
    passed = all(p["exit_code"] == 0 and not p["errors"] and p["results"] and all(r["passed"] for r in p["results"])
                 for p in processes.values())
    return {"passed": passed, "backends": names, "cases": cases, "processes": processes,
            "load_average": {"start": load_start, "end": _load()}, "cpus": os.cpu_count(),
            "seconds": round(time.perf_counter() - t0, 1)}


def to_markdown(report: dict) -> str:
    """One row per (model, check, output): the largest error over the systems on each backend."""
    names = report["backends"]
    rows: dict = {}
    for b in sorted(names, key=lambda b: -len(report["processes"][b]["results"])):  # row order: the fullest run
        for r in report["processes"][b]["results"]:
            row = rows.setdefault((r["model"], r["name"], r["output"]), {"tol": r["tol"], "cells": {}})
            cell = row["cells"].setdefault(b, [0.0, True])
            cell[0], cell[1] = max(cell[0], r["error"]), cell[1] and r["passed"]
            row["tol"] = max(row["tol"], r["tol"])
    la = report["load_average"]
    lines = [f"## dpcore conformance --physics: {'PASS' if report['passed'] else 'FAIL'}", "",
             f"Models: {', '.join(c['name'] for c in report['cases'])}. Errors: the largest over the systems "
             "(relative, see docs/conformance.md). Load average (1, 5, 15 min): "
             f"{' '.join(map(str, la['start'])) or '-'} at start, {' '.join(map(str, la['end'])) or '-'} at the end "
             f"({report['cpus']} CPUs).", "",
             "| model | check | output | tol | " + " | ".join(names) + " | result |",
             "|" + "---|" * (len(names) + 5)]
    for (model, check, output), row in rows.items():
        cells = [("-" if b not in row["cells"] else f"{row['cells'][b][0]:.1e}" if row["cells"][b][1]
                  else f"**{row['cells'][b][0]:.1e}**") for b in names]
        ok = all(c[1] for c in row["cells"].values())
        lines.append(f"| {model} | {check} | {output} | {row['tol']:.0e} | " + " | ".join(cells)
                     + f" | {'pass' if ok else '**FAIL**'} |")
    lines += ["", "| backend | version | exit | seconds | load (1 min) at the end |", "|---|---|---|---|---|"]
    for b, p in report["processes"].items():
        lines.append(f"| {b} | {p.get('version') or '-'} | {p['exit']} | {p['seconds']} | "
                     f"{p['load'][0] if p['load'] else '-'} |")
    failed = [(b, r) for b in names for r in report["processes"][b]["results"] if not r["passed"]]
    errors = [(b, k, v) for b in names for k, v in report["processes"][b]["errors"].items()]
    if failed or errors:
        lines += ["", "### Failures", ""]
        lines += [f"- {b} / {r['model']} / {r['name']} / {r['output']} / {r['system']}: error {r['error']:.2e} > "
                  f"tol {r['tol']:.0e}" + (f" ({r['detail']})" if r["detail"] else "") for b, r in failed]
        lines += [f"- {b} / {k}:\n" + "\n".join("    " + ln for ln in str(v).strip().splitlines()[-12:])
                  for b, k, v in errors]
    lines.append(f"\nTotal time {report['seconds']} s.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Worker: run the checks of ``--cases`` on ``--backend``; write ``{"results", "errors", "version"}``."""
    p = argparse.ArgumentParser(prog="python -m dpcore.conformance.physics", description=main.__doc__)
    p.add_argument("--backend", required=True)
    p.add_argument("--cases", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from .cases import build_model
    from .checks import run_checks
    from .worker import _version

    results, errors = [], {}
    for case in json.loads(Path(args.cases).read_text()):
        t0 = time.perf_counter()
        try:
            for r in run_checks(build_model(case["model"]), args.backend, systems=case["systems"]):
                results.append({"model": case["name"], **r.to_dict()})
            state = "ok"
        except Exception:
            errors[case["name"]] = traceback.format_exc()
            state = "ERROR"
        print(f"[{args.backend}] {case['name']}: {time.perf_counter() - t0:.1f} s {state}", flush=True)
    Path(args.out).write_text(json.dumps({"results": results, "errors": errors, "version": _version(args.backend)},
                                         indent=1))
    return 0 if not errors and all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
