"""Backend adapters, selected by name: ``get_backend("torch")``.

Each adapter module is imported only when asked for, so ``import dpcore`` never
imports a framework.  A backend whose framework is missing raises an
ImportError that names the pip extra to install; frameworks are imported through
:func:`~dpcore.backends.frameworks.load_framework` (quiet, and refused where the
import would crash the process).
"""

from __future__ import annotations

import importlib

from . import heap, nlist_kernel, threads
from .frameworks import FrameworkConflictError, load_framework
from .registry import ALIASES, BACKENDS, BackendInfo, canonical_name, info, training_backends

__all__ = ["ALIASES", "BACKENDS", "BackendInfo", "FrameworkConflictError", "canonical_name", "get_backend", "info",
           "load_framework", "training_backends"]
_CACHE: dict = {}


def get_backend(name: str, device=None):
    """The adapter object of backend ``name`` on ``device`` (imports its framework on first use).

    Backend objects are created once per (name, device); creating one applies the backend's
    numerical settings (e.g. JAX x64), the process's thread plan (:mod:`dpcore.backends.threads`) and its heap
    policy (:mod:`dpcore.backends.heap`), recorded in ``backend.settings``.
    """
    key = canonical_name(name)
    if (key, device) not in _CACHE:
        framework, extra = BACKENDS[key].framework, BACKENDS[key].extra
        held = heap.apply()  # before the framework's threads take their arenas
        try:
            load_framework(key)
        except ImportError as e:
            hint = f'pip install "dpcore[{extra}]"' if extra else "pip install numpy"
            raise ImportError(f"backend {key!r} needs the {framework!r} package, which is not installed: {hint}") from e
        applied = threads.apply(framework)  # before the adapter's first computation (XLA reads its flags then)
        module = importlib.import_module(f"dpcore.backends.{key}")
        backend = module.BACKEND_CLASS(device)
        backend.settings["nlist_kernel"] = nlist_kernel.register()  # the host's neighbour rows, for every backend
        backend.settings.update(applied)
        backend.settings.update(held)
        _CACHE[(key, device)] = backend
    return _CACHE[(key, device)]
