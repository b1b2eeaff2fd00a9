"""One backend process of the conformance suite.

    python -m dpcore.conformance.worker --backend torch --cases cases.json --out DIR

For every case of ``cases.json`` (a list of case dicts, see :mod:`dpcore.conformance.cases`) it builds the
model and the system on the host, prepares the inputs (neighbour list, type sorting), computes every output
kind of :data:`dpcore.conformance.kinds.KINDS` the backend supports, and writes ``DIR/<case>.npz`` (NumPy
arrays, keys ``"<kind>.<output>"``).  ``DIR/status.json`` records the backend's settings, capabilities and
version, per case the seconds, a fingerprint of the parameters and inputs, the compute precision, the
warnings (e.g. sel overflow) and every error with its traceback, and the contract checks.
Exit code 0 if everything ran, 1 if a case or a contract check failed, 3 if the backend could not be created.

``--perturb KIND.OUTPUT=REL`` (self-test of the suite, recorded in status.json and shown in the report) adds
uniform noise of ``REL x max|output|`` to that output of every case before saving.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from .cases import build_model, build_system, prepare_case
from .contracts import run_contracts
from .kinds import KINDS, CaseContext
from .tolerances import compute_precision

FRAMEWORK_PACKAGES = {"numpy": "numpy", "array_api_strict": "array-api-strict", "torch": "torch", "jax": "jax",
                      "tensorflow": "tensorflow-cpu", "paddle": "paddlepaddle"}


def _version(backend_name: str) -> str | None:
    from importlib import metadata

    for dist in (FRAMEWORK_PACKAGES.get(backend_name, backend_name), backend_name, "tensorflow"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def fingerprint(*trees) -> str:
    """sha256 over the keys, dtypes, shapes and bytes of nested dicts/lists of arrays (None and scalars too)."""
    h = hashlib.sha256()

    def feed(x, path=""):
        if isinstance(x, dict):
            for k in sorted(x):
                feed(x[k], f"{path}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                feed(v, f"{path}/{i}")
        elif isinstance(x, (np.ndarray, np.generic)):
            a = np.ascontiguousarray(x)
            h.update(f"{path}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(f"{path}={x!r}".encode())

    for t in trees:
        feed(t)
    return h.hexdigest()[:16]


def parse_perturb(specs) -> dict:
    out = {}
    for spec in specs or ():
        key, _, rel = spec.partition("=")
        if not rel or "." not in key:
            raise ValueError(f"--perturb expects KIND.OUTPUT=REL (e.g. analytic.force=1e-9), got {spec!r}")
        out[key] = float(rel)
    return out


def perturb(arrays: dict, spec: dict, seed: int = 0) -> list:
    """Add ``rel x max|a|`` uniform noise (one entry exactly +rel) to the outputs named in ``spec``; in place."""
    done = []
    for key, rel in spec.items():
        if key in arrays and arrays[key].size:
            a = arrays[key]
            noise = np.random.default_rng(seed).uniform(-1.0, 1.0, a.shape)
            noise.flat[0] = 1.0
            arrays[key] = (a + rel * np.max(np.abs(a)) * noise).astype(a.dtype)
            done.append(key)
    return done


def run_case(backend, case: dict) -> tuple[dict, dict]:
    """Arrays (NumPy, keyed ``kind.output``) and the status record of one case."""
    from dpcore.infer.inputs import unpermute

    rec = {"errors": {}, "warnings": [], "kinds": {}}
    arrays = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(case["model"])
        system = build_system(case["system"], model)
        inputs, blocks, perm = prepare_case(model, system)
    rec["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    rec["model_type"] = model_type = getattr(model, "model_type", "standard")
    rec["fingerprint"] = fingerprint(model.config, model.params, system, inputs)
    rec["precision"] = compute_precision(model.config)
    ctx = CaseContext(backend, model, backend.tree_asarray(model.params), backend.tree_asarray(inputs), blocks, case)
    for kind in KINDS.values():
        if kind.opt_in and kind.name not in case.get("kinds", ()):
            continue
        if not kind.applies_to(backend.capabilities, model_type, case):
            rec["kinds"][kind.name] = ("not applicable: needs " + ", ".join(kind.requires)
                                       if model_type in kind.model_types else f"not applicable to {model_type} models")
            continue
        t0 = time.perf_counter()
        try:
            out = kind.compute(ctx)
            out = unpermute({k: np.asarray(backend.to_numpy(v)) for k, v in out.items()}, perm)
            arrays.update({f"{kind.name}.{k}": v for k, v in out.items()})
            rec["kinds"][kind.name] = f"ok ({time.perf_counter() - t0:.2f} s)"
        except Exception:
            rec["errors"][kind.name] = traceback.format_exc()
            rec["kinds"][kind.name] = "error"
    return arrays, rec


def _write_status(out: Path, status: dict) -> None:
    tmp = out / "status.json.tmp"
    tmp.write_text(json.dumps(status, indent=1, default=str))
    os.replace(tmp, out / "status.json")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dpcore.conformance.worker", description=__doc__.splitlines()[0])
    p.add_argument("--backend", required=True)
    p.add_argument("--cases", required=True, help="JSON file with the list of cases")
    p.add_argument("--out", required=True, help="output directory (one npz per case + status.json)")
    p.add_argument("--perturb", action="append", default=[], metavar="KIND.OUTPUT=REL",
                   help="self-test: add relative noise to one output before saving")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = json.loads(Path(args.cases).read_text())
    noise = parse_perturb(args.perturb)
    status = {"backend": args.backend, "ok": False, "error": None, "python": sys.version.split()[0],
              "platform": platform.platform(), "pid": os.getpid(), "perturb": noise, "cases": {}, "contracts": {}}
    _write_status(out, status)
    t_start = time.perf_counter()
    try:
        from dpcore.backends import get_backend

        backend = get_backend(args.backend)
        status.update(name=backend.name, capabilities=backend.capabilities, settings=backend.settings,
                      version=_version(backend.name))
    except Exception:
        status["error"] = "could not create the backend:\n" + traceback.format_exc()
        status["seconds"] = time.perf_counter() - t_start
        _write_status(out, status)
        print(f"[{args.backend}] FAILED to create the backend:\n{traceback.format_exc()}", flush=True)
        return 3
    print(f"[{backend.name}] backend ready ({time.perf_counter() - t_start:.1f} s, version {status['version']})",
          flush=True)
    for k, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        try:
            arrays, rec = run_case(backend, case)
        except Exception:
            arrays, rec = {}, {"errors": {"setup": traceback.format_exc()}, "warnings": [], "kinds": {}}
        rec["perturbed"] = perturb(arrays, noise, seed=k)
        np.savez(out / f"{case['name']}.npz", **arrays)
        rec["seconds"] = time.perf_counter() - t0
        status["cases"][case["name"]] = rec
        _write_status(out, status)
        state = "ok" if not rec["errors"] else "ERROR in " + ", ".join(rec["errors"])
        print(f"[{backend.name}] case {k}/{len(cases)} {case['name']}: {rec['seconds']:.2f} s {state}", flush=True)
    status["contracts"] = run_contracts(backend)
    status["seconds"] = time.perf_counter() - t_start
    status["ok"] = (all(not r["errors"] for r in status["cases"].values())
                    and all(c["status"] != "FAIL" for c in status["contracts"].values()))
    _write_status(out, status)
    return 0 if status["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
