"""The training loop, written once for every autodiff backend.

One step ``t = 0, 1, ..., numb_steps - 1``::

    batch = train_sampler.next_batch()                         host, NumPy (neighbour lists cached per frame)
    (loss, metrics), grads = value_and_grad(L)(trainable)      backend, L = loss(forward(params, inputs), labels, lr(t))
    trainable, adam = adam_update(trainable, grads, adam, lr(t))   core (dpcore.train.optim)

Forces inside the loss come from the core's analytic backward (differentiable on every backend).
The backend supplies only ``value_and_grad`` and ``jit``: the whole step (gradient and Adam update)
is compiled with ``jax.jit`` / ``tf.function(jit_compile=True)``; torch and paddle run it eagerly.
``trainable`` is the sub-dict of network weights/biases/``idt`` whose ``trainable`` flag is set;
statistics (``davg``, ``dstd``, ``out_bias``, fparam/aparam normalisation) are fixed after
:func:`build_model_and_stats`.

Spin models (``model.spin``, SPEC 7.1) train the same way: the batch becomes the backbone's 2·nloc-atom
input (virtual atoms at ``r + vs * s``, neighbour list per batch), the forward is
:func:`dpcore.model.spin.forward` and the loss ``ener_spin``.

Host work per step (a cached neighbour list, pair data, conversion) is ~2-3 ms on the water example,
against ~150 ms of backend work, so pair data are not cached.

``lcurve.out`` (SPEC 12) gets a line at steps 1, disp_freq, 2 disp_freq, ...: training metrics of
that step's batch (before the update) and validation metrics (after it, atom-weighted average over
``numb_btch`` batches, SPEC 10.3).  Checkpoints (:mod:`dpcore.train.checkpoint`) every ``save_freq`` steps
and at the end hold everything needed to continue exactly, on any backend.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import lcurve
from ..by_type import blocks_for
from .checkpoint import load_checkpoint, model_from_checkpoint, write_checkpoint
from .optim import adam_init, adam_update, clip_by_global_norm
from ..pairs import pair_inputs

log = logging.getLogger("dpcore.train")

__all__ = ["train", "Trainer", "build_model_and_stats", "make_step", "make_eval", "trainable_mask", "split_params",
           "merge_params", "batch_inputs", "spin_batch_inputs", "spin_stat_samples", "resolve_sel", "TRAIN_BACKENDS"]

TRAIN_BACKENDS = ("torch", "jax", "tensorflow", "paddle")
# training keys dpcore accepts but does not implement: (default, error if changed?)
_UNSUPPORTED = {"enable_ema": (False, True), "acc_freq": (1, True), "mixed_precision": (None, True),
                "change_bias_after_training": (False, True), "zero_stage": (0, True),
                "tensorboard": (False, False), "profiling": (False, False), "enable_profiler": (False, False),
                "enable_compile": (False, False), "enable_tf32": (False, False),
                "ckpt_keep_ratio": (None, False)}
# extra arguments of ``backend.jit`` for the training/validation steps, measured on the water example
# (192 atoms, float64, 2 CPU cores): TensorFlow's tf.function with XLA (jit_compile) 0.17 s/step against
# 0.29 s in plain graph mode; JAX's jax.jit needs none; torch and paddle run eagerly (identity jit; torch
# compiles when DPCORE_TORCH_COMPILE=1, see backends/torch.py).
JIT_OPTIONS = {"tensorflow": {"jit_compile": True}}
# the training step's parameters and Adam state are replaced by its outputs: let XLA reuse their buffers
STEP_JIT_OPTIONS = {"jax": {"donate_argnums": (0, 1)}}
_LABEL_KEYS = ("energy", "force", "virial", "atom_ener", "atom_pref", "atom_ener_coeff", "drdq", "force_mag")


# ------------------------------------------------------------------------------------------ model set-up
def resolve_sel(cfg: dict, systems) -> dict:
    """Copy of ``cfg`` with ``model.descriptor.sel: "auto[:f]"`` replaced by per-type counts from the
    training data (``4 * ceil(int(max_nbor * f) / 4)``, SPEC 11.2)."""
    from ..stat.descriptor import auto_sel, data_neighbor_stat, parse_auto_sel

    d = cfg["model"]["descriptor"]
    factor = parse_auto_sel(d["sel"])
    if factor is None:
        return cfg
    cfg = copy.deepcopy(cfg)
    ntypes = len(cfg["model"]["type_map"])
    min_dist, max_nbor = data_neighbor_stat(systems, d["rcut"], ntypes)
    cfg["model"]["descriptor"]["sel"] = auto_sel(max_nbor, factor)
    log.info("sel %r from the training data: max neighbours %s within rcut %g -> sel %s (min pair distance %.4f)",
             d["sel"], max_nbor.tolist(), d["rcut"], cfg["model"]["descriptor"]["sel"], min_dist)
    return cfg


def nlist_maker(model_cfg: dict):
    """``make_nlist(coord, atype, box)`` for the data's neighbour-list cache (model rcut, sel, exclusions)."""
    from ..nlist import build_neighbor_list

    d = model_cfg["descriptor"]
    return functools.partial(build_neighbor_list, rcut=d["rcut"], sel=list(d["sel"]),
                             pair_exclude_types=model_cfg.get("pair_exclude_types", ()))


def _check_same_structure(params: dict, reference: dict, where: str, path: str = "") -> None:
    if isinstance(reference, dict):
        if not isinstance(params, dict) or set(params) != set(reference):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{where}: parameters at {path or '/'} have keys {got}, "
                             f"the input's model has {sorted(reference)}")
        for k in reference:
            _check_same_structure(params[k], reference[k], where, f"{path}/{k}")
    elif np.shape(params) != np.shape(reference):
        raise ValueError(f"{where}: parameter {path} has shape {np.shape(params)}, the input's model needs "
                         f"{np.shape(reference)} (different sel/neuron/type_map?)")


def build_model_and_stats(cfg: dict, train_sampler, *, init_params: dict | None = None):
    """The model to train: fresh parameters (seeded by ``training.seed``) with data statistics, or
    ``init_params`` (``--init-model``: parameters and statistics kept).

    Statistics on ``train_sampler.stat_batches(model.data_stat_nbatch)`` (SPEC 2.4, 5.3, 5.4):
    descriptor ``davg``/``dstd`` (cast to the descriptor precision; read from / stored in
    ``training.stat_file`` when given), fparam/aparam average and inverse std, and the energy
    ``out_bias`` (least squares on per-type atom counts).  A spin model's descriptor statistics and
    bias are those of its 2n-type backbone on the frames with virtual atoms (:func:`spin_stat_samples`).
    """
    from ..stat.labels import energy_bias, fparam_aparam_stats
    from ..model.energy_model import model_from_config
    from ..stat.descriptor import descriptor_stats

    model = model_from_config(cfg["model"], seed=cfg["training"].get("seed"))
    if init_params is not None:
        _check_same_structure(init_params, model.params, "init-model")
        model.set_params(copy.deepcopy(init_params))
        return model
    mcfg, params = model.config, model.params  # the backbone's for a spin model
    t0 = time.perf_counter()
    samples = train_sampler.stat_batches(mcfg["data_stat_nbatch"])
    backbone_samples = spin_stat_samples(model, samples) if _is_spin(model) else samples
    davg, dstd = descriptor_stats(mcfg, backbone_samples, stat_file=cfg["training"].get("stat_file"))
    ddt = params["descriptor"]["davg"].dtype
    params["descriptor"]["davg"], params["descriptor"]["dstd"] = davg.astype(ddt), dstd.astype(ddt)
    fit = mcfg["fitting_net"]
    fstats = fparam_aparam_stats(samples, fit["numb_fparam"], fit["numb_aparam"], mcfg["data_stat_protect"],
                                 fit.get("default_fparam"))
    for k, v in fstats.items():
        params["fitting"][k] = v.astype(params["fitting"][k].dtype)
    ntypes = len(mcfg["type_map"])
    if any(s.get("find_energy", 0.0) > 0 or s.get("find_atom_ener", 0.0) > 0 for s in samples):
        bias = energy_bias(backbone_samples, ntypes, mcfg.get("atom_exclude_types", ()), mcfg.get("preset_out_bias"))
        params["out_bias"] = bias["out_bias"].reshape(ntypes)
        log.info("energy bias per type %s eV (fit residual %.3g eV/atom)", np.round(params["out_bias"], 6).tolist(),
                 float(bias["rmse_per_atom"]))
    else:
        log.warning("no energy labels in the statistics frames: out_bias left at 0")
    log.info("statistics from %d frames in %.2f s", sum(s["coord"].shape[0] for s in samples), time.perf_counter() - t0)
    model.set_params(params)
    return model


def _is_spin(model) -> bool:
    return getattr(model, "model_type", "standard") == "spin_ener"


def spin_stat_samples(model, samples: list) -> list:
    """Statistics frames of a spin model as its backbone sees them (DeePMD-kit's ``spin_sampled_func``):
    ``coord' = [r | r + vs * s]``, ``atype' = [t | t + n]``, ``natoms' = [2 nloc, 2 nloc, counts, counts]``
    (the virtual types are excluded atoms of the backbone, so the energy bias ignores their columns)."""
    n, vsm = model.ntypes, model.virtual_scale_mask
    out = []
    for s in samples:
        atype, coord, spin = s["atype"], s["coord"], s["spin"]
        vs = np.where(atype >= 0, vsm[np.where(atype >= 0, atype, 0)], 0.0)
        natoms = np.asarray(s["natoms"])
        out.append({**s, "coord": np.concatenate([coord, coord + vs[..., None] * spin], axis=1),
                    "atype": np.concatenate([atype, np.where(atype >= 0, atype + n, -1)], axis=1),
                    "natoms": np.concatenate([2 * natoms[:, :2], natoms[:, 2:], natoms[:, 2:]], axis=1)})
    return out


def trainable_mask(model_cfg: dict, params: dict) -> dict:
    """Tree of bools over ``params``: True for network weights/biases/idt whose ``trainable`` flag is set.

    ``descriptor.trainable`` (bool) covers every embedding net; ``fitting_net.trainable`` is a bool or
    one bool per fitting layer (``len(neuron) + 1``).  Statistics and biases from data are never trained.
    """
    dtr = bool(model_cfg["descriptor"].get("trainable", True))
    ftr = model_cfg["fitting_net"].get("trainable", True)
    nlayers = len(model_cfg["fitting_net"]["neuron"]) + 1
    if isinstance(ftr, bool):
        ftr = [ftr] * nlayers
    if len(ftr) != nlayers:
        raise ValueError(f"model/fitting_net/trainable: {len(ftr)} flags; expected one per layer ({nlayers})")

    def mark(tree, value):
        return {k: mark(v, value) for k, v in tree.items()} if isinstance(tree, dict) else value

    mask = mark(params, False)
    mask["descriptor"]["embedding"] = mark(params["descriptor"]["embedding"], dtr)
    for t, net in params["fitting"]["nets"].items():
        for i in net:
            mask["fitting"]["nets"][t][i] = mark(net[i], bool(ftr[int(i)]))
    return mask


def split_params(params: dict, mask: dict) -> tuple[dict, dict]:
    """``(trainable, frozen)`` sub-dicts of ``params`` (empty branches dropped)."""
    tr, fr = {}, {}
    for k, v in params.items():
        if isinstance(v, dict):
            a, b = split_params(v, mask[k])
            if a:
                tr[k] = a
            if b or not a:
                fr[k] = b
        elif mask[k]:
            tr[k] = v
        else:
            fr[k] = v
    return tr, fr


def merge_params(trainable: dict, frozen: dict) -> dict:
    """Inverse of :func:`split_params`."""
    out = dict(frozen)
    for k, v in trainable.items():
        out[k] = merge_params(v, frozen.get(k, {})) if isinstance(v, dict) else v
    return out


# ------------------------------------------------------------------------------------------ batches
def batch_inputs(model_cfg: dict, batch: dict) -> tuple[dict, dict, tuple | None]:
    """Model inputs, labels and type blocks of a sampled batch (mirrors :func:`dpcore.infer.inputs.prepare`).

    Returns ``inputs`` (NumPy; pair data of :func:`dpcore.pairs.pair_inputs`, ``coord``, ``box``
    (nf, 3, 3), ``fparam``/``aparam``), ``labels`` (label arrays and ``find_*`` floats) and ``blocks``
    (per-type atom ranges: systems are type-sorted on load).
    """
    d, f = model_cfg["descriptor"], model_cfg["fitting_net"]
    ntypes = len(model_cfg["type_map"])
    atype = batch["atype"]
    nl = SimpleNamespace(nlist=batch["nlist"], mapping=batch["mapping"], shift=batch["shift"])
    inputs = pair_inputs(nl, atype, ntypes, d.get("exclude_types", ()), model_cfg.get("atom_exclude_types", ()))
    inputs["coord"] = batch["coord"]
    inputs["box"] = None if batch.get("box") is None else np.asarray(batch["box"]).reshape(-1, 3, 3)
    if f["numb_fparam"] > 0 and batch.get("find_fparam", 0.0) > 0:
        inputs["fparam"] = batch["fparam"]
    if f["numb_aparam"] > 0:
        inputs["aparam"] = batch["aparam"]
    labels = {k: batch[k] for k in _LABEL_KEYS if k in batch}
    labels.update({f"find_{k}": float(batch[f"find_{k}"]) for k in _LABEL_KEYS if f"find_{k}" in batch})
    labels["natoms"] = batch["natoms"]
    blocks = blocks_for(atype[0]) if np.all(atype == atype[:1]) else None
    return inputs, labels, blocks


def spin_batch_inputs(model, batch: dict) -> tuple[dict, dict, tuple | None]:
    """:func:`batch_inputs` of a spin model: the backbone's 2·nloc-atom inputs of
    :func:`dpcore.model.spin_model.prepare` (built per batch: the virtual atoms move with the spins)."""
    from ..model.spin_model import prepare

    f = model.config["fitting_net"]
    fparam = batch["fparam"] if f["numb_fparam"] > 0 and batch.get("find_fparam", 0.0) > 0 else None
    aparam = batch["aparam"] if f["numb_aparam"] > 0 else None
    inputs, blocks, perm = prepare(model, batch["coord"], batch["atype"], batch["spin"], batch.get("box"),
                                   fparam, aparam)
    if perm is not None and np.any(perm != np.arange(perm.size)):
        raise ValueError("spin batch: atoms are not sorted by type (data systems are sorted on load)")
    labels = {k: batch[k] for k in _LABEL_KEYS if k in batch}
    labels.update({f"find_{k}": float(batch[f"find_{k}"]) for k in _LABEL_KEYS if f"find_{k}" in batch})
    labels["natoms"] = batch["natoms"]
    return inputs, labels, blocks


def _split_labels(labels: dict) -> tuple[dict, tuple]:
    """Array labels (traced) and the ``find_*`` flags (static: one compiled step per combination)."""
    arrays = {k: v for k, v in labels.items() if not k.startswith("find_")}
    flags = tuple(sorted((k, float(v)) for k, v in labels.items() if k.startswith("find_")))
    return arrays, flags


# ------------------------------------------------------------------------------------------ step functions
def make_step(backend, model_cfg: dict, loss, blocks, flags: tuple, opt_cfg: dict, gradient_max_norm=None,
              forward=None):
    """``step(trainable, adam_state, frozen, inputs, labels, lr) -> (trainable, adam_state, loss, metrics)``.

    Gradient of ``loss(energy.forward(cfg, trainable + frozen, inputs, blocks), labels, lr)`` with
    respect to ``trainable`` (analytic forces inside), optional global-norm clipping, then Adam;
    compiled with ``backend.jit`` (``blocks`` and the ``find_*`` ``flags`` are static).  ``forward``:
    the model function (default :func:`dpcore.model.energy.forward`; spin: :func:`dpcore.model.spin.forward`).
    """
    from ..model import energy

    forward = energy.forward if forward is None else forward

    find = dict(flags)
    b1, b2, wd = opt_cfg.get("adam_beta1", 0.9), opt_cfg.get("adam_beta2", 0.999), opt_cfg.get("weight_decay", 0.0)

    def objective(trainable, frozen, inputs, labels, lr):
        out = forward(model_cfg, merge_params(trainable, frozen), inputs, blocks)
        return loss(out, {**labels, **find}, lr)

    grad_fn = backend.value_and_grad(objective, argnums=0, has_aux=True)

    def step(trainable, adam_state, frozen, inputs, labels, lr):
        (value, metrics), grads = grad_fn(trainable, frozen, inputs, labels, lr)
        if gradient_max_norm:
            grads = clip_by_global_norm(grads, gradient_max_norm)
        trainable, adam_state = adam_update(trainable, grads, adam_state, lr, b1, b2, 1e-8, wd)
        return trainable, adam_state, value, metrics

    return backend.jit(step, **JIT_OPTIONS.get(backend.name, {}), **STEP_JIT_OPTIONS.get(backend.name, {}))


def make_eval(backend, model_cfg: dict, loss, blocks, flags: tuple, forward=None):
    """``evaluate(params, inputs, labels, lr) -> (loss, metrics)`` without gradients (validation)."""
    from ..model import energy

    forward = energy.forward if forward is None else forward

    find = dict(flags)

    def evaluate(params, inputs, labels, lr):
        out = forward(model_cfg, params, inputs, blocks)
        return loss(out, {**labels, **find}, lr)

    return backend.jit(evaluate, **JIT_OPTIONS.get(backend.name, {}))


class _StepCache:
    """Compiled step / eval functions keyed by (type blocks, find flags), shared by every :class:`Trainer`
    of the process with the same ``context`` (backend, device, model/loss/optimizer settings, kind), so a
    restart or a second run in one process does not compile again (jax/tf: tens of seconds).  Array
    shapes are the framework's business (a new nf retraces under jax/tf)."""

    _shared: OrderedDict = OrderedDict()
    MAX = 256  # one entry per (system composition, label set); eviction would recompile every time

    def __init__(self, factory, context: tuple):
        self.factory, self.context = factory, context

    def get(self, blocks, flags):
        key = (self.context, blocks, flags)
        fn = self._shared.pop(key, None)
        if fn is None:
            fn = self.factory(blocks, flags)
        self._shared[key] = fn
        while len(self._shared) > self.MAX:
            self._shared.popitem(last=False)
        return fn


def _context(backend, *parts) -> tuple:
    return (backend.name, str(backend.device), id(backend)) + tuple(
        json.dumps(p, sort_keys=True, default=repr) for p in parts)


# ------------------------------------------------------------------------------------------ the loop
def _check_training_section(tr: dict) -> None:
    for key, (default, fatal) in _UNSUPPORTED.items():
        value = tr.get(key, default)
        if value != default:
            msg = f"training/{key} = {value!r} is not supported by dpcore train"
            if fatal:
                raise NotImplementedError(msg)
            log.warning("%s; ignored", msg)


def _num_steps(tr: dict, train_sampler) -> int:
    if tr.get("numb_steps") is not None:
        return int(tr["numb_steps"])
    return max(1, math.ceil(float(tr["numb_epoch"]) * len(train_sampler)))


def _versions(backend) -> dict:
    from .. import __version__

    return {"dpcore": __version__, "numpy": np.__version__, **{k: v for k, v in backend.settings.items()
                                                               if k.endswith("version")}}


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(cfg: dict, backend, *, restart=None, init_model=None, workdir=".", numb_steps: int | None = None,
          normalized_output=None) -> dict:
    """Train the model of a (normalised) input dict on ``backend`` (name or adapter object).

    restart: checkpoint to continue exactly (file, folder or prefix; see :mod:`dpcore.train.checkpoint`);
    init_model: ``.dp``/``.yaml`` model file or checkpoint whose parameters (and statistics) start
    the run; workdir: folder for ``disp_file`` and checkpoints (``save_dir`` is relative to it);
    numb_steps: override ``training.numb_steps`` (tests, benchmarks); normalized_output: write the
    normalised input (``sel`` resolved) to this path (never over the input file it was read from).
    Returns a summary dict (model, last metrics, timings, checkpoint path, backend name).
    """
    return Trainer(cfg, backend, restart=restart, init_model=init_model, workdir=workdir, numb_steps=numb_steps,
                   normalized_output=normalized_output).run()


class Trainer:
    """Set-up (:meth:`__init__`) and loop (:meth:`run`) of :func:`train`; see the module docstring."""

    def __init__(self, cfg, backend, *, restart=None, init_model=None, workdir=".", numb_steps=None,
                 normalized_output=None):
        from ..backends import canonical_name, get_backend
        from ..config import normalize_config
        from ..data import NeighborListCache, samplers_from_config

        if restart is not None and init_model is not None:
            raise ValueError("--restart and --init-model are mutually exclusive (a restart already continues "
                             "from its own parameters)")
        if isinstance(backend, str):
            name = canonical_name(backend)
            if name not in TRAIN_BACKENDS:
                raise ValueError(f"backend {name!r} has no automatic differentiation and cannot train; "
                                 f"use one of {', '.join(TRAIN_BACKENDS)}")
        source = getattr(cfg, "source_path", None)
        cfg = normalize_config(cfg)
        _check_training_section(cfg["training"])
        self.backend = get_backend(name) if isinstance(backend, str) else backend  # after the input checks
        self.workdir = Path(workdir)
        state = load_checkpoint(restart) if restart is not None else None

        self.train_s, self.valid_s = samplers_from_config(cfg)
        init_params = None
        if state is not None:
            if state["config"]["model"] != cfg["model"] and cfg["model"]["descriptor"]["sel"] != "auto":
                log.warning("the model section of the input differs from the checkpoint's; continuing with the "
                            "checkpoint's model")
            cfg["model"] = copy.deepcopy(state["config"]["model"])
        else:
            if init_model is not None:
                init = _load_init_model(init_model)
                init_params = init.params
                if isinstance(cfg["model"]["descriptor"]["sel"], str):
                    cfg["model"]["descriptor"]["sel"] = list(init.sel)
            cfg = resolve_sel(cfg, self.train_s.systems)
        self.cfg = cfg
        if normalized_output is not None:
            from ..config import write_normalized

            write_normalized(cfg, normalized_output, source=source)
        if cfg["model"].get("spin") is None:  # spin batches build their 2·nloc-atom lists per batch
            cache = NeighborListCache(nlist_maker(cfg["model"]))
            for s in (self.train_s, self.valid_s):
                if s is not None:
                    s.nlist_cache = cache
        if state is not None:
            from .checkpoint import model_from_state

            self.model = model_from_state(cfg["model"], state["params"])
            self.train_s.set_state(state["sampler"]["train"])
            if self.valid_s is not None and state["sampler"].get("valid") is not None:
                self.valid_s.set_state(state["sampler"]["valid"])
            self.start_step = int(state["step"])
            log.info("restart from %s at step %d (written by backend %s)", state["path"], self.start_step,
                     state["backend"])
        else:
            self.model = build_model_and_stats(cfg, self.train_s, init_params=init_params)
            self.start_step = 0
        self._setup_optimisation(numb_steps, state)

    def _setup_optimisation(self, numb_steps, state) -> None:
        from ..loss import make_loss
        from .lr import make_lr

        cfg, be, tr = self.cfg, self.backend, self.cfg["training"]
        mcfg = self.model.config
        self.num_steps = int(numb_steps) if numb_steps is not None else _num_steps(tr, self.train_s)
        self.loss = make_loss(cfg["loss"], backend=be.name, start_lr=cfg["learning_rate"]["start_lr"])
        self.lr = make_lr(cfg["learning_rate"], self.num_steps)
        self.keys = list(self.loss.display_keys)
        trainable, self.frozen_np = split_params(self.model.params, trainable_mask(mcfg, self.model.params))
        self.n_trainable = sum(int(np.size(x)) for x in _leaves(trainable))
        if state is not None:
            opt = state["optimizer"]
            adam = {"step": int(opt["step"]), "m": opt["m"], "v": opt["v"]}
        else:
            adam = adam_init(trainable)
        self.trainable, self.frozen = be.tree_asarray(trainable), be.tree_asarray(self.frozen_np)
        self.adam = {"step": adam["step"], "m": be.tree_asarray(adam["m"]), "v": be.tree_asarray(adam["v"])}
        # compiled steps get lr and the Adam step as 0-d arrays (a Python number is a trace-time constant)
        self.jitted = bool(be.capabilities.get("jit", False) or getattr(be, "compile", False))
        if _is_spin(self.model):
            from ..model.spin import forward
        else:
            from ..model.energy import forward
        ctx = _context(be, mcfg, self.loss.config, self.loss.start_lr, forward.__module__)
        self.steps = _StepCache(lambda blocks, flags: make_step(be, mcfg, self.loss, blocks, flags, cfg["optimizer"],
                                                                tr.get("gradient_max_norm"), forward),
                                ("step", json.dumps(cfg["optimizer"], sort_keys=True),
                                 tr.get("gradient_max_norm")) + ctx)
        self.evals = _StepCache(lambda blocks, flags: make_eval(be, mcfg, self.loss, blocks, flags, forward),
                                ("eval",) + ctx)

    # -- pieces of one step ------------------------------------------------------------------------------
    def _scalar(self, x, dtype):
        return self.backend.asarray(np.asarray(x, dtype=dtype)) if self.jitted else x

    def _to_backend(self, batch):
        if _is_spin(self.model):
            inputs, labels, blocks = spin_batch_inputs(self.model, batch)
        else:
            inputs, labels, blocks = batch_inputs(self.model.config, batch)
        arrays, flags = _split_labels(labels)
        return self.backend.tree_asarray(inputs), self.backend.tree_asarray(arrays), blocks, flags

    def _metrics(self, metrics) -> dict:
        return {k: float(self.backend.to_numpy(metrics[k])) for k in self.keys}

    def step(self, t: int) -> dict:
        """Train step ``t`` (0-based); returns the metrics (backend arrays) of its batch before the update."""
        lr = float(self.lr.value(t))
        inputs, labels, blocks, flags = self._to_backend(self.train_s.next_batch())
        adam = self.adam
        adam_in = {"step": self._scalar(adam["step"], np.int64), "m": adam["m"], "v": adam["v"]}
        self.trainable, out, _, metrics = self.steps.get(blocks, flags)(
            self.trainable, adam_in, self.frozen, inputs, labels, self._scalar(lr, np.float64))
        self.adam = {"step": adam["step"] + 1, "m": out["m"], "v": out["v"]}
        return metrics

    def validate(self, lr: float) -> dict | None:
        """Metrics on ``numb_btch`` validation batches, averaged with the batches' atom counts (SPEC 10.3)."""
        if self.valid_s is None:
            return None
        params = merge_params(self.trainable, self.frozen)
        total, weight = {}, 0
        for batch in self.valid_s.take(self.valid_s.numb_btch):
            inputs, labels, blocks, flags = self._to_backend(batch)
            _, m = self.evals.get(blocks, flags)(params, inputs, labels, self._scalar(lr, np.float64))
            natoms = int(batch["atype"].shape[-1])
            for k, v in self._metrics(m).items():
                total[k] = total.get(k, 0.0) + v * natoms
            weight += natoms
        return {k: v / weight for k, v in total.items()}

    def _wait(self) -> None:
        """Block until the last step's update is computed (one parameter array brought to the host)."""
        leaf = next(_leaves(self.trainable), None)
        if leaf is not None:
            self.backend.to_numpy(leaf)

    def params_numpy(self) -> dict:
        return merge_params(self.backend.tree_to_numpy(self.trainable), self.frozen_np)

    def save(self, step: int) -> Path:
        """Checkpoint after ``step`` completed steps (rotation and pointer file, see :mod:`dpcore.train.checkpoint`)."""
        tr, be = self.cfg["training"], self.backend
        prefix = Path(tr["save_ckpt"])  # may hold a folder: "ckpt/model.ckpt"
        state = {"params": self.params_numpy(),
                 "optimizer": {"type": "Adam", "step": int(self.adam["step"]), "m": be.tree_to_numpy(self.adam["m"]),
                               "v": be.tree_to_numpy(self.adam["v"])},
                 "step": int(step),
                 "sampler": {"train": self.train_s.get_state(),
                             "valid": None if self.valid_s is None else self.valid_s.get_state()},
                 "config": dict(self.cfg), "backend": be.name, "versions": _versions(be)}
        path = write_checkpoint(self.workdir / (tr.get("save_dir") or "") / prefix.parent, prefix.name, state,
                                tr["max_ckpt_keep"])
        log.info("saved checkpoint %s", path)
        return path

    def _open_lcurve(self):
        """lcurve.out: new with its header, or (restart) cut after the checkpoint's step and appended to."""
        tr = self.cfg["training"]
        if not tr["disp_training"]:
            return None
        path = self.workdir / tr["disp_file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        restart = self.start_step > 0
        if restart and path.exists():
            dropped = lcurve.truncate_after(path, self.start_step)
            if dropped:
                log.info("%s: removed %d lines after step %d (written after the checkpoint)", path, dropped,
                         self.start_step)
        fresh = not restart or not path.exists() or path.stat().st_size == 0
        fout = open(path, "a" if restart else "w", buffering=1)
        if fresh:
            fout.write(lcurve.header(self.keys, validation=self.valid_s is not None))
        return fout

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> dict:
        tr = self.cfg["training"]
        disp_freq, save_freq, num_steps = int(tr["disp_freq"]), int(tr["save_freq"]), self.num_steps
        log.info("training %d steps (from step %d) on backend %s; %d trainable parameters", num_steps,
                 self.start_step, self.backend.name, self.n_trainable)
        if self.start_step >= num_steps:
            log.warning("the checkpoint is at step %d and training/numb_steps is %d: nothing to train "
                        "(raise numb_steps to continue)", self.start_step, num_steps)
        fout = self._open_lcurve()
        t_start = time.perf_counter()
        t_first, t_window, n_window, timed_steps, timed_time = None, t_start, 0, 0, 0.0
        trn = val = ckpt = None
        running, n_running = {}, 0
        try:
            for t in range(self.start_step, num_steps):
                metrics = self.step(t)
                n_window += 1
                if tr["disp_avg"]:
                    for k, v in self._metrics(metrics).items():
                        running[k] = running.get(k, 0.0) + v
                    n_running += 1
                display = fout is not None and ((t + 1) % disp_freq == 0 or t == 0)
                if display:
                    lr = float(self.lr.value(t))
                    trn = {k: v / n_running for k, v in running.items()} if tr["disp_avg"] else self._metrics(metrics)
                    running, n_running = {}, 0
                    val = self.validate(lr)
                    fout.write(lcurve.line(t + 1, lr, trn, val, self.keys))
                if t_first is None or display or t + 1 == num_steps:
                    self._wait()  # asynchronous backends (jax): time finished work, not dispatch
                now = time.perf_counter()
                if t_first is None:  # the first step pays for tracing / compilation
                    t_first, t_window, n_window = now - t_start, now, 0
                elif display or t + 1 == num_steps:
                    per = (now - t_window) / max(n_window, 1)
                    timed_steps, timed_time = timed_steps + n_window, timed_time + (now - t_window)
                    t_window, n_window = now, 0
                    if display:
                        _log_display(t + 1, num_steps, trn, val, float(self.lr.value(t)), per)
                if (t + 1) % save_freq == 0 or t + 1 == num_steps:
                    ckpt = self.save(t + 1)
        finally:
            if fout is not None:
                fout.close()
        wall = time.perf_counter() - t_start
        per_step = timed_time / timed_steps if timed_steps else float("nan")
        if tr["time_training"] and num_steps > self.start_step:
            log.info("finished %d steps in %s; average %.4f s/step (excluding the first step, %.2f s)",
                     num_steps - self.start_step, _fmt_time(wall), per_step, t_first or 0.0)
        from .checkpoint import model_from_state

        model = model_from_state(self.cfg["model"], self.params_numpy())
        model.model_def_script = self.model.model_def_script
        return {"model": model, "train": trn, "valid": val, "s_per_step": per_step, "first_step_s": t_first,
                "wall_s": wall, "checkpoint": ckpt, "backend": self.backend.name, "num_steps": num_steps,
                "config": self.cfg, "settings": dict(self.backend.settings)}


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def _log_display(step, num_steps, trn, val, lr, per_step):
    parts = [f"step {step}/{num_steps}"]
    if trn:
        parts.append("trn " + " ".join(f"{k} {v:.2e}" for k, v in trn.items()))
    if val:
        parts.append("val " + " ".join(f"{k} {v:.2e}" for k, v in val.items()))
    eta = per_step * (num_steps - step)
    parts.append(f"lr {lr:.1e}")
    parts.append(f"{per_step:.4f} s/step, ETA {_fmt_time(eta)}")
    log.info(" | ".join(parts))


def _load_init_model(path):
    """A model file (.dp/.yaml) or a dpcore checkpoint, for ``--init-model``."""
    from ..model.energy_model import load

    p = str(path)
    if not os.path.exists(p) and not os.path.exists(p + ".npz") and not os.path.isdir(os.path.dirname(p) or "."):
        raise FileNotFoundError(f"init-model {p!r} not found")
    if p.endswith((".dp", ".yaml", ".yml", ".h5", ".hdf5")):
        if not os.path.exists(p):
            raise FileNotFoundError(f"init-model {p!r} not found")
        return load(p)
    return model_from_checkpoint(p)
