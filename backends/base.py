"""The adapter contract shared by every backend."""

from __future__ import annotations

import numpy as np


class Backend:
    """A backend: array namespace, NumPy conversion, device placement, gradients, jit, capabilities.

    Subclasses set ``name`` and implement :meth:`asarray` / :meth:`to_numpy`; autodiff backends
    add ``value_and_grad``.  ``capabilities`` is data (documented support table).
    """

    name = "base"
    capabilities: dict = {}

    def __init__(self, device=None):
        self.device = device

    def namespace(self):
        raise NotImplementedError

    def asarray(self, x):
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        raise NotImplementedError

    def tree_asarray(self, tree):
        """Convert a nested dict/list of NumPy arrays (None and Python scalars kept) to framework arrays."""
        if isinstance(tree, dict):
            return {k: self.tree_asarray(v) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.tree_asarray(v) for v in tree)
        if isinstance(tree, np.ndarray):
            return self.asarray(tree)
        return tree

    def tree_to_numpy(self, tree):
        if isinstance(tree, dict):
            return {k: self.tree_to_numpy(v) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.tree_to_numpy(v) for v in tree)
        if tree is None or isinstance(tree, (int, float, bool, str)):
            return tree
        return self.to_numpy(tree)

    def model_forward(self, cfg, params, inputs, blocks=None, *, atomic_virial: bool = False):
        """Energy-model outputs (SPEC 6.5) with the core's analytic derivatives."""
        from dpcore.model import energy

        return energy.forward(cfg, params, inputs, blocks, atomic_virial=atomic_virial)
