"""Comparisons of nested outputs and parameter gradients between two computations of the same numbers."""

import numpy as np


def flat(tree, prefix=""):
    """``{"/a/b": array}`` of a nested dict of arrays (NumPy float64)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}/{key}").items()}
    return {prefix: np.asarray(tree, dtype=np.float64)}


def assert_close(got: dict, ref: dict, tol: float):
    """Same keys, and every array within ``tol`` of the largest |value| of its reference."""
    assert set(got) == set(ref)
    for key, want in ref.items():
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
        assert float(np.abs(got[key] - want).max(initial=0.0)) <= tol * scale, key
