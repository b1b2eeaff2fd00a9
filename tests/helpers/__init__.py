"""Shared test helpers: small model configs, random systems, dtype-keyed tolerances.

Topic helpers shared by several test modules live next to this file: ``helpers.loss`` and
``helpers.loss_reference`` (loss batches, the loop reference of the losses), ``helpers.train`` (tiny training
cases), ``helpers.spin`` (spin models and systems), ``helpers.data`` (deepmd/npy systems on disk),
``helpers.model_files`` (model-file envelopes), ``helpers.deepmd_kit`` (the DeePMD-kit venv) and
``helpers.isolation`` (one framework per process for tests/isolated/).  Test modules import helpers from here,
never from each other.
"""

from __future__ import annotations

import copy

import numpy as np

from dpcore.conformance.cases import BASE_MODEL
from dpcore.model.energy_model import EnergyModel
from dpcore.model.init import init_params

from dpcore.conformance.tolerances import FD_TOL, TOLERANCES as TOL  # the one table (never literals in tests)

# Gradient checks of the tests (not of the conformance table): parameter gradients of a loss
LOSS_GRAD_FD_TOL = 1e-7  # vs central differences of the loss (step 1e-4..1e-6: truncation ~h^2, round-off ~eps/h)
FORCE_MODE_GRAD_TOL = 1e-10  # analytic-force backward vs autodiff forces (create_graph): same math, other rounding

# the normalised model section of the conformance catalogue, with room for every neighbour of the test systems
BASE = copy.deepcopy(BASE_MODEL)
BASE["descriptor"]["sel"] = [40, 40]


def make_config(descriptor=None, fitting=None, **model):
    cfg = copy.deepcopy(BASE)
    cfg["descriptor"].update(descriptor or {})
    cfg["fitting_net"].update(fitting or {})
    cfg.update(model)
    return cfg


def make_model(seed=1, stats_seed=2, **kw) -> EnergyModel:
    """A model with random networks AND non-trivial davg/dstd/out_bias/fparam stats (so tests see them)."""
    cfg = make_config(**kw)
    params = init_params(cfg, seed)
    rng = np.random.default_rng(stats_seed)
    d = params["descriptor"]
    dt = d["davg"].dtype
    # per-type, per-slot statistics with the physical structure: davg = [avg_r, 0, 0, 0], dstd = [std_r, std_a x 3]
    nt, nnei, _ = d["davg"].shape
    davg = np.zeros((nt, nnei, 4))
    davg[..., 0] = rng.normal(0.3, 0.1, (nt, 1))
    dstd = np.repeat(rng.uniform(0.5, 1.5, (nt, 1, 2)), nnei, axis=1)[..., [0, 1, 1, 1]]
    d["davg"], d["dstd"] = davg.astype(dt), dstd.astype(dt)
    params["out_bias"] = rng.normal(-1.0, 0.5, params["out_bias"].shape)
    f = params["fitting"]
    for k in ("fparam", "aparam"):
        if f"{k}_avg" in f:
            f[f"{k}_avg"] = rng.normal(0, 1, f[f"{k}_avg"].shape).astype(f[f"{k}_avg"].dtype)
            f[f"{k}_inv_std"] = rng.uniform(0.5, 2, f[f"{k}_inv_std"].shape).astype(f[f"{k}_avg"].dtype)
    return EnergyModel(cfg, params)


def random_system(natoms=12, nframes=2, ntypes=2, box_len=5.0, triclinic=True, seed=0, min_dist=0.9):
    """Random positions with a minimum separation; box rows may be skewed. Returns coord (nf,n,3), atype (n,), box (nf,9)."""
    rng = np.random.default_rng(seed)
    boxes = []
    coords = []
    for _ in range(nframes):
        box = np.eye(3) * box_len
        if triclinic:
            box = box + rng.uniform(-0.25, 0.25, (3, 3)) * box_len * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
        frac = []
        while len(frac) < natoms:
            cand = rng.uniform(0, 1, 3)
            pos = cand @ box
            ok = True
            for f in frac:
                d = (cand - f) - np.round(cand - f)
                if np.linalg.norm(d @ box) < min_dist:
                    ok = False
                    break
            if ok:
                frac.append(cand)
        coords.append(np.array(frac) @ box)
        boxes.append(box.ravel())
    atype = np.arange(natoms) % ntypes
    rng.shuffle(atype)
    return np.array(coords), atype, np.array(boxes)


def rel_err(got, ref) -> float:
    """``max |got - ref| / max |ref|`` (0 for empty arrays): the error measure of the tolerance table."""
    got, ref = np.asarray(got), np.asarray(ref)
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300)) if ref.size else 0.0


def rel_err_nonfinite(got, ref) -> float:
    """:func:`rel_err` in float64 for outputs that may hold NaN or infinities: those must match exactly."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    finite = np.isfinite(ref) & np.isfinite(got)
    diff = np.where(finite, np.abs(np.where(finite, got, 0.0) - np.where(finite, ref, 0.0)), 0.0)
    diff[~finite & ~(got == ref) & ~(np.isnan(got) & np.isnan(ref))] = np.inf  # infinities must match exactly
    scale = np.max(np.abs(np.where(np.isfinite(ref), ref, 0.0)), initial=0.0)
    return float(np.max(diff)) / max(scale, np.finfo(np.float64).tiny)


def dtype_name(xp, dtype) -> str:
    """The standard name of a namespace's dtype object (xp.float64 -> "float64")."""
    from dpcore.backends.namespace_subset import DTYPES

    return next(n for n in DTYPES if getattr(xp, n) == dtype)


def random_array(rng, dtype: str, shape, positive: bool = False) -> np.ndarray:
    """Random values of a dtype name: booleans, small integers in [-5, 6) (or [1, 6)), normal floats (or |x| + 0.1)."""
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.startswith("int"):
        return np.asarray(rng.integers(1 if positive else -5, 6, shape), dtype=dtype)
    x = rng.normal(size=shape)
    return np.asarray(np.abs(x) + 0.1 if positive else x, dtype=dtype)


def random_fparam_aparam(model, nf, nloc, seed=3):
    """Seeded fparam (nf, numb_fparam) and aparam (nf, nloc, numb_aparam) for a model, None where unused."""
    rng = np.random.default_rng(seed)
    f = model.config["fitting_net"]
    fparam = rng.normal(size=(nf, f["numb_fparam"])) if f["numb_fparam"] else None
    aparam = rng.normal(size=(nf, nloc, f["numb_aparam"])) if f["numb_aparam"] else None
    return fparam, aparam


def load_example_script(example: str):
    """The ``make_data.py`` module of ``examples/<example>/`` (examples are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / example / "make_data.py"
    spec = importlib.util.spec_from_file_location(f"{example}_make_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
