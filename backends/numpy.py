"""NumPy backend: the complete reference (analytic forces and virials, no autodiff)."""

from __future__ import annotations

import array_api_compat.numpy as xnp
import numpy as np

from .base import Backend
from .registry import info as backend_info
from .table_kernel import TableKernel, register


class NumpyBackend(Backend):
    name = "numpy"
    info = backend_info("numpy")
    capabilities = info.capabilities

    def __init__(self, device=None):
        super().__init__(device)
        # compressed models: the fused kernel where Numba is installed (backends/table_kernel.py)
        self.settings["table_kernel"] = register("numpy", TableKernel())

    def namespace(self):
        return xnp

    def asarray(self, x):
        return np.asarray(x)

    def to_numpy(self, x):
        return np.asarray(x)


BACKEND_CLASS = NumpyBackend
