"""JAX backend: ``jax.numpy`` namespace, ``jax.value_and_grad``, ``jax.jit``, device placement.

Numerical settings applied when the backend object is created (never at import; recorded in
``settings``): ``jax_enable_x64=True`` (float64 arrays stay float64) and
``jax_default_matmul_precision="highest"`` (no TF32 / bf16 passes for float32 matmuls on GPU/TPU).
``model_forward`` is compiled with ``jax.jit`` (registry ``jit_forward``; one compiled function per model config,
type blocks, force mode and input shapes): eager JAX dispatches and compiles op by op, which was measured ~4x slower
on the first call and ~40x slower afterwards on a 10-atom system.
``device``: None (JAX's default device), a ``jax.Device``, or a string ``"cpu"``, ``"gpu:1"``,
``"cuda"`` (= ``"gpu"``), resolved with ``jax.local_devices(backend=kind)[index]``.

Data-parallel training over the devices of one process (docs/distributed.md): ``local_mesh(n)`` makes a
1-D ``jax.sharding.Mesh`` of ``n`` local devices; batches are placed with the frame axis sharded over it and
parameters replicated, and the unchanged jitted training step is partitioned by XLA (each device computes
its frames, the gradient sums become all-reduces).  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
gives N CPU devices.

Data-parallel training across processes (one per worker): ``init_process_group`` calls
``jax.distributed.initialize`` (CPU collectives: gloo, JAX's default), with the coordinator, process count and
id of :func:`process_env` (``python -m dpcore.train.launch``, or any launcher giving a rank and size plus
``JAX_COORDINATOR_ADDRESS``) or, without them, JAX's own detection (SLURM's ``srun``, Open MPI's ``mpirun``).
It must run before any device query, so the device and ``settings["device"]`` are resolved on first use, not
when the backend object is created.  ``all_reduce_sum`` packs a tree into one buffer per dtype, lays the
processes' buffers along the first axis of a global array (one device per process) and sums that axis in a
jitted function whose result is replicated: XLA's all-reduce over gloo (nccl on GPUs), every process gets the
same bits.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from dpcore.xp import gather_rows, gather_rows_vjp, namespace_name, register_gather_rows

from . import table_kernel_jax, xla_ffi_abi
from .base import Backend
from .registry import info as backend_info
from .table_kernel import register as register_table_kernel
from .tree import leaves, rebuild, tree_map

def resolve_device(device):
    """A ``jax.Device`` from None / a Device / ``"kind[:index]"``."""
    if device is None or isinstance(device, jax.Device):
        return device
    kind, _, index = str(device).partition(":")
    kind = {"cuda": "gpu", "rocm": "gpu"}.get(kind.lower(), kind.lower())
    try:
        devices = jax.local_devices(backend=kind)  # this process's (several under jax.distributed)
    except RuntimeError as e:
        raise RuntimeError(f"jax backend: no {kind!r} device available for device={device!r}") from e
    i = int(index) if index else 0
    if not 0 <= i < len(devices):
        raise ValueError(f"jax backend: device={device!r} but only {len(devices)} {kind} device(s) exist")
    return devices[i]


# (variable with the number of processes, variable with this process's rank) of the launchers whose values are
# given to jax.distributed.initialize with JAX_COORDINATOR_ADDRESS; without any, JAX detects SLURM and Open MPI
PROCESS_VARIABLES = (("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"),  # python -m dpcore.train.launch
                     ("WORLD_SIZE", "RANK"),  # torchrun
                     ("PMI_SIZE", "PMI_RANK"))  # MPICH / Intel MPI


def process_env(environ=None) -> dict:
    """Keyword arguments of ``jax.distributed.initialize`` from the environment: ``coordinator_address``,
    ``num_processes``, ``process_id`` from the first of :data:`PROCESS_VARIABLES` set (with
    ``JAX_COORDINATOR_ADDRESS``, host:port of process 0's coordinator), or {} (JAX's own detection)."""
    env = os.environ if environ is None else environ
    for size_var, rank_var in PROCESS_VARIABLES:
        if size_var in env:
            address = env.get("JAX_COORDINATOR_ADDRESS")
            if not address:
                raise ValueError(f"jax backend: {size_var}={env[size_var]} but JAX_COORDINATOR_ADDRESS is not set "
                                 "(host:port where process 0 starts the coordinator, reachable from every process; "
                                 "python -m dpcore.train.launch sets it)")
            try:
                return {"coordinator_address": address, "num_processes": int(env[size_var]),
                        "process_id": int(env.get(rank_var, "0"))}
            except ValueError:
                raise ValueError(f"jax backend: {size_var}={env[size_var]!r} and {rank_var}="
                                 f"{env.get(rank_var)!r} must be integers") from None
    return {}


def _split(buf, shapes):
    """Leaves of ``shapes`` from the flat ``buf`` (inverse of :func:`_pack`)."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(jnp.reshape(buf[start:start + size], shape))
        start += size
    return out


@jax.jit
def _pack(leaves):
    return jnp.concatenate([jnp.reshape(x, (-1,)) for x in leaves])


@jax.custom_vjp
def _gather_rows(x, index, inverse):
    """dpcore.xp.gather_rows with its transpose by gathers at ``inverse``: XLA on CPU expands the scatter that
    JAX's transpose of a gather would be into a loop over its rows (~0.4 us a row; 17% of a water training step
    with shared embedding inputs, dpcore/pair_share.py)."""
    return gather_rows(jnp, x, index)


def _gather_rows_fwd(x, index, inverse):
    return _gather_rows(x, index, inverse), (index, inverse)


def _gather_rows_bwd(res, gy):
    index, inverse = res
    return gather_rows_vjp(jnp, gy, index.ndim - 1, inverse), None, None


_gather_rows.defvjp(_gather_rows_fwd, _gather_rows_bwd)


register_gather_rows("jax", _gather_rows)


class JaxBackend(Backend):
    name = "jax"
    info = backend_info("jax")
    capabilities = info.capabilities

    def __init__(self, device=None):
        # the device is resolved on first use and settings["device"] names it only then (or says "default"):
        # jax.distributed.initialize (init_process_group) must come before any device query
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
        super().__init__(None)
        self._device_spec = device
        self._mesh = None  # all_reduce_sum / broadcast across processes: see _process_mesh
        self.settings = {
            "jax_version": jax.__version__,
            "device": "default" if device is None else str(device),
            "jax_enable_x64": bool(jax.config.jax_enable_x64),
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
            # compressed models: the fused kernel as XLA FFI calls (backends/table_kernel_jax.py)
            "table_kernel": register_table_kernel(namespace_name(jnp), table_kernel_jax.JaxTableKernel,
                                                  xla_ffi_abi.abi_mismatch()),
        }

    @property
    def device(self):
        """The ``jax.Device`` asked for (resolved on first use), or None: JAX's default device, this process's
        first local device."""
        if self._device is None and self._device_spec is not None:
            self._device = resolve_device(self._device_spec)
            self.settings["device"] = str(self._device)
        return self._device

    @device.setter
    def device(self, value):
        self._device = value

    def namespace(self):
        return jnp

    def asarray(self, x):
        if isinstance(x, jax.Array):  # includes tracers: returned unchanged
            if self.device is None or isinstance(x, jax.core.Tracer) or x.devices() == {self.device}:
                return x
            return jax.device_put(x, self.device)
        return self._put([np.asarray(x)])[0]

    def _put(self, arrays: list) -> list:
        """NumPy arrays placed on the device with one ``jax.device_put``, their dtypes checked."""
        placed = jax.device_put(arrays, self.device)
        for x, out in zip(arrays, placed):
            if out.dtype != x.dtype:
                raise TypeError(f"jax backend: {x.dtype} became {out.dtype}; is jax_enable_x64 off? (it is set when "
                                "the backend object is created: use dpcore.backends.get_backend('jax'))")
        return placed

    def tree_asarray(self, tree):
        """The NumPy leaves of a tree placed with ONE ``jax.device_put`` (a training batch has ~25 arrays: one call
        each took 13 ms of host time per water step, batched ~3 ms); framework arrays, None and scalars as
        :meth:`Backend.tree_asarray` treats them (kept)."""
        flat = leaves(tree)
        host = [i for i, x in enumerate(flat) if isinstance(x, (np.ndarray, np.generic))]
        for i, x in zip(host, self._put([np.asarray(flat[i]) for i in host])):
            flat[i] = x
        return rebuild(tree, iter(flat))

    def forward_inputs(self, tree):
        """NumPy leaves kept (no device asked for, x64 on): the jitted forward places them itself, ~1.3 ms per water
        frame faster than a ``device_put`` of the ~25 arrays first; else :meth:`tree_asarray` (its dtype error)."""
        if self.device is None and jax.config.jax_enable_x64:
            return tree
        return self.tree_asarray(tree)

    def to_numpy(self, x):
        return np.asarray(x)

    def value_and_grad(self, f, argnums=(0,), has_aux=False, create_graph=False):
        """``jax.value_and_grad`` (``create_graph`` is implicit in JAX: grads are differentiable)."""
        return jax.value_and_grad(f, argnums=argnums, has_aux=has_aux)

    def jit(self, f, **kwargs):
        return jax.jit(f, **kwargs)

    def lower(self, fn, args: tuple):
        return fn.lower(*args)

    def compile_lowered(self, lowered, options: dict | None = None):
        return lowered.compile(compiler_options=options) if options else lowered.compile()

    def local_mesh(self, n: int):
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        kind = (self.device if self.device is not None else jax.local_devices()[0]).platform
        devices = jax.local_devices(backend=kind)
        if len(devices) < n:
            raise ValueError(f"jax backend: {n} devices requested but this process has {len(devices)} {kind} "
                             "device(s) (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before jax "
                             "starts makes N)")
        mesh = Mesh(np.array(devices[:n]), ("batch",))
        split, whole = NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())

        def place(x, sharding):
            if x is None or isinstance(x, (int, float, bool, str)):
                return x
            return jax.device_put(x, sharding)

        def shard(tree, nf: int):
            """Leaves with ``nf`` leading frames split over the mesh (when ``nf % n == 0``), others replicated."""
            even = nf % n == 0
            return tree_map(lambda x: place(x, split if even and np.ndim(x) and np.shape(x)[0] == nf else whole), tree)

        def replicate(tree):
            return tree_map(lambda x: place(x, whole), tree)

        return shard, replicate

    # -- data-parallel training across processes ----------------------------------------------------------------
    def init_process_group(self):
        created = not jax.distributed.is_initialized()
        if created:
            jax.distributed.initialize(**process_env())
        self.settings.update(process=f"{jax.process_index()} of {jax.process_count()}",
                             device=str(self.device if self.device is not None else jax.local_devices()[0]))
        return jax.process_index(), jax.process_count(), created

    def close_process_group(self):
        if jax.distributed.is_initialized():
            jax.distributed.shutdown()

    def _process_mesh(self):
        """``(stack, reduce)``: ``stack(buf)`` is the global array of the processes' flat buffers end to end
        (one device per process); ``reduce(a, shapes, root)`` the leaves of their sum (root None) or of
        process root's buffer, replicated on every process (XLA's all-reduce / all-gather)."""
        if self._mesh is None:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mine = self.device if self.device is not None else jax.local_devices()[0]
            first = {}
            for d in sorted(jax.devices(mine.platform), key=lambda d: d.id):
                first.setdefault(d.process_index, d)
            n = jax.process_count()
            mesh = Mesh(np.array([first[p] for p in range(n)]), ("processes",))
            rows, whole = NamedSharding(mesh, PartitionSpec("processes")), NamedSharding(mesh, PartitionSpec())
            mine = first[jax.process_index()]

            def stack(buf):
                return jax.make_array_from_single_device_arrays((n * buf.shape[0],), rows, [jax.device_put(buf, mine)])

            @functools.partial(jax.jit, static_argnums=(1, 2), out_shardings=whole)
            def reduce(a, shapes, root):
                a = jnp.reshape(a, (n, -1))
                return _split(jnp.sum(a, axis=0, dtype=a.dtype) if root is None else a[root], shapes)

            self._mesh = stack, reduce
        return self._mesh

    def _collective(self, tree, root):
        """The sum over the processes (root None) or process ``root``'s value of every array of ``tree``: one
        flat buffer per dtype."""
        stack, reduce = self._process_mesh()
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        leaves, out = [jnp.asarray(x) for x in leaves], [None] * len(leaves)
        for dtype in sorted({x.dtype for x in leaves}, key=str):
            idx = [i for i, x in enumerate(leaves) if x.dtype == dtype]
            parts = reduce(stack(_pack([leaves[i] for i in idx])), tuple(tuple(leaves[i].shape) for i in idx), root)
            for i, part in zip(idx, parts):
                out[i] = part.addressable_data(0)
        return jax.tree_util.tree_unflatten(treedef, out)

    def all_reduce_sum(self, tree):
        if not (jax.distributed.is_initialized() and jax.process_count() > 1):
            return tree
        return self._collective(tree, None)

    def broadcast(self, tree, root: int = 0):
        if not (jax.distributed.is_initialized() and jax.process_count() > 1):
            return tree
        return self._collective(tree, int(root))


BACKEND_CLASS = JaxBackend
