"""NumPy backend: the complete reference (analytic forces and virials, no autodiff)."""

from __future__ import annotations

import array_api_compat.numpy as xnp
import numpy as np

from .base import Backend
from .registry import info as backend_info


class NumpyBackend(Backend):
    name = "numpy"
    info = backend_info("numpy")
    capabilities = info.capabilities

    def namespace(self):
        return xnp

    def asarray(self, x):
        return np.asarray(x)

    def to_numpy(self, x):
        return np.asarray(x)


BACKEND_CLASS = NumpyBackend
