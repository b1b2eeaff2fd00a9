"""PyTorch backend: array-api-compat's torch namespace, ``torch.autograd`` gradients, device placement.

Numerical settings applied when the backend object is created (recorded in ``settings``): TF32 off for
CUDA matmuls and cuDNN, ``torch.set_float32_matmul_precision("highest")``, so float32 results agree
with the other backends to ~1e-5.

``jit`` is the identity unless ``DPCORE_TORCH_COMPILE=1`` is set when the backend is created, then it
is ``torch.compile``.  Measured on CPU (1 thread, water-sized 192 atoms, sel [46, 92], fitting 3x240):
compiled ``model_forward`` 78 ms vs 128 ms eager, same numbers (1e-15), but 53 s of compilation, and
again for every new input shape; a compiled ``value_and_grad`` training step also works (60 s compile,
1.6x faster steady).  Worth it only for long runs of fixed shapes, so it is opt-in.

Data-parallel training (docs/distributed.md): ``init_process_group`` joins torchrun's process group
(``env://``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) with the registry's transport for the
device type (gloo on CPU, nccl on CUDA); ``all_reduce_sum`` flattens a tree into one buffer per dtype and sums
it with one ``torch.distributed.all_reduce`` (every rank receives the same bits), ``broadcast`` likewise.
"""

from __future__ import annotations

import functools
import os

import array_api_compat.torch as xtorch
import numpy as np
import torch

from .base import Backend
from .registry import info as backend_info
from .table_kernel import TableKernel, register as register_table_kernel
from .tree import leaves, tree_map


def _leaves(tree):
    """The tensors among the leaves of a nested dict/list/tuple."""
    return [x for x in leaves(tree) if isinstance(x, torch.Tensor)]


def _map_tensors(fn, tree):
    """Apply ``fn`` to every tensor of a nested dict/list/tuple (other leaves kept)."""
    return tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x, tree)


def _as_differentiable(x, create_graph: bool):
    """The leaf that the gradient is taken with respect to (JAX semantics: only paths through the argument)."""
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"value_and_grad: cannot differentiate with respect to a {x.dtype} array (floating point only)")
    if create_graph and x.requires_grad:
        return x.clone()  # a new node, still connected to the outer graph for a second differentiation
    return x.detach().requires_grad_(True)


def _kernel_usable(*tensors) -> bool:
    grad = torch.is_grad_enabled()
    return all(t.device.type == "cpu" and not (grad and t.requires_grad) for t in tensors)


class TorchBackend(Backend):
    name = "torch"
    info = backend_info("torch")
    capabilities = info.capabilities

    def __init__(self, device=None):
        super().__init__(torch.device("cpu" if device is None else device))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"torch backend: device {str(self.device)!r} requested but CUDA is not available")
        self.compile = os.environ.get("DPCORE_TORCH_COMPILE", "0").lower() in ("1", "true", "yes")
        # Large CPU tensors on 2 MB pages, as NumPy does by default: with 4 KB pages every fresh multi-MB tensor
        # of a model call page-faults page by page (half the CPU time at 2,000 atoms, the slow-down of large
        # systems; benchmarks/README.md, "Scale"). torch reads it at its first large allocation; a user's value wins.
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        self.settings = {
            "torch_version": torch.__version__,
            "device": str(self.device),
            "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "jit": "torch.compile" if self.compile else "identity (set DPCORE_TORCH_COMPILE=1 for torch.compile)",
            "THP_MEM_ALLOC_ENABLE": os.environ["THP_MEM_ALLOC_ENABLE"],
            # compressed models: the fused kernel on CPU tensors outside autograd (backends/table_kernel.py)
            # (outputs copied into torch's own 64-byte aligned memory: MKL's products round by the alignment)
            "table_kernel": register_table_kernel("torch", TableKernel(_kernel_usable, lambda t: t.detach().numpy(),
                                                                       lambda a, like: torch.from_numpy(a).clone())),
        }

    def namespace(self):
        return xtorch

    def asarray(self, x):
        if isinstance(x, torch.Tensor):  # never detached (torch.asarray would detach)
            return x if x.device == self.device else x.to(self.device)
        x = np.asarray(x)
        return torch.from_numpy(np.require(x, requirements=["C", "W"])).to(self.device)

    def to_numpy(self, x):
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def jit(self, f):
        return torch.compile(f) if self.compile else f

    def value_and_grad(self, f, argnums=(0,), has_aux=False, create_graph=False):
        """``g(*args) -> (value, grads)`` by ``torch.autograd.grad``; grads mirror each argument's pytree.

        Without ``create_graph`` the arguments are differentiated as detached copies and the value,
        aux and grads are returned detached; with it, arguments already in a graph stay connected and
        the grads can be differentiated again (double backward).
        """
        single = isinstance(argnums, int)
        nums = (argnums,) if single else tuple(argnums)

        def g(*args):
            args = list(args)
            for i in nums:
                args[i] = _map_tensors(lambda x: _as_differentiable(x, create_graph), args[i])
            with torch.enable_grad():
                out = f(*args)
                value, aux = out if has_aux else (out, None)
                flat = [x for i in nums for x in _leaves(args[i])]
                grads = torch.autograd.grad(value, flat, create_graph=create_graph, allow_unused=True)
            grads = [torch.zeros_like(x) if gx is None else gx for x, gx in zip(flat, grads)]
            it = iter(grads)
            trees = tuple(_map_tensors(lambda _: next(it), args[i]) for i in nums)
            if not create_graph:
                value, aux = value.detach(), _map_tensors(torch.Tensor.detach, aux)
            result = trees[0] if single else trees
            return ((value, aux), result) if has_aux else (value, result)

        return g

    def model_forward(self, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False, force_mode: str = "analytic",
                      create_graph: bool = False):
        """As :meth:`Backend.model_forward`; the autodiff forces keep their graph (``create_graph``) when a
        parameter or input requires grad, so a loss on them can be differentiated w.r.t. the parameters."""
        if force_mode == "autodiff" and torch.is_grad_enabled() and (create_graph or any(
                x.requires_grad for x in _leaves((params, inputs)))):
            from dpcore.model import energy

            vg = functools.partial(self.value_and_grad, create_graph=True)
            return energy.forward_autodiff(cfg, params, inputs, vg, blocks, atomic_virial=atomic_virial)
        return super().model_forward(cfg, params, inputs, blocks, atomic_virial=atomic_virial, force_mode=force_mode)

    # -- data-parallel training ------------------------------------------------------------------------------
    def init_process_group(self):
        import torch.distributed as dist

        created = not dist.is_initialized()
        if created:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(self.info.data_parallel["processes"]["transport"].get(self.device.type, "gloo"))
        return dist.get_rank(), dist.get_world_size(), created

    def close_process_group(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def _collective(self, tree, op):
        """``op(buffer)`` on one flat buffer per dtype holding every tensor of ``tree``; the tree rebuilt."""
        flat = _leaves(tree)
        out = list(flat)
        for dtype in sorted({x.dtype for x in flat}, key=str):
            idx = [i for i, x in enumerate(flat) if x.dtype == dtype]
            buf = torch.cat([flat[i].detach().reshape(-1) for i in idx])
            op(buf)
            for i, part in zip(idx, torch.split(buf, [flat[i].numel() for i in idx])):
                out[i] = part.reshape(flat[i].shape)
        it = iter(out)
        return _map_tensors(lambda _: next(it), tree)

    def all_reduce_sum(self, tree):
        import torch.distributed as dist

        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return tree
        return self._collective(tree, lambda buf: dist.all_reduce(buf, op=dist.ReduceOp.SUM))

    def broadcast(self, tree, root: int = 0):
        import torch.distributed as dist

        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return tree
        return self._collective(tree, lambda buf: dist.broadcast(buf, src=root))


BACKEND_CLASS = TorchBackend
