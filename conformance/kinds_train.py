"""Training output kinds: ``loss`` / ``loss_default_pf`` (loss values over the option grid) and ``train_step``
(one Adam step).  Opt-in: they run only on the cases that list them (``case["kinds"]``, see cases.py).

Labels are the NumPy model outputs of the case plus seeded noise (the same arrays in every process);
``model_out`` is the backend's own analytic model output, so the loss runs on that backend's arrays.
Each loss output is one option combination ``<mse|mae>-<ext|int>-rf<None|0.5>-<nopf|pf|dpf>-<full|miss>``
saved as the vector ``[loss, metric values in sorted key order]`` (a NaN metric, i.e. a missing label, as -1); "miss" marks virial and atom_pref
missing (``find_*`` = 0, arrays filled with the loader's defaults).

``train_step`` has no NumPy reference (NumPy has no autodiff): its outputs are compared with the TORCH
backend's (``reference_backend="torch"``); from the same parameters, batch and a non-trivial Adam state
(step 5, random moments) it saves the loss, the updated trainable parameters, the update (new - old) and the
new moments m and v, each flattened over every leaf in sorted key order.
"""

from __future__ import annotations

import itertools

import numpy as np

from .registry import CaseContext, model_outputs, output_kind

START_LR, LR = 1e-3, 3.7e-4
BASE_LOSS = {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0, "limit_pref_f": 1.0,
             "start_pref_v": 0.5, "limit_pref_v": 1.0}
PF_MODES = {"nopf": {}, "pf": {"start_pref_pf": 2.0, "limit_pref_pf": 0.5},
            "dpf": {"start_pref_pf": 2.0, "limit_pref_pf": 0.5, "use_default_pf": True}}
MISSING = ("virial", "atom_pref")
FILL = {"virial": 0.0, "atom_pref": 1.0}
NAN_SENTINEL = -1.0  # metrics of a missing label are NaN; saved as -1 (metrics are >= 0, the reference must be finite)


def _grid(pf_modes):
    return [(lf, intensive, rf, pf, miss) for lf, intensive, rf, pf, miss in itertools.product(
        ("mse", "mae"), ("ext", "int"), (None, 0.5), pf_modes, ("full", "miss"))]


def combo_name(c) -> str:
    lf, intensive, rf, pf, miss = c
    return f"{lf}-{intensive}-rf{rf}-{pf}-{miss}"


def combo_config(c) -> dict:
    lf, intensive, rf, pf, _ = c
    return {**BASE_LOSS, **PF_MODES[pf], "loss_func": lf, "intensive_ener_virial": intensive == "int", "relative_f": rf}


GRID = _grid(("nopf", "pf"))
GRID_DPF = _grid(("dpf",))


def reference_outputs(ctx: CaseContext) -> dict:
    """NumPy model outputs of the case (host, float64), computed once per case."""
    if "np_out" not in ctx.extra:
        from dpcore.backends import get_backend

        from .cases import build_system, prepare_case

        inputs, blocks, _ = prepare_case(ctx.model, build_system(ctx.case["system"], ctx.model))
        out = get_backend("numpy").model_forward(ctx.model.config, ctx.model.params, inputs, blocks,
                                                 atomic_virial=False, force_mode="analytic")
        ctx.extra["np_out"] = {k: np.asarray(out[k], np.float64) for k in ("energy", "force", "virial")}
    return ctx.extra["np_out"]


def make_labels(ctx: CaseContext, missing: bool, seed: int = 7) -> dict:
    """Labels = NumPy outputs + seeded noise; with ``missing`` virial and atom_pref get find_* = 0."""
    ref = reference_outputs(ctx)
    rng = np.random.default_rng(seed)
    nf, nloc = ref["force"].shape[:2]
    labels = {"energy": ref["energy"].reshape(nf, 1) + rng.normal(0, 0.5, (nf, 1)),
              "force": ref["force"] + rng.normal(0, 0.3, (nf, nloc, 3)) * rng.uniform(0.1, 2, (nf, nloc, 1)),
              "virial": ref["virial"].reshape(nf, 9) + rng.normal(0, 1.0, (nf, 9)),
              "atom_pref": rng.uniform(0.5, 2.0, (nf, nloc))}
    labels.update({f"find_{k}": 1.0 for k in list(labels)})
    if missing:
        for k in MISSING:
            labels[k] = np.full_like(labels[k], FILL[k])
            labels[f"find_{k}"] = 0.0
    return labels


def _loss_values(ctx: CaseContext, grid) -> dict:
    from dpcore.loss import make_loss

    be = ctx.backend
    out = model_outputs(ctx, "analytic")
    labels = {m: make_labels(ctx, m == "miss") for m in ("full", "miss")}
    labels_be = {m: {k: (v if k.startswith("find_") else be.asarray(v)) for k, v in lab.items()}
                 for m, lab in labels.items()}
    res = {}
    for c in grid:
        loss = make_loss(combo_config(c), backend=be.name, start_lr=START_LR)
        value, metrics = loss(out, labels_be[c[4]], LR)
        vals = [value] + [metrics[k] for k in sorted(metrics)]
        row = np.array([float(np.asarray(be.to_numpy(v))) for v in vals], dtype=np.float64)
        res[combo_name(c)] = np.where(np.isnan(row), NAN_SENTINEL, row)
    return res


@output_kind("loss", outputs=tuple(combo_name(c) for c in GRID), opt_in=True)
def loss(ctx: CaseContext) -> dict:
    """[loss, metrics...] of every option combination without use_default_pf (all backends)."""
    return _loss_values(ctx, GRID)


@output_kind("loss_default_pf", outputs=tuple(combo_name(c) for c in GRID_DPF), requires=("use_default_pf",),
             opt_in=True)
def loss_default_pf(ctx: CaseContext) -> dict:
    """The use_default_pf combinations, on the backends that accept the option (the contract covers the others)."""
    return _loss_values(ctx, GRID_DPF)


TRAIN_OUTPUTS = ("loss", "params", "update", "m", "v")


def _flat(tree) -> np.ndarray:
    if isinstance(tree, dict):
        parts = [_flat(tree[k]) for k in sorted(tree)]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(tree, dtype=np.float64).ravel()


def _tree_np(backend, tree):
    return {k: _tree_np(backend, v) for k, v in tree.items()} if isinstance(tree, dict) else \
        np.asarray(backend.to_numpy(tree))


@output_kind("train_step", outputs=TRAIN_OUTPUTS, requires=("autodiff",), reference_backend="torch", opt_in=True)
def train_step(ctx: CaseContext) -> dict:
    """One Adam step of the energy + force + virial loss (dpcore.train.step.make_step) from a fixed state."""
    from dpcore.loss import make_loss
    from dpcore.train.optim import tree_map
    from dpcore.train.batch import split_labels
    from dpcore.train.params import split_params, trainable_mask
    from dpcore.train.step import make_step

    be, cfg = ctx.backend, ctx.model.config
    trainable, frozen = split_params(ctx.model.params, trainable_mask(cfg, ctx.model.params))
    rng = np.random.default_rng(11)
    m = tree_map(lambda p: rng.normal(0, 1e-2, np.shape(p)).astype(np.asarray(p).dtype), trainable)
    v = tree_map(lambda p: rng.uniform(1e-5, 1e-4, np.shape(p)).astype(np.asarray(p).dtype), trainable)
    labels, flags = split_labels({k: x for k, x in make_labels(ctx, False).items() if "atom_pref" not in k})
    loss_fn = make_loss(BASE_LOSS, backend=be.name, start_lr=START_LR)
    step = make_step(be, cfg, loss_fn, ctx.blocks, flags, {})
    jitted = bool(be.capabilities.get("jit", False) or getattr(be, "compile", False))
    scalar = (lambda x, dt: be.asarray(np.asarray(x, dtype=dt))) if jitted else (lambda x, dt: x)
    adam = {"step": scalar(5, np.int64), "m": be.tree_asarray(m), "v": be.tree_asarray(v)}
    new, state, value, _ = step(be.tree_asarray(trainable), adam, be.tree_asarray(frozen), ctx.inputs,
                                be.tree_asarray(labels), scalar(LR, np.float64))
    new_np = _flat(_tree_np(be, new))
    return {"loss": np.asarray(float(np.asarray(be.to_numpy(value))), dtype=np.float64).reshape(1),
            "params": new_np, "update": new_np - _flat(trainable),
            "m": _flat(_tree_np(be, state["m"])), "v": _flat(_tree_np(be, state["v"]))}
