"""NumPy backend: the complete reference (analytic forces and virials, no autodiff)."""

from __future__ import annotations

import array_api_compat.numpy as xnp
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    capabilities = {"autodiff": False, "jit": False, "use_default_pf": True, "devices": ["cpu"], "float32": True,
                    "float64": True}

    def namespace(self):
        return xnp

    def asarray(self, x):
        return np.asarray(x)

    def to_numpy(self, x):
        return np.asarray(x)


BACKEND_CLASS = NumpyBackend
