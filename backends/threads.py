"""How many threads dpcore's frameworks and BLAS use: decided by dpcore, documented, overridable.

Why: frameworks start one worker thread per core and synchronise them with busy-waiting barriers (OpenMP
in torch and Paddle, OpenBLAS/MKL under NumPy).  When another job holds some of the cores, the workers
wait for a thread the OS has parked and a step gets several times slower (torch with its default 2 threads
was measured ~10x slower on this 2-core machine while another job ran).  dpcore therefore decides the
count once per process and applies it to every framework it loads.

The decision (:func:`decide`), first rule that applies:

1. an explicit request: ``dpcore <command> --threads N`` or :func:`configure` ``(N)``;
2. the environment: DeePMD-kit's ``DP_INTRA_OP_PARALLELISM_THREADS`` (and ``DP_INTER_OP_PARALLELISM_THREADS``),
   then ``OMP_NUM_THREADS``;
3. ``auto``: the usable cores (CPU affinity) that are idle, measured over 0.2 s from ``/proc/stat``
   (the 1-minute load average where that file does not exist), divided among the data-parallel worker
   processes of this node (:func:`local_processes`), at least 1.

Inter-op threads are 1 unless set: a dpcore step is one chain of dependent operations, and a second pool
only competes with the intra-op one.  The decision is applied (:func:`apply`) to a framework when dpcore
first loads it (torch ``set_num_threads``, TensorFlow's threading config, Paddle's ``set_num_threads``,
XLA's CPU flags and its pool size ``NPROC`` for JAX, which must precede JAX's first computation) and to the
BLAS libraries of the process through threadpoolctl when installed; it is exported to the environment so worker processes
(conformance suite, data-parallel ranks) follow the same decision.  Library use (``dpcore.load``,
``model.evaluate``) keeps the frameworks' own settings unless :func:`configure` was called or one of the
variables above is set; the command line and the ASE calculator configure ``auto``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

log = logging.getLogger("dpcore")

ENV_INTRA, ENV_INTER = "DP_INTRA_OP_PARALLELISM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS"


@dataclass(frozen=True)
class ThreadPlan:
    """``intra``: threads inside one operation (frameworks and BLAS); ``inter``: operations run concurrently;
    ``source``: why (``"--threads"``, the variable's name, or ``"auto: ..."``)."""

    intra: int
    inter: int
    source: str


_PLAN: ThreadPlan | None = None
_APPLIED: set = set()


def usable_cores() -> list[int]:
    """The CPUs this process may run on (affinity; all CPUs where the platform has no affinity call)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def _cpu_times(cpus) -> dict | None:
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3:4].isdigit()]
    except OSError:
        return None
    out = {}
    for fields in lines:
        cpu = int(fields[0][3:])
        if cpu in cpus:
            values = [int(v) for v in fields[1:9]]
            out[cpu] = (values[3] + values[4], sum(values))  # (idle + iowait, total) in clock ticks
    return out or None


def idle_cores(cores: list[int], sample_s: float = 0.2) -> float:
    """How many of ``cores`` were idle over ``sample_s`` seconds (other processes' load subtracted)."""
    first = _cpu_times(set(cores))
    if first is None:
        return max(0.0, len(cores) - os.getloadavg()[0]) if hasattr(os, "getloadavg") else float(len(cores))
    time.sleep(sample_s)
    second = _cpu_times(set(cores)) or first
    idle = 0.0
    for cpu, (idle0, total0) in first.items():
        idle1, total1 = second.get(cpu, (idle0, total0))
        idle += (idle1 - idle0) / (total1 - total0) if total1 > total0 else 1.0
    return idle


def _positive_int(value, what: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{what} must be a positive integer number of threads, got {value!r}")
    return n


def decide(threads=None) -> ThreadPlan:
    """The thread plan: ``threads`` an int (that many), ``"auto"`` (the idle cores, ignoring the environment)
    or None (the environment's variables, else the idle cores)."""
    env_inter = os.environ.get(ENV_INTER)
    inter = _positive_int(env_inter, ENV_INTER) if env_inter else 1
    if threads is not None and str(threads).lower() != "auto":
        return ThreadPlan(_positive_int(threads, "--threads"), inter, "--threads")
    if threads is None:
        for name in (ENV_INTRA, "OMP_NUM_THREADS"):
            if os.environ.get(name):
                return ThreadPlan(_positive_int(os.environ[name], name), inter, name)
    cores = usable_cores()
    idle = idle_cores(cores)
    local = local_processes()
    n = max(1, min(len(cores), int(idle / local + 0.5)))
    share = f", shared by {local} processes of this node" if local > 1 else ""
    return ThreadPlan(n, inter, f"auto: {idle:.1f} of {len(cores)} usable cores idle{share}")


def local_processes() -> int:
    """Worker processes of a data-parallel run on this node (launchers' ``LOCAL_WORLD_SIZE``: torchrun and
    ``dpcore.train.launch``; SLURM's tasks per node under ``srun``), 1 otherwise: they share the idle cores."""
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        value = os.environ.get(name, "").split("(")[0]  # SLURM may write "4(x2)"
        if value.isdigit() and int(value) > 0 and (name != "SLURM_NTASKS_PER_NODE" or "SLURM_STEP_NUM_TASKS" in os.environ):
            return int(value)
    return 1


def configure(threads=None) -> ThreadPlan:
    """Decide the plan for this process (see the module docstring), export it, apply it to the frameworks
    and BLAS already loaded; frameworks loaded later get it from :func:`apply`.  Returns the plan."""
    global _PLAN
    plan = decide(threads)
    _PLAN = plan
    os.environ[ENV_INTRA], os.environ[ENV_INTER] = str(plan.intra), str(plan.inter)
    _APPLIED.clear()
    _limit_blas(plan.intra)
    for name in _SETTERS:
        if name in sys.modules:
            apply(name)
    log.info("threads: %d intra-op, %d inter-op (%s; override with --threads or %s)",
             plan.intra, plan.inter, plan.source, ENV_INTRA)
    return plan


def current() -> ThreadPlan | None:
    """The plan of this process: configured, or from the environment variables, or None (frameworks' own)."""
    global _PLAN
    if _PLAN is None and (os.environ.get(ENV_INTRA) or os.environ.get(ENV_INTER)):
        _PLAN = decide()
        _limit_blas(_PLAN.intra)
    return _PLAN


def apply(framework: str) -> dict:
    """Apply the current plan to ``framework`` (once per process); returns what was set, for ``settings``."""
    plan = current()
    if plan is None:
        return {}
    if framework in _SETTERS and framework not in _APPLIED:
        _APPLIED.add(framework)
        _SETTERS[framework](plan)
    return {"intra_op_threads": plan.intra, "inter_op_threads": plan.inter, "threads_source": plan.source}


def _limit_blas(n: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: the environment variables below then only reach processes started later
        pass
    else:
        threadpool_limits(limits=n)
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)


def _torch(plan: ThreadPlan) -> None:
    import torch

    torch.set_num_threads(plan.intra)
    try:
        torch.set_num_interop_threads(plan.inter)
    except RuntimeError:  # only settable before the first inter-op work of the process; keep torch's
        pass


def _tensorflow(plan: ThreadPlan) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(plan.intra)
        tf.config.threading.set_inter_op_parallelism_threads(plan.inter)
    except RuntimeError:  # TensorFlow's runtime already started in this process: its pools are fixed
        log.warning("threads: TensorFlow was initialised before dpcore; its thread pools keep their size")


def _paddle(plan: ThreadPlan) -> None:
    from paddle.base import core

    core.set_num_threads(plan.intra)


def _jax(plan: ThreadPlan) -> None:
    # XLA reads its flags when JAX creates its CPU client (first device query or computation)
    if plan.intra == 1 and "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()
    # The flags above make each operation single-threaded, but the CPU client still runs independent operations
    # of a program concurrently on its own pool ("tf_XLAEigen"), sized from NPROC, else the usable cores: a
    # "1 thread" JAX step was measured at 117-120% CPU.  XLA's default pool size reads NPROC (a user's is kept).
    os.environ.setdefault("NPROC", str(plan.intra))


_SETTERS = {"torch": _torch, "tensorflow": _tensorflow, "paddle": _paddle, "jax": _jax}
