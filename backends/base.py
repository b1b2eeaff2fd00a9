"""The adapter contract shared by every backend.

A backend adapter supplies only what differs between frameworks:

* ``namespace()``: the array-API namespace (array-api-compat's, or a shim registered with
  :func:`dpcore.xp.register_namespace` for TensorFlow / Paddle);
* ``asarray(np_array)`` / ``to_numpy(x)``: conversion keeping the dtype, placing arrays on
  ``self.device``; framework arrays passed to ``asarray`` are returned unchanged (never detached);
* ``value_and_grad(f, argnums=(0,), has_aux=False, create_graph=False)``: JAX semantics,
  ``g(*args) -> (value, grads)`` or ``((value, aux), grads)``, ``grads`` a tuple aligned with
  ``argnums``, each mirroring its argument's pytree (nested dicts/lists of arrays);
  ``create_graph`` keeps the graph for a second differentiation (torch/paddle/tf);
* ``jit(f)``: compiled version of ``f`` where the framework has one (identity otherwise); where the registry
  gives ``quick_compile`` options, ``lower(fn, args)`` and ``compile_lowered(lowered, options)`` compile a
  jitted function ahead of its call (:mod:`dpcore.train.tiers`);
  ``compiled(name, fn, cfg, **static)``: a model forward compiled once per config and static arguments where
  the registry says forwards are (``info.jit_forward``), kept in a small cache of the backend object;
* ``info`` / ``capabilities``: static data from :mod:`dpcore.backends.registry` (documented support
  table, jit choices); ``settings``: numerical settings applied explicitly when the backend object is
  created (never at import), recorded for reports;
* data-parallel training (docs/distributed.md; which backends have which kind is the registry's
  ``data_parallel``): ``init_process_group()`` / ``close_process_group()`` and ``all_reduce_sum(tree)`` /
  ``broadcast(tree)`` across processes, ``local_mesh(n)`` over the devices of one process.  The defaults
  are those of one process on one device (sums and broadcasts are the identity).
"""

from __future__ import annotations

import copy
import functools
import json
from collections import OrderedDict

import numpy as np

_MAX_COMPILED = 16  # compiled model forwards kept per backend object (least recently used dropped)


class Backend:
    name = "base"
    info = None  # the adapter's :class:`~dpcore.backends.registry.BackendInfo` (static data, no framework)
    capabilities: dict = {}

    def __init__(self, device=None):
        self.device = device
        self.settings: dict = {}

    def namespace(self):
        raise NotImplementedError

    def device_type(self) -> str:
        """``"cpu"``, ``"cuda"``, ``"gpu"`` or ``"tpu"``: the kind of device this backend's arrays live on (for the
        registry's per-device capabilities), read off a placed array, so a framework's default device counts."""
        from array_api_compat import device as device_of

        dev = device_of(self.asarray(np.zeros(1)))
        name = str(getattr(dev, "type", None) or getattr(dev, "platform", None) or dev).lower()
        return next((kind for kind in ("cuda", "gpu", "tpu", "cpu") if kind in name), name)

    def asarray(self, x):
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        raise NotImplementedError

    def value_and_grad(self, f, argnums=(0,), has_aux=False, create_graph=False):
        raise NotImplementedError(f"backend {self.name!r} has no automatic differentiation")

    def jit(self, f):
        return f

    def lower(self, fn, args: tuple):
        """A :meth:`jit` function traced for ``args``, ready to compile (backends with ``quick_compile`` only)."""
        raise NotImplementedError(f"backend {self.name!r} has no separate lowering and compilation")

    def compile_lowered(self, lowered, options: dict | None = None):
        """The program of :meth:`lower`'s result, compiled with compiler ``options`` (None: the defaults)."""
        raise NotImplementedError(f"backend {self.name!r} has no separate lowering and compilation")

    def compiled(self, name: str, fn, cfg: dict, **static):
        """``fn(self, cfg, params, inputs, **static)`` as a function of ``(params, inputs)``: compiled with
        :meth:`jit` (and the registry's ``forward_jit`` options) once per (``name``, model config, ``static``
        values) where model forwards are compiled (``info.jit_forward``), else called as it is.  The last 16
        compiled functions of this backend object are kept (each traces once per input shape)."""
        info = self.info
        if info is None or not info.jit_forward:
            return functools.partial(fn, self, cfg, **static)
        key = (name, json.dumps(cfg, sort_keys=True, default=repr), tuple(sorted(static.items())))
        cache = self.__dict__.setdefault("_compiled_forwards", OrderedDict())
        compiled = cache.pop(key, None)
        if compiled is None:
            options = info.forward_jit
            if info.kernel_forward_jit is not None and self.table_kernel(cfg):
                options = info.kernel_forward_jit
            compiled = self.jit(functools.partial(fn, self, copy.deepcopy(cfg), **static), **options)
        cache[key] = compiled
        while len(cache) > _MAX_COMPILED:
            cache.popitem(last=False)
        return compiled

    def table_kernel(self, cfg: dict) -> bool:
        """A model config's compressed tables run this backend's fused kernel (:func:`dpcore.xp.kernel`)."""
        from dpcore.xp import kernel

        fused = kernel(self.namespace(), "tabulated_contraction")
        return bool(cfg["descriptor"].get("compress")) and fused is not None

    def slot_trim(self, cfg: dict):
        """The :class:`~dpcore.slot_trim.SlotTrim` of a model config's descriptor on this backend, kept per
        descriptor config (where forwards are compiled, its widths only grow, so frame after frame reuses one
        compiled forward)."""
        from dpcore.slot_trim import SlotTrim

        key = json.dumps(cfg["descriptor"], sort_keys=True, default=repr)
        trims = self.__dict__.setdefault("_slot_trims", {})
        if key not in trims:
            info = self.info
            # a fused table kernel runs slot by slot: no shared inputs for it
            share = bool(info is not None and info.xla_forward and not self.table_kernel(cfg))
            trims[key] = SlotTrim(cfg["descriptor"], bool(info is not None and info.jit_forward), share_tables=share)
        return trims[key]

    def tree_asarray(self, tree):
        """Convert a nested dict/list of NumPy arrays (None and Python scalars kept) to framework arrays."""
        from .tree import tree_map

        return tree_map(lambda x: self.asarray(np.asarray(x)) if isinstance(x, (np.ndarray, np.generic)) else x, tree)

    def forward_inputs(self, tree):
        """The NumPy inputs of a model forward (:meth:`model_forward`, :meth:`compiled` functions) as that forward
        takes them: framework arrays (:meth:`tree_asarray`) unless the backend says otherwise."""
        return self.tree_asarray(tree)

    def tree_to_numpy(self, tree):
        """Convert every framework array of a nested dict/list to NumPy (None and Python scalars kept)."""
        from .tree import tree_map

        return tree_map(lambda x: x if x is None or isinstance(x, (int, float, bool, str)) else self.to_numpy(x), tree)

    def model_forward(self, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False, force_mode: str = "analytic",
                      create_graph: bool = False):
        """Energy-model outputs (SPEC 6.5); ``force_mode`` "analytic" (core backward) or "autodiff".

        ``create_graph``: autodiff forces stay differentiable (for a force loss); the analytic path always is.
        """
        if force_mode not in ("analytic", "autodiff"):
            raise ValueError(f"force_mode must be 'analytic' or 'autodiff', got {force_mode!r}")
        return self.compiled("energy", _energy_forward, cfg, blocks=blocks, atomic_virial=atomic_virial,
                             force_mode=force_mode, create_graph=create_graph)(params, inputs)

    # -- data-parallel training (defaults: one process, one device) -------------------------------------------
    def init_process_group(self) -> tuple[int, int, bool]:
        """Join the launcher's process group: ``(rank, world_size, created_here)``."""
        raise NotImplementedError(f"backend {self.name!r} cannot train data-parallel across processes")

    def close_process_group(self) -> None:
        """Leave the process group made by :meth:`init_process_group` (its ``created_here`` was true)."""

    def all_reduce_sum(self, tree):
        """Element-wise sum over the processes of a nested dict/list of arrays (every process gets it)."""
        return tree

    def broadcast(self, tree, root: int = 0):
        """``tree`` as held by process ``root`` (same structure, shapes and dtypes on every process)."""
        return tree

    def local_mesh(self, n: int):
        """Data parallelism over ``n`` devices of this process: ``(shard(tree, nf), replicate(tree))``, which
        place NumPy trees with the leading (frame) axis of length ``nf`` split over the devices, and
        replicated on every device."""
        raise NotImplementedError(f"backend {self.name!r} cannot train data-parallel over several devices")


def _energy_forward(backend, cfg, params, inputs, blocks=None, atomic_virial=False, force_mode="analytic",
                    create_graph=False):
    from dpcore.model import energy

    if force_mode == "analytic":
        return energy.forward(cfg, params, inputs, blocks, atomic_virial=atomic_virial)
    vg = functools.partial(backend.value_and_grad, create_graph=create_graph)
    return energy.forward_autodiff(cfg, params, inputs, vg, blocks, atomic_virial=atomic_virial)
