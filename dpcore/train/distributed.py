"""Data-parallel training (docs/distributed.md): who the workers are, their share of a batch, the reductions.

THE rule: the frames of step ``t`` do not depend on the number of workers.  Every worker holds the same
sampler (same seed, same state) built with ``batch_scale = N`` workers, draws the same GLOBAL batch of
``N * batch_size`` frames and evaluates its contiguous slice (:meth:`dpcore.data.BatchSampler.next_shard`).
``N`` workers with ``batch_size`` b therefore train exactly as one process with ``N * b`` frames: the same
lcurve.out and the same parameters up to the rounding of the sums (1e-15 relative per step).

Loss and gradient.  A batch comes from one system (one ``type.raw``), so every frame has the same atoms:
each term of the ``ener`` / ``ener_spin`` losses is a mean over the batch's frames (``mean_f``), over its
atoms (``pool``: sum over frames and atoms / (frames x atoms)) or over its magnetic atoms, and each of these
denominators is proportional to the number of frames.  Worker r with ``n_r`` of the ``n`` frames therefore
weights its loss by ``w_r = n_r / n``: ``L = sum_r w_r L_r`` is the loss of the whole batch, and
``sum_r w_r grad L_r`` (one all-reduce of the weighted gradients) its gradient.  Every worker then applies the
same clipping and Adam update to the same summed gradient (identical bits on every worker).

Metrics (lcurve.out).  ``rmse*`` metrics are square roots of such means: the worker sends
``w_r * rmse_r**2`` and the sum's square root is the whole batch's value; the others (``mae*``) are means,
sent as ``w_r * mae_r``.  Validation batches are split and reduced the same way (every worker takes part;
rank 0 writes); their batch size is also per worker.

Kinds of workers (the backend registry's ``data_parallel`` says which a backend has):

``processes``  one process per worker under a launcher (torchrun, ``python -m dpcore.train.launch``, srun,
               mpirun; detected from ``WORLD_SIZE`` and the other variables of :data:`LAUNCHERS`); the adapter's
               ``all_reduce_sum`` sums gradients and metrics.
``devices``    several devices of one process (``--local-devices N``): the global batch is placed with its frame
               axis sharded over the devices and parameters replicated, and the backend's compiler partitions
               the unchanged training step (the loss is the whole batch's by construction).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from .optim import tree_map

log = logging.getLogger("dpcore.train")

__all__ = ["LAUNCHERS", "launcher_env", "plan_data_parallel", "open_world", "lr_scale", "World"]

# (variable with the number of processes, variable with this process's rank, launcher)
LAUNCHERS = (("WORLD_SIZE", "RANK", "torchrun / torch.distributed"),
             ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "python -m dpcore.train.launch"),
             ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "Open MPI (mpirun)"),
             ("PMI_SIZE", "PMI_RANK", "an MPI launcher (PMI)"),
             ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM (srun)"),  # set by srun only, not in a batch script
             ("PADDLE_TRAINERS_NUM", "PADDLE_TRAINER_ID", "paddle.distributed.launch"))
SCALE_BY_WORKER = ("linear", "sqrt", "none")


def launcher_env(environ=None) -> tuple[str, int, int] | None:
    """``(launcher, rank, world_size)`` when this process was started by a launcher of more than one process."""
    env = os.environ if environ is None else environ
    for size_var, rank_var, name in LAUNCHERS:
        try:
            size = int(env.get(size_var, "1"))
        except ValueError:
            continue
        if size > 1:
            return f"{name} ({size_var}={size})", int(env.get(rank_var, "0") or 0), size
    return None


def lr_scale(mode: str, workers: int) -> float:
    """``learning_rate.scale_by_worker`` (DeePMD-kit): the factor on the learning rate given to Adam with
    ``workers`` data-parallel workers: ``linear`` N (DeePMD-kit's default), ``sqrt`` sqrt(N), ``none`` 1."""
    if workers <= 1:  # a single process is never scaled (and, as before, does not read the key)
        return 1.0
    if mode not in SCALE_BY_WORKER:
        raise ValueError(f"learning_rate/scale_by_worker: expected one of {list(SCALE_BY_WORKER)}, got {mode!r}")
    if mode == "none":
        return 1.0
    return float(workers) if mode == "linear" else math.sqrt(workers)


def _capable() -> str:
    """The backends that train data-parallel, by kind (from the backend registry)."""
    from ..backends.registry import BACKENDS

    how = {"processes": "across processes (one per worker, under torchrun, python -m dpcore.train.launch, srun "
                        "or mpirun)",
           "devices": "over the devices of one process (--local-devices N)"}
    parts = []
    for kind, text in how.items():
        names = [f"{name} ({b.data_parallel[kind]['collective']})" for name, b in BACKENDS.items()
                 if kind in b.data_parallel]
        if names:
            parts.append(f"{text}: {', '.join(names)}")
    return "; ".join(parts)


def plan_data_parallel(name: str, local_devices: int | None = None, environ=None) -> dict | None:
    """What data parallelism a run of backend ``name`` gets, decided before its framework is imported:
    None (one process, one device), ``{"kind": "processes", "launcher": ...}`` or ``{"kind": "devices", "n": N}``.
    A launcher of several processes, or ``local_devices > 1``, with a backend that cannot is a NotImplementedError
    naming the backends that can."""
    from ..backends.registry import info

    env = launcher_env(environ)
    n = int(local_devices or 1)
    if n < 1:
        raise ValueError(f"--local-devices must be >= 1, got {local_devices}")
    if env is None and n == 1:
        return None
    entry = info(name)
    if env is not None:
        if "processes" not in entry.data_parallel:
            raise NotImplementedError(f"dpcore train was started by {env[0]}, but the {entry.display_name} backend "
                                      "cannot train data-parallel across processes. Data-parallel training runs "
                                      f"{_capable()}. Run {entry.display_name} as a single process, or choose one "
                                      "of those.")
        if n > 1:
            raise ValueError("--local-devices cannot be combined with a multi-process launcher (one device per "
                             "process)")
        return {"kind": "processes", "launcher": env[0]}
    if n > 1:
        if "devices" not in entry.data_parallel:
            raise NotImplementedError(f"--local-devices {n}: the {entry.display_name} backend cannot train "
                                      "data-parallel over the devices of one process. Data-parallel training runs "
                                      f"{_capable()}.")
        return {"kind": "devices", "n": n}
    return None


def open_world(backend, plan: dict | None) -> "World":
    """The :class:`World` of a plan (joins the process group / builds the device mesh)."""
    if plan is None:
        return World(backend)
    if plan["kind"] == "processes":
        try:
            rank, size, created = backend.init_process_group()
        except (RuntimeError, ValueError, OSError) as e:  # the framework's words, with what was being done
            raise ValueError(f"dpcore train was started by {plan['launcher']}, but the {backend.info.display_name} "
                             f"backend could not join its processes: {e} (launch lines: docs/distributed.md)") from e
        world = ProcessWorld(backend, rank, size, created)
        if size > 1 and world.is_main:
            transport = backend.info.data_parallel["processes"].get("transport", {})
            device = backend.device
            kind = getattr(device, "type", None) or getattr(device, "platform", None) or "cpu"
            log.info("data-parallel over %d processes (%s; %s, %s)", size, plan["launcher"],
                     backend.info.data_parallel["processes"]["collective"], transport.get(kind, "default transport"))
        return world
    world = DeviceWorld(backend, plan["n"])
    log.info("data-parallel over %d local devices (%s)", plan["n"], backend.info.data_parallel["devices"]["collective"])
    return world


def _host_zero(backend):
    return backend.asarray(np.zeros((), dtype=np.float64))


class World:
    """One process on one device: nothing to split or reduce (the single-process run, unchanged)."""

    kind = None
    rank, size = 0, 1

    def __init__(self, backend):
        self.backend = backend

    @property
    def workers(self) -> int:
        """Slices of the global batch (processes or devices)."""
        return self.size

    @property
    def is_main(self) -> bool:
        """The worker that writes lcurve.out, checkpoints and the normalised input."""
        return self.rank == 0

    def params(self, tree):
        """A NumPy tree (parameters, Adam moments) as the backend's arrays, identical on every worker."""
        return self.backend.tree_asarray(tree)

    def to_backend(self, tree, nf: int):
        """A NumPy batch tree (``nf`` frames) as the backend's arrays."""
        return self.backend.tree_asarray(tree)

    def close(self) -> None:
        pass


class DeviceWorld(World):
    """Several devices of one process: batches sharded over a mesh, parameters replicated."""

    kind = "devices"

    def __init__(self, backend, n: int):
        super().__init__(backend)
        self.size = int(n)
        self._shard, self._replicate = backend.local_mesh(self.size)

    def params(self, tree):
        return self._replicate(tree)

    def to_backend(self, tree, nf: int):
        return self._shard(tree, nf)


class ProcessWorld(World):
    """One process per worker; gradients and metrics summed with the adapter's collective."""

    kind = "processes"

    def __init__(self, backend, rank: int, size: int, created: bool):
        super().__init__(backend)
        self.rank, self.size, self._created = int(rank), int(size), created

    def params(self, tree):
        return self.backend.broadcast(self.backend.tree_asarray(tree), 0)  # rank 0's statistics everywhere

    def _contributions(self, metrics, weight: float, keys) -> dict:
        """``w * m**2`` of the ``rmse*`` metrics and ``w * m`` of the others (zeros for an empty slice)."""
        if metrics is None:
            return {k: _host_zero(self.backend) for k in keys}
        return {k: weight * metrics[k] * metrics[k] if k.startswith("rmse") else weight * metrics[k] for k in keys}

    def _finish(self, sums: dict) -> dict:
        out = {}
        for k, v in sums.items():
            v = float(self.backend.to_numpy(v))
            out[k] = math.sqrt(v) if k.startswith("rmse") and v >= 0 else v
        return out

    def reduce_step(self, grads, metrics, weight: float, keys, like):
        """The whole batch's gradient and metrics (floats) from this worker's ``grads`` and ``metrics`` of
        ``weight`` = its share of the frames (None, None for an empty slice; ``like``: the parameter tree)."""
        if grads is None:
            from ..xp import namespace

            grads = tree_map(lambda p: namespace(p).zeros_like(p), like)
        else:
            grads = tree_map(lambda g: g * weight, grads)
        out = self.backend.all_reduce_sum({"grads": grads, "metrics": self._contributions(metrics, weight, keys)})
        return out["grads"], self._finish(out["metrics"])

    def reduce_metrics(self, parts, keys) -> list[dict]:
        """Whole-batch metrics of several batches from this worker's ``[(metrics or None, weight), ...]``."""
        sums = self.backend.all_reduce_sum([self._contributions(m, w, keys) for m, w in parts])
        return [self._finish(s) for s in sums]

    def close(self) -> None:
        if self._created:
            self.backend.close_process_group()
            self._created = False
