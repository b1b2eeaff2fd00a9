"""Comparison of one backend's saved outputs with the NumPy reference, with the dtype-keyed tolerance table of
:mod:`dpcore.conformance.tolerances`.

Definitions, per case and per output array ``x`` against the reference ``r``:

    max_abs = max |x - r|                     (over all entries)
    max_rel = max_abs / max |r|               (relative to the largest reference magnitude of that output;
                                               0 if both are all-zero, inf if only r is)

The error is scaled by the output's own magnitude, not entry by entry, so entries near zero (a force
component that happens to vanish) do not produce huge ratios.  An output passes when

    dtype(x) == dtype(r)  and  shape(x) == shape(r)  and  all finite  and  max_rel <= TOLERANCES[precision]

checked in that order: a dtype or shape mismatch fails before any value is looked at.  ``precision`` is
the least precise of the reference dtype and the model's compute precision (the network precision):
a float32 model's energies are stored in float64 but only carry float32 accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .tolerances import PRECISION_ORDER as _ORDER, TOLERANCES


@dataclass
class Comparison:
    passed: bool
    max_abs: float | None = None
    max_rel: float | None = None
    tol: float | None = None
    precision: str | None = None
    dtype: str | None = None
    ref_dtype: str | None = None
    shape: tuple | None = None
    ref_shape: tuple | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = None if self.shape is None else list(self.shape)
        d["ref_shape"] = None if self.ref_shape is None else list(self.ref_shape)
        return d


def tolerance_precision(ref_dtype, compute_precision: str | None = None) -> str:
    """Precision whose tolerance applies: the least precise of the reference dtype and the compute precision."""
    names = [np.dtype(ref_dtype).name]
    if compute_precision:
        names.append(compute_precision)
    known = [n for n in names if n in _ORDER]
    if len(known) != len(names):
        return next(n for n in names if n not in _ORDER)
    return min(known, key=_ORDER.index)


def compare_array(x, ref, compute_precision: str | None = None) -> Comparison:
    """Compare ``x`` with the reference ``ref`` (NumPy arrays): dtype, then shape, then values."""
    x, ref = np.asarray(x), np.asarray(ref)
    c = Comparison(False, dtype=x.dtype.name, ref_dtype=ref.dtype.name, shape=tuple(x.shape), ref_shape=tuple(ref.shape))
    if x.dtype != ref.dtype:
        c.reason = f"dtype {x.dtype.name} != reference {ref.dtype.name}"
        return c
    if x.shape != ref.shape:
        c.reason = f"shape {tuple(x.shape)} != reference {tuple(ref.shape)}"
        return c
    if not np.issubdtype(ref.dtype, np.floating):
        c.reason = f"no tolerance for non-floating dtype {ref.dtype.name}"
        return c
    c.precision = tolerance_precision(ref.dtype, compute_precision)
    if c.precision not in TOLERANCES:
        c.reason = f"no tolerance for precision {c.precision} (known: {sorted(TOLERANCES)})"
        return c
    c.tol = TOLERANCES[c.precision]
    if not np.all(np.isfinite(ref)):
        c.reason = "reference has NaN or inf"
        return c
    if ref.size == 0:
        c.passed, c.max_abs, c.max_rel = True, 0.0, 0.0
        return c
    xf, rf = x.astype(np.float64), ref.astype(np.float64)
    if not np.all(np.isfinite(xf)):
        c.max_abs = c.max_rel = float("inf")
        c.reason = f"{int(np.sum(~np.isfinite(xf)))} NaN/inf entries"
        return c
    c.max_abs = float(np.max(np.abs(xf - rf)))
    scale = float(np.max(np.abs(rf)))
    c.max_rel = c.max_abs / scale if scale > 0 else (0.0 if c.max_abs == 0 else float("inf"))
    c.passed = c.max_rel <= c.tol
    if not c.passed:
        c.reason = f"max rel {c.max_rel:.2e} > tol {c.tol:.0e}"
    return c


# ---------------------------------------------------------------------------------------- one whole run
def _load_status(directory) -> dict | None:
    import json
    from pathlib import Path

    path = Path(directory) / "status.json"
    return json.loads(path.read_text()) if path.exists() else None


def _load_npz(path) -> dict:
    from pathlib import Path

    if not Path(path).exists():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _record(backend, case, kind, output, comparison: Comparison | None = None, **extra) -> dict:
    from .kinds import output_label

    rec = {"backend": backend, "case": case, "kind": kind, "output": output,
           "label": output_label(kind, output) if kind and output else ("(backend)" if case is None else "(case)")}
    rec.update((comparison or Comparison(False)).to_dict())
    rec.update(extra)
    return rec


def compare_backend(workdir, backend: str, cases: list, reference: str = "numpy") -> list[dict]:
    """One record per (case, kind, output) the backend is expected to produce, compared with the reference.

    Reads ``workdir/<backend>/status.json`` and ``<case>.npz`` (written by the worker).  A backend that
    did not start, crashed or raised gives failure records (never a skip).
    """
    from pathlib import Path

    from .kinds import KINDS

    wd = Path(workdir)
    st, ref_st = _load_status(wd / backend), _load_status(wd / reference)
    statuses: dict = {}

    def _ref_status(name):
        if name not in statuses:
            statuses[name] = _load_status(wd / name)
        return statuses[name]
    if st is None or st.get("error") or "capabilities" not in st:
        why = "no status.json (the process did not start or crashed at once)" if st is None else (
            st.get("error") or "the backend was never created (process ended early)")
        return [_record(backend, None, None, None, reason=why.strip())]
    out = []
    for case in cases:
        name = case["name"]
        crec = st["cases"].get(name)
        rrec = (ref_st or {}).get("cases", {}).get(name)
        if crec is None:
            out.append(_record(backend, name, None, None, reason="case not run (the process ended early)"))
            continue
        if "setup" in crec["errors"]:
            out.append(_record(backend, name, None, None, reason="case setup failed:\n" + crec["errors"]["setup"]))
            continue
        arrays = _load_npz(wd / backend / f"{name}.npz")
        ref_arrays = _load_npz(wd / reference / f"{name}.npz") if rrec else {}
        same_inputs = rrec is not None and rrec.get("fingerprint") == crec.get("fingerprint")
        precision = (rrec or crec).get("precision")
        for kind in KINDS.values():
            if not kind.applies_to(st["capabilities"], crec.get("model_type", "standard"), case):
                continue
            kref, k_arrays, k_rrec, k_same = reference, ref_arrays, rrec, same_inputs
            if kind.reference_backend:  # e.g. train_step: compared with torch's run (NumPy has no autodiff)
                kref = kind.reference_backend
                k_rrec = (_ref_status(kref) or {}).get("cases", {}).get(name)
                k_arrays = _load_npz(wd / kref / f"{name}.npz") if k_rrec else {}
                k_same = k_rrec is not None and k_rrec.get("fingerprint") == crec.get("fingerprint")
            for output in kind.outputs:
                key, rkey = f"{kind.name}.{output}", f"{kind.reference}.{output}"
                if kind.name in crec["errors"]:
                    out.append(_record(backend, name, kind.name, output,
                                       reason=f"{kind.name} raised:\n{crec['errors'][kind.name]}"))
                elif key not in arrays:
                    out.append(_record(backend, name, kind.name, output, reason=f"output {key} was not saved"))
                elif k_rrec is None or rkey not in k_arrays:
                    out.append(_record(backend, name, kind.name, output,
                                       reason=f"no reference: {kref} produced no {rkey} for this case"))
                elif not k_same:
                    out.append(_record(backend, name, kind.name, output, reason=(
                        f"inputs differ from the {kref} process (fingerprint {crec.get('fingerprint')} "
                        f"!= {k_rrec.get('fingerprint')}): the case builders are not deterministic")))
                elif backend == kref and key == rkey:
                    c = compare_array(arrays[key], k_arrays[rkey], precision)  # finiteness of the reference
                    c.reason = c.reason or f"reference ({kref})"
                    out.append(_record(backend, name, kind.name, output, c, is_reference=True))
                else:
                    out.append(_record(backend, name, kind.name, output,
                                       compare_array(arrays[key], k_arrays[rkey], precision)))
    return out


def summarize(records: list[dict]) -> list[dict]:
    """Aggregate per (backend, label): number of cases, max abs / max rel per precision, pass/fail, reasons."""
    rows: dict = {}
    for r in records:
        row = rows.setdefault((r["backend"], r["label"]), {
            "backend": r["backend"], "output": r["label"], "kind": r["kind"], "cases": 0, "passed": True,
            "is_reference": bool(r.get("is_reference")), "errors": {}, "failures": []})
        row["cases"] += 1
        if r.get("precision") and r.get("max_abs") is not None and not r.get("is_reference"):
            e = row["errors"].setdefault(r["precision"], {"max_abs": 0.0, "max_rel": 0.0, "tol": r["tol"]})
            e["max_abs"] = max(e["max_abs"], r["max_abs"])
            e["max_rel"] = max(e["max_rel"], r["max_rel"])
        if not r["passed"]:
            row["passed"] = False
            row["failures"].append({"case": r["case"], "reason": r["reason"]})
    return list(rows.values())
