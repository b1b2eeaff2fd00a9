"""JAX backend: ``jax.numpy`` namespace, ``jax.value_and_grad``, ``jax.jit``, device placement.

Numerical settings applied when the backend object is created (never at import; recorded in
``settings``): ``jax_enable_x64=True`` (float64 arrays stay float64) and
``jax_default_matmul_precision="highest"`` (no TF32 / bf16 passes for float32 matmuls on GPU/TPU).
``model_forward`` is compiled with ``jax.jit`` (one compiled function per model config, type blocks,
force mode and input shapes): eager JAX dispatches and compiles op by op, which was measured ~4x slower
on the first call and ~40x slower afterwards on a 10-atom system.
``device``: None (JAX's default device), a ``jax.Device``, or a string ``"cpu"``, ``"gpu:1"``,
``"cuda"`` (= ``"gpu"``), resolved with ``jax.devices(kind)[index]``.

Data-parallel training over the devices of one process (docs/distributed.md): ``local_mesh(n)`` makes a
1-D ``jax.sharding.Mesh`` of ``n`` local devices; batches are placed with the frame axis sharded over it and
parameters replicated, and the unchanged jitted training step is partitioned by XLA (each device computes
its frames, the gradient sums become all-reduces).  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
gives N CPU devices.
"""

from __future__ import annotations

import copy
import functools
import json
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from .base import Backend
from .registry import info as backend_info
from .tree import tree_map

_MAX_COMPILED = 16  # compiled model functions kept per backend object (least recently used dropped)


def resolve_device(device):
    """A ``jax.Device`` from None / a Device / ``"kind[:index]"``."""
    if device is None or isinstance(device, jax.Device):
        return device
    kind, _, index = str(device).partition(":")
    kind = {"cuda": "gpu", "rocm": "gpu"}.get(kind.lower(), kind.lower())
    try:
        devices = jax.devices(kind)
    except RuntimeError as e:
        raise RuntimeError(f"jax backend: no {kind!r} device available for device={device!r}") from e
    i = int(index) if index else 0
    if not 0 <= i < len(devices):
        raise ValueError(f"jax backend: device={device!r} but only {len(devices)} {kind} device(s) exist")
    return devices[i]


class JaxBackend(Backend):
    name = "jax"
    info = backend_info("jax")
    capabilities = info.capabilities

    def __init__(self, device=None):
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
        super().__init__(resolve_device(device))
        self._compiled: OrderedDict = OrderedDict()
        self.settings = {
            "jax_version": jax.__version__,
            "device": str(self.device if self.device is not None else jax.devices()[0]),
            "jax_enable_x64": bool(jax.config.jax_enable_x64),
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        }

    def namespace(self):
        return jnp

    def asarray(self, x):
        if isinstance(x, jax.Array):  # includes tracers: returned unchanged
            if self.device is None or isinstance(x, jax.core.Tracer) or x.devices() == {self.device}:
                return x
            return jax.device_put(x, self.device)
        x = np.asarray(x)
        out = jax.device_put(x, self.device)
        if out.dtype != x.dtype:
            raise TypeError(f"jax backend: {x.dtype} became {out.dtype}; is jax_enable_x64 off? (it is set when the "
                            "backend object is created: use dpcore.backends.get_backend('jax'))")
        return out

    def to_numpy(self, x):
        return np.asarray(x)

    def value_and_grad(self, f, argnums=(0,), has_aux=False, create_graph=False):
        """``jax.value_and_grad`` (``create_graph`` is implicit in JAX: grads are differentiable)."""
        return jax.value_and_grad(f, argnums=argnums, has_aux=has_aux)

    def jit(self, f, **kwargs):
        return jax.jit(f, **kwargs)

    def model_forward(self, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False, force_mode: str = "analytic",
                      create_graph: bool = False):
        """:meth:`Backend.model_forward` under ``jax.jit`` (config, blocks and modes static; cached).
        ``create_graph`` is implicit in JAX (gradients are always differentiable)."""
        key = (json.dumps(cfg, sort_keys=True, default=repr), blocks, atomic_virial, force_mode)
        fn = self._compiled.pop(key, None)
        if fn is None:
            fn = jax.jit(functools.partial(Backend.model_forward, self, copy.deepcopy(cfg), blocks=blocks,
                                           atomic_virial=atomic_virial, force_mode=force_mode))
        self._compiled[key] = fn
        while len(self._compiled) > _MAX_COMPILED:
            self._compiled.popitem(last=False)
        return fn(params, inputs)

    def local_mesh(self, n: int):
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        kind = (self.device if self.device is not None else jax.devices()[0]).platform
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


BACKEND_CLASS = JaxBackend
