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

Data-parallel runs (:mod:`dpcore.train.distributed`, docs/distributed.md): N workers draw the same global
batch of N x batch_size frames and each evaluates its slice; worker processes sum their weighted gradients
and metrics before the one Adam update (:func:`~dpcore.train.step.make_grad`, ``make_update``), devices of one
process run the unchanged step on a sharded batch.  Rank 0 alone writes lcurve.out, checkpoints and the
normalised input.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np

from . import lcurve
from .batch import BatchShaper
from .buckets import buckets_for_run
from .checkpoint import load_checkpoint, write_checkpoint
from .distributed import lr_scale, open_world, plan_data_parallel
from ..descriptor import get_descriptor
from .mixed_precision import training_model_config, use_output_precision
from .optim import adam_init
from .progress import fmt_time, log_display
from .params import leaves, merge_params, split_params, trainable_mask
from .setup import (build_model_and_stats, check_training_section, is_spin, load_init_model, nlist_maker,
                    resolve_sel, steps_from_config)
from .shards import WorkerSteps
from .step import StepCache, make_eval, make_grad, make_step, make_update, step_context
from .tiers import TieredStep, compiles_quick, quick_plan, start_background_compiles, stop_background_compiles

log = logging.getLogger("dpcore.train")

__all__ = ["train", "Trainer"]


def _versions(backend) -> dict:
    from .. import __version__

    return {"dpcore": __version__, "numpy": np.__version__, **{k: v for k, v in backend.settings.items()
                                                               if k.endswith("version")}}


def train(cfg: dict, backend, *, restart=None, init_model=None, workdir=".", numb_steps: int | None = None,
          normalized_output=None, local_devices: int | None = None) -> dict:
    """Train the model of a (normalised) input dict on ``backend`` (name or adapter object).

    restart: checkpoint to continue exactly (file, folder or prefix; see :mod:`dpcore.train.checkpoint`);
    init_model: ``.dp``/``.yaml`` model file or checkpoint whose parameters (and statistics) start
    the run; workdir: folder for ``disp_file`` and checkpoints (``save_dir`` is relative to it);
    numb_steps: override ``training.numb_steps`` (tests, benchmarks); normalized_output: write the
    normalised input (``sel`` resolved) to this path (never over the input file it was read from);
    local_devices: data-parallel over this many devices of the process (docs/distributed.md; under a
    multi-process launcher such as torchrun the processes are the workers).
    Returns a summary dict (model, last metrics, timings, checkpoint path, backend name, rank, workers).
    """
    return Trainer(cfg, backend, restart=restart, init_model=init_model, workdir=workdir, numb_steps=numb_steps,
                   normalized_output=normalized_output, local_devices=local_devices).run()


class Trainer(WorkerSteps):
    """Set-up (:meth:`__init__`) and loop (:meth:`run`) of :func:`train`; see the module docstring."""

    def __init__(self, cfg, backend, *, restart=None, init_model=None, workdir=".", numb_steps=None,
                 normalized_output=None, local_devices=None):
        from ..backends import canonical_name, get_backend, info, training_backends
        from ..config import normalize_config
        from ..data import NeighborListCache, samplers_from_config

        if restart is not None and init_model is not None:
            raise ValueError("--restart and --init-model are mutually exclusive (a restart already continues "
                             "from its own parameters)")
        if isinstance(backend, str):
            name = canonical_name(backend)
            if not info(name).can_train:
                raise ValueError(f"backend {name!r} has no automatic differentiation and cannot train; "
                                 f"use one of {', '.join(training_backends())}")
        source = getattr(cfg, "source_path", None)
        cfg = normalize_config(cfg)
        check_training_section(cfg["training"])
        use_output_precision(cfg)
        plan = plan_data_parallel(name if isinstance(backend, str) else backend.name, local_devices)
        self.backend = get_backend(name) if isinstance(backend, str) else backend  # after the input checks
        self.world = open_world(self.backend, plan)
        self.workdir = Path(workdir)
        state = load_checkpoint(restart) if restart is not None else None

        self.train_s, self.valid_s = samplers_from_config(cfg, batch_scale=self.world.workers)
        init_params = None
        if state is not None:
            if state["config"]["model"] != cfg["model"] and cfg["model"]["descriptor"]["sel"] != "auto":
                log.warning("the model section of the input differs from the checkpoint's; continuing with the "
                            "checkpoint's model")
            cfg["model"] = copy.deepcopy(state["config"]["model"])
        else:
            if init_model is not None:
                init = load_init_model(init_model)
                init_params = init.params
                if isinstance(cfg["model"]["descriptor"]["sel"], str):  # the model's (real-type) sel; DPA-1: one int
                    sel, mixed = list(init.sel), get_descriptor(cfg["model"]["descriptor"]["type"]).MIXED_TYPES
                    cfg["model"]["descriptor"]["sel"] = sel[0] if mixed else sel
            cfg = resolve_sel(cfg, self.train_s.systems)
        self.cfg = cfg
        if normalized_output is not None and self.world.is_main:
            from ..config import write_normalized

            write_normalized(cfg, normalized_output, source=source)
        if cfg["model"].get("spin") is None:  # spin batches build their 2·nloc-atom lists per batch
            cache = NeighborListCache(nlist_maker(cfg["model"]))
            for s in (self.train_s, self.valid_s):
                if s is not None:
                    s.nlist_cache = cache
        if state is not None:
            from ..model.factory import model_from_state

            self.model = model_from_state(cfg["model"], state["params"])
            self.train_s.set_state(state["sampler"]["train"])
            if self.valid_s is not None and state["sampler"].get("valid") is not None:
                self.valid_s.set_state(state["sampler"]["valid"])
            self.start_step = int(state["step"])
            log.info("restart from %s at step %d (written by backend %s)", state["path"], self.start_step,
                     state["backend"])
            self._check_global_batch(state)
        else:
            self.model = build_model_and_stats(cfg, self.train_s, init_params=init_params,
                                               use_stat_file=self.world.is_main)
            self.start_step = 0
        self._setup_optimisation(numb_steps, state)

    def _setup_optimisation(self, numb_steps, state) -> None:
        from ..loss import make_loss
        from .lr import make_lr

        cfg, be, tr = self.cfg, self.backend, self.cfg["training"]
        mcfg = training_model_config(self.model.config, tr.get("mixed_precision"), be.info, be.device_type())
        self.num_steps = int(numb_steps) if numb_steps is not None else steps_from_config(tr, self.train_s)
        self.loss = make_loss(cfg["loss"], backend=be.name, start_lr=cfg["learning_rate"]["start_lr"])
        self.lr = make_lr(cfg["learning_rate"], self.num_steps)
        self.lr_scale = lr_scale(cfg["learning_rate"].get("scale_by_worker", "linear"), self.world.workers)
        self.keys = list(self.loss.display_keys)
        trainable, self.frozen_np = split_params(self.model.params, trainable_mask(mcfg, self.model.params))
        self.n_trainable = sum(int(np.size(x)) for x in leaves(trainable))
        if state is not None:
            opt = state["optimizer"]
            adam = {"step": int(opt["step"]), "m": opt["m"], "v": opt["v"]}
        else:
            adam = adam_init(trainable)
        self.trainable, self.frozen = self.world.params(trainable), self.world.params(self.frozen_np)
        self.adam = {"step": adam["step"], "m": self.world.params(adam["m"]), "v": self.world.params(adam["v"])}
        # compiled steps get lr and the Adam step as 0-d arrays (a Python number is a trace-time constant)
        self.jitted = bool(be.capabilities.get("jit", False) or getattr(be, "compile", False))
        if is_spin(self.model):
            from ..model.spin import forward
        else:
            from ..model.energy import forward
        ctx = step_context(be, mcfg, self.loss.config, self.loss.start_lr, forward.__module__)
        w = self.world
        self.shaper = BatchShaper(self.model, is_spin(self.model), buckets_for_run(
            tr.get("shape_buckets"), self.jitted, self.model.ntypes, self.train_s, self.valid_s, tr["disp_freq"],
            (w.rank, w.size) if w.kind == "processes" else None, w.size if w.kind == "devices" else 1), self.jitted)
        self.shaper.grow_widths((self.train_s, self.valid_s))  # compiled steps: every composition's widths first
        # a quick compile for the first steps, the optimized program from a fixed step on (dpcore.train.tiers)
        options, quick = quick_plan(be, self.world.workers) if self.jitted else ({}, 0)
        if self.start_step >= quick:
            options, quick = {}, 0

        # validations run after the steps t with (t + 1) % disp_freq == 0: does one come after the quick steps?
        disp = int(tr["disp_freq"])
        valid_after = bool(tr["disp_training"]) and (self.num_steps // disp) * disp > quick

        def tiered(fn, priority, full_after):
            return TieredStep(be, fn, options, quick, full_after=full_after, priority=priority)

        self.quick_steps, self.quick_compiled = quick, compiles_quick(options)
        self.steps = StepCache(lambda blocks, flags: tiered(make_step(
            be, mcfg, self.loss, blocks, flags, cfg["optimizer"], tr.get("gradient_max_norm"), forward,
            self.lr_scale), 0, self.num_steps > quick), ("step", json.dumps(cfg["optimizer"], sort_keys=True),
                             tr.get("gradient_max_norm"), self.lr_scale, quick) + ctx)
        if self.world.kind == "processes":  # gradients summed over the processes between the two halves
            self.grads = StepCache(lambda blocks, flags: make_grad(be, mcfg, self.loss, blocks, flags, forward),
                                   ("grad",) + ctx)
            self.update = make_update(be, cfg["optimizer"], tr.get("gradient_max_norm"), self.lr_scale)
        self.evals = StepCache(lambda blocks, flags: tiered(make_eval(be, mcfg, self.loss, blocks, flags, forward), 1,
                                                                      valid_after),
                               ("eval", quick) + ctx)

    # -- pieces of one step ------------------------------------------------------------------------------
    def _scalar(self, x, dtype):
        return self.backend.asarray(np.asarray(x, dtype=dtype)) if self.jitted else x

    def _to_backend(self, batch):
        inputs, arrays, blocks, flags, nf = self.shaper(batch)  # padded to its shape bucket (train/buckets.py)
        return self.world.to_backend(inputs, nf), self.world.to_backend(arrays, nf), blocks, flags

    def _metrics(self, metrics) -> dict:
        return {k: float(self.backend.to_numpy(metrics[k])) for k in self.keys}

    def step(self, t: int) -> dict:
        """Train step ``t`` (0-based); returns the metrics (backend arrays) of its batch before the update."""
        if self.world.kind == "processes":
            return self._step_shard(t)
        lr = float(self.lr.value(t))
        inputs, labels, blocks, flags = self._to_backend(self.train_s.next_batch())
        adam = self.adam
        adam_in = {"step": self._scalar(adam["step"], np.int64), "m": adam["m"], "v": adam["v"]}
        self.trainable, out, _, metrics = self.steps.get(blocks, flags, inputs)(
            t, self.trainable, adam_in, self.frozen, inputs, labels, self._scalar(lr, np.float64))
        self.adam = {"step": adam["step"] + 1, "m": out["m"], "v": out["v"]}
        return metrics

    def validate(self, lr: float, step: int | None = None) -> dict | None:
        """Metrics on ``numb_btch`` validation batches, averaged with the batches' atom counts (SPEC 10.3), after
        training step ``step`` (0-based; default: the first step of the run)."""
        if self.valid_s is None:
            return None
        step = self.start_step if step is None else step
        if self.world.kind == "processes":
            return self._validate_shards(lr, step)
        params = merge_params(self.trainable, self.frozen)
        total, weight = {}, 0
        for batch in self.valid_s.take(self.valid_s.numb_btch):
            inputs, labels, blocks, flags = self._to_backend(batch)
            _, m = self.evals.get(blocks, flags, inputs)(step, params, inputs, labels, self._scalar(lr, np.float64))
            natoms = int(batch["atype"].shape[-1])
            for k, v in self._metrics(m).items():
                total[k] = total.get(k, 0.0) + v * natoms
            weight += natoms
        return {k: v / weight for k, v in total.items()}

    def _compile_validation_beside(self):
        """On compiling backends, a thread that compiles (and runs once, the result dropped) the validation step of
        the first validation batch while the first training step compiles, so that XLA uses the second core:
        the validation step is a third of the first step's compile time.  The validation sampler is left where
        it was and the parameters are copied (jax donates the training step's).  Not where the first steps run
        eagerly (nothing to compile; a second Python thread would only slow the first).  Returns the thread or None."""
        if (self.valid_s is None or not self.backend.capabilities.get("jit") or self.world.kind == "processes"
                or not self.cfg["training"]["disp_training"] or (self.quick_steps and not self.quick_compiled)):
            return None
        state = self.valid_s.get_state()
        inputs, labels, blocks, flags = self._to_backend(self.valid_s.take(1)[0])
        self.valid_s.set_state(state)
        be = self.backend
        params = be.tree_asarray(self.params_numpy())
        fn = self.evals.get(blocks, flags, inputs)
        lr = self._scalar(float(self.lr.value(self.start_step)), np.float64)

        def compile_and_drop():
            try:
                be.to_numpy(fn(self.start_step, params, inputs, labels, lr)[0])
            except Exception as e:  # noqa: BLE001 -- the validation itself raises it again, in the main thread
                log.debug("compiling the validation step beside the first training step: %s", e)

        thread = threading.Thread(target=compile_and_drop, name="dpcore-compile-validation", daemon=True)
        thread.start()
        return thread

    def _wait(self) -> None:
        """Block until the last step's update is computed (one parameter array brought to the host)."""
        leaf = next(leaves(self.trainable), None)
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
        if self.world.workers > 1:  # what a restart needs to know to continue the same global batches
            state["data_parallel"] = {"kind": self.world.kind, "workers": self.world.workers,
                                      "batch_sizes": list(self.train_s.batch_sizes)}
        path = write_checkpoint(self.workdir / (tr.get("save_dir") or "") / prefix.parent, prefix.name, state,
                                tr["max_ckpt_keep"])
        log.info("saved checkpoint %s", path)
        return path

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> dict:
        tr = self.cfg["training"]
        disp_freq, save_freq, num_steps = int(tr["disp_freq"]), int(tr["save_freq"]), self.num_steps
        log.info("training %d steps (from step %d) on backend %s; %d trainable parameters", num_steps,
                 self.start_step, self.backend.name, self.n_trainable)
        if self.start_step >= num_steps:
            log.warning("the checkpoint is at step %d and training/numb_steps is %d: nothing to train "
                        "(raise numb_steps to continue)", self.start_step, num_steps)
        fout = None
        if self.world.is_main and tr["disp_training"]:
            fout = lcurve.open_for_run(self.workdir / tr["disp_file"], self.keys, self.valid_s is not None,
                                       self.start_step)
        t_start = time.perf_counter()
        beside = self._compile_validation_beside()
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
                display = bool(tr["disp_training"]) and ((t + 1) % disp_freq == 0 or t == 0)
                if display:
                    lr = float(self.lr.value(t))
                    trn = {k: v / n_running for k, v in running.items()} if tr["disp_avg"] else self._metrics(metrics)
                    running, n_running = {}, 0
                    if beside is not None:
                        beside.join()
                        beside = None
                    val = self.validate(lr, t)
                    if fout is not None:  # the learning rate Adam used (scale_by_worker)
                        fout.write(lcurve.line(t + 1, lr * self.lr_scale, trn, val, self.keys))
                if t_first is None or display or t + 1 == num_steps:
                    self._wait()  # asynchronous backends (jax): time finished work, not dispatch
                now = time.perf_counter()
                if t_first is None:  # the first step pays for tracing / compilation
                    t_first, t_window, n_window = now - t_start, now, 0
                    start_background_compiles()
                elif display or t + 1 == num_steps:
                    per = (now - t_window) / max(n_window, 1)
                    timed_steps, timed_time = timed_steps + n_window, timed_time + (now - t_window)
                    t_window, n_window = now, 0
                    if display and self.world.is_main:
                        log_display(t + 1, num_steps, trn, val, float(self.lr.value(t)) * self.lr_scale, per)
                if 0 < self.quick_steps == t and t + 1 < num_steps:
                    # the steady-state average starts after the quick steps and the one that waited for
                    # the optimized program (dpcore.train.tiers)
                    t_window, n_window, timed_steps, timed_time = now, 0, 0, 0.0
                if ((t + 1) % save_freq == 0 or t + 1 == num_steps) and self.world.is_main:
                    ckpt = self.save(t + 1)
        finally:
            stop_background_compiles()  # an interrupted run: what is queued is dropped, what runs is waited for
            if fout is not None:
                fout.close()
            self.world.close()
        wall = time.perf_counter() - t_start
        per_step = timed_time / timed_steps if timed_steps else float("nan")
        if tr["time_training"] and num_steps > self.start_step:
            excluded = "the first step, %.2f s" % (t_first or 0.0)
            if 0 < self.quick_steps < num_steps - 1:
                excluded += ", and the next %d (quick programs)" % (self.quick_steps - self.start_step)
            log.info("finished %d steps in %s; average %.4f s/step (excluding %s)",
                     num_steps - self.start_step, fmt_time(wall), per_step, excluded)
        from ..model.factory import model_from_state

        model = model_from_state(self.cfg["model"], self.params_numpy())
        model.model_def_script = self.model.model_def_script
        return {"model": model, "train": trn, "valid": val, "s_per_step": per_step, "first_step_s": t_first,
                "wall_s": wall, "checkpoint": ckpt, "backend": self.backend.name, "num_steps": num_steps,
                "config": self.cfg, "settings": dict(self.backend.settings), "rank": self.world.rank,
                "workers": self.world.workers}
