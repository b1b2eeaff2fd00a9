"""The steps of one worker process of a data-parallel run (:mod:`dpcore.train.distributed`): a mix-in of
:class:`~dpcore.train.loop.Trainer` (its sampler, compiled functions and parameters)."""

from __future__ import annotations

import logging

import numpy as np

from .params import merge_params

log = logging.getLogger("dpcore.train")


class WorkerSteps:
    """Training and validation steps of a worker process, and the restart check of the global batch."""

    def _step_shard(self, t: int) -> dict:
        """:meth:`step` of one worker process: its slice's gradient, the sum over the processes, the update."""
        lr, world = float(self.lr.value(t)), self.world
        batch, nf = self.train_s.next_shard(world.rank, world.size)
        grads = metrics = None
        if batch is not None:
            inputs, labels, blocks, flags = self._to_backend(batch)
            (_, metrics), grads = self.grads.get(blocks, flags)(self.trainable, self.frozen, inputs, labels,
                                                                self._scalar(lr, np.float64))
        grads, metrics = world.reduce_step(grads, metrics, 0.0 if batch is None else batch["coord"].shape[0] / nf,
                                           self.keys, self.trainable)
        adam = self.adam
        adam_in = {"step": self._scalar(adam["step"], np.int64), "m": adam["m"], "v": adam["v"]}
        self.trainable, out = self.update(self.trainable, adam_in, grads, self._scalar(lr, np.float64))
        self.adam = {"step": adam["step"] + 1, "m": out["m"], "v": out["v"]}
        return metrics

    def _validate_shards(self, lr: float, step: int) -> dict:
        """:meth:`validate` of one worker process: its slices of the validation batches, reduced."""
        params, world, parts, natoms = merge_params(self.trainable, self.frozen), self.world, [], []
        for _ in range(self.valid_s.numb_btch):
            batch, nf = self.valid_s.next_shard(world.rank, world.size)
            natoms.append(self.valid_s.systems[self.valid_s.last_system].natoms)
            if batch is None:
                parts.append((None, 0.0))
                continue
            inputs, labels, blocks, flags = self._to_backend(batch)
            _, m = self.evals.get(blocks, flags)(step, params, inputs, labels, self._scalar(lr, np.float64))
            parts.append((m, batch["coord"].shape[0] / nf))
        total, weight = {}, 0
        for m, n in zip(world.reduce_metrics(parts, self.keys), natoms):
            for k, v in m.items():
                total[k] = total.get(k, 0.0) + v * n
            weight += n
        return {k: v / weight for k, v in total.items()}

    def _check_global_batch(self, state) -> None:
        """A restart continues the checkpoint's batches exactly when the global batch sizes are the same
        (workers x batch_size); warn when they are not."""
        from ..data import parse_batch_size

        old = (state.get("data_parallel") or {}).get("batch_sizes")
        if old is None and self.world.workers == 1:
            return
        try:
            old = old or parse_batch_size(state["config"]["training"]["training_data"]["batch_size"],
                                          [s.natoms for s in self.train_s.systems])[0]
        except (KeyError, ValueError):
            return
        if list(old) != list(self.train_s.batch_sizes):
            log.warning("the checkpoint's global batches had %s frames per system, this run's have %s (workers x "
                        "batch_size): training continues, but not as the run that wrote the checkpoint", list(old),
                        list(self.train_s.batch_sizes))
