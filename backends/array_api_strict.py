"""array-api-strict backend: the core run on the minimal standard namespace (no autodiff, no jit).

It proves that ``dpcore/`` uses only the standard: any NumPy-ism in the core fails here.
``device``: an ``array_api_strict.Device`` or its name (``"CPU_DEVICE"``, ``"device1"``, ...).
"""

from __future__ import annotations

import array_api_strict
import numpy as np

from .base import Backend
from .registry import info as backend_info

_StrictArray = type(array_api_strict.asarray(0.0))  # the array class (not exported by the package)


def _as_device(device):
    if device is None or isinstance(device, array_api_strict.Device):
        return device
    return array_api_strict.Device(str(device))


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"
    info = backend_info("array_api_strict")
    capabilities = info.capabilities

    def __init__(self, device=None):
        super().__init__(_as_device(device))
        self.settings = {"array_api_strict_flags": dict(array_api_strict.get_array_api_strict_flags())}

    def namespace(self):
        return array_api_strict

    def asarray(self, x):
        if isinstance(x, _StrictArray):
            return x if self.device is None else x.to_device(self.device)
        return array_api_strict.asarray(np.asarray(x), device=self.device)

    def to_numpy(self, x):
        if isinstance(x, _StrictArray):
            return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
        return np.asarray(x)


BACKEND_CLASS = ArrayApiStrictBackend
