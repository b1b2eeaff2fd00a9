"""Run the conformance suite: one worker process per backend, then compare everything with NumPy.

>>> report = run(["numpy", "torch"], catalogue="quick")      # dict; report["passed"]
>>> print(to_markdown(report))

Each backend runs ``python -m dpcore.conformance.worker`` in its own process (paddle segfaults when imported
after tensorflow, and a crash must not take the others down), at most ``jobs`` at a time.  The NumPy
reference always runs, requested or not.  A requested backend that cannot be imported, crashes or
raises is a failure row in the report, never a skip.  This module imports no framework.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .cases import build_model, catalogue as catalogue_cases, user_cases
from .compare import _load_status, compare_backend, summarize
from .report import build_report

REFERENCE = "numpy"
START_ORDER = ["tensorflow", "paddle", "jax", "torch", "array_api_strict", "numpy"]  # slowest first
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def resolve_backends(names) -> list[str]:
    """Canonical backend names (aliases accepted, duplicates dropped); unknown names raise ValueError."""
    from dpcore.backends import BACKENDS, canonical_name

    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out, bad = [], []
    for n in names:
        try:
            key = canonical_name(n.strip())
        except ValueError:
            bad.append(n)
            continue
        if key not in out:
            out.append(key)
    if bad:
        raise ValueError(f"unknown backend(s) {', '.join(map(repr, bad))}; valid names: {', '.join(BACKENDS)}")
    if not out:
        raise ValueError(f"no backend given; valid names: {', '.join(BACKENDS)}")
    return out


def resolve_cases(catalogue: str = "quick", model_file=None, config_file=None, seed: int = 1) -> list[dict]:
    """The cases to run: the built-in catalogue, or a user's model file / input.json on the standard systems."""
    if model_file and config_file:
        raise ValueError("give either --model or --config, not both")
    if model_file:
        path = Path(model_file)
        if not path.exists():
            raise FileNotFoundError(f"model file {path} does not exist")
        spec = {"kind": "file", "path": str(path.resolve())}
        build_model(spec)  # a file that cannot be read is an argument error, before any process starts
        return user_cases(spec, path.stem)
    if config_file:
        from dpcore.config import normalize_model

        path = Path(config_file)
        if not path.exists():
            raise FileNotFoundError(f"input file {path} does not exist")
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise ValueError(f"{path}: no 'model' section (a dict) in this input file")
        model = normalize_model(data["model"])
        spec = {"kind": "config", "config": model, "seed": seed, "stats_seed": seed + 1000}
        build_model(spec)
        return user_cases(spec, Path(config_file).stem)
    return catalogue_cases(catalogue)


def _kind_references(cases, names) -> list[str]:
    """Backends that must run as the reference of an opt-in kind (``train_step``: torch) the cases use,
    when another backend is requested (the NumPy reference alone computes no such kind)."""
    from .kinds import KINDS

    used = {k for c in cases for k in c.get("kinds", ())}
    refs = [KINDS[k].reference_backend for k in used if k in KINDS and KINDS[k].reference_backend]
    return sorted(r for r in set(refs) if any(n not in (REFERENCE, r) for n in names))


def _worker_env(jobs: int, extra: dict | None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    for var in THREAD_VARS:
        env.setdefault(var, threads)
    env.update(extra or {})
    return env


class _Process:
    def __init__(self, name, cmd, env, workdir, echo, lock):
        self.name, self.t0 = name, time.perf_counter()
        self.log = Path(workdir) / f"{name}.log"
        self.popen = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      errors="replace")
        self.thread = threading.Thread(target=self._pump, args=(echo, lock), daemon=True)
        self.thread.start()
        self.timed_out = False

    def _pump(self, echo, lock):
        with open(self.log, "w") as fh:
            for line in self.popen.stdout:
                fh.write(line)
                fh.flush()
                if line.startswith(f"[{self.name}]"):
                    with lock:
                        echo(line.rstrip())

    def tail(self, n=30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


def _exit_text(code) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_workers(backends, cases, workdir, *, jobs=2, timeout=1800.0, perturb=None, worker_env=None,
                echo=print) -> dict:
    """Launch one worker per backend (at most ``jobs`` at once); returns per-backend process info."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cases.json").write_text(json.dumps(cases, indent=1))
    order = sorted(backends, key=lambda b: START_ORDER.index(b) if b in START_ORDER else -1)
    pending, running, info, lock = list(order), [], {}, threading.Lock()
    while pending or running:
        while pending and len(running) < max(1, jobs):
            name = pending.pop(0)
            out = workdir / name
            if out.exists():
                for f in list(out.glob("*.npz")) + list(out.glob("status.json*")):
                    f.unlink()
            cmd = [sys.executable, "-m", "dpcore.conformance.worker", "--backend", name,
                   "--cases", str(workdir / "cases.json"), "--out", str(out)]
            for p in (perturb or {}).get(name, []):
                cmd += ["--perturb", p]
            env = _worker_env(jobs, (worker_env or {}).get(name))
            with lock:
                echo(f"[{name}] started ({len(cases)} cases)")
            running.append(_Process(name, cmd, env, workdir, echo, lock))
        time.sleep(0.05)
        for proc in list(running):
            elapsed = time.perf_counter() - proc.t0
            if proc.popen.poll() is None and elapsed > timeout:
                proc.popen.kill()
                proc.timed_out = True
            code = proc.popen.poll()
            if code is None:
                continue
            proc.thread.join(timeout=5)
            running.remove(proc)
            info[proc.name] = {"exit_code": code, "exit": _exit_text(code) + (" (timeout)" if proc.timed_out else ""),
                               "wall_seconds": elapsed, "log": str(proc.log), "log_tail": proc.tail()}
            with lock:
                echo(f"[{proc.name}] finished: {info[proc.name]['exit']} after {elapsed:.1f} s")
    return info


def collect(workdir, backends, cases, *, catalogue="quick", processes=None, reference=REFERENCE, seconds=0.0) -> dict:
    """Compare the saved outputs in ``workdir`` and build the report (works on a kept directory too)."""
    records, contracts, procs = [], [], {}
    for name in dict.fromkeys([*backends, reference]):
        st = _load_status(Path(workdir) / name) or {}
        p = dict((processes or {}).get(name, {}))
        p.update(version=st.get("version"), settings=st.get("settings"), capabilities=st.get("capabilities"),
                 seconds=st.get("seconds", p.get("wall_seconds")), perturb=st.get("perturb"),
                 requested=name in backends,
                 warnings=sorted({w for c in st.get("cases", {}).values() for w in c.get("warnings", [])}))
        p.setdefault("exit_code", None)
        procs[name] = p
        if name not in backends:
            continue
        recs = compare_backend(workdir, name, cases, reference)
        code = p.get("exit_code")
        if code not in (None, 0, 1) and not any(r["output"] is None for r in recs):
            recs.append({"backend": name, "case": None, "kind": None, "output": None, "label": "(backend)",
                         "passed": False, "reason": f"worker process {p.get('exit')}:\n{p.get('log_tail', '')}"})
        records += recs
        for cname, c in st.get("contracts", {}).items():
            contracts.append({"backend": name, "contract": cname, **c})
    ref_cases = (_load_status(Path(workdir) / reference) or {}).get("cases", {})
    case_info = [{"name": c["name"], "model": c["model"].get("path") or c["name"].split("-")[0],
                  "system": c["system"], "precision": ref_cases.get(c["name"], {}).get("precision")} for c in cases]
    return build_report(backends=backends, reference=reference, cases=case_info, catalogue=catalogue,
                        records=records, summary=summarize(records), contracts=contracts, processes=procs,
                        seconds=seconds)


def run(backends, *, catalogue="quick", cases=None, model_file=None, config_file=None, keep=None, jobs=2,
        timeout=1800.0, perturb=None, worker_env=None, echo=print) -> dict:
    """Run the suite and return the report dict (see :mod:`dpcore.conformance.report`).

    backends: names or a comma-separated string; catalogue: "quick" | "full"; cases: explicit list of case
    dicts (overrides catalogue); model_file / config_file: a user's model; keep: directory for the outputs
    (default: a temporary directory, removed); perturb: ``{backend: ["kind.output=rel", ...]}`` (self-test);
    worker_env: ``{backend: {VAR: value}}`` extra environment of that backend's process.
    """
    t0 = time.perf_counter()
    names = resolve_backends(backends)
    if cases is None:
        cases = resolve_cases(catalogue, model_file, config_file)
        label = "user model" if (model_file or config_file) else catalogue
    else:
        label = "custom"
    tmp = None if keep else tempfile.mkdtemp(prefix="dpcore-conformance-")
    workdir = Path(keep or tmp)
    try:
        to_run = list(dict.fromkeys([REFERENCE, *names, *_kind_references(cases, names)]))
        info = run_workers(to_run, cases, workdir, jobs=jobs, timeout=timeout, perturb=perturb,
                           worker_env=worker_env, echo=echo)
        report = collect(workdir, names, cases, catalogue=label, processes=info, seconds=time.perf_counter() - t0)
        report["workdir"] = str(workdir) if keep else None
        return report
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
