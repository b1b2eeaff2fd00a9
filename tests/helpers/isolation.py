"""One framework per process for tests/isolated/ (paddle segfaults when imported after tensorflow).

Every module of tests/isolated/ declares the backends it runs on as a literal tuple, ``BACKENDS = (...)``, which
:func:`declared_backends` reads without importing the module (so without importing any framework).
tests/test_isolated.py runs each (module, backend) pair in its own Python process with
``DPCORE_ISOLATED=1 DPCORE_TEST_BACKEND=<backend>``; the module learns its backend from
:func:`backend_under_test` and imports only that framework (:func:`import_framework`).  A test that belongs to
some of the module's backends only is marked ``@pytest.mark.backends("torch", ...)``; tests/isolated/conftest.py
deselects it on the others (deselected, never skipped).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ENV = "DPCORE_TEST_BACKEND"
FRAMEWORKS = {"jax": "jax", "paddle": "paddle", "tensorflow": "tensorflow", "torch": "torch"}  # backend: module


def declared_backends(path) -> tuple[str, ...]:
    """The ``BACKENDS`` tuple of an isolated test module, read from its source (every name a known backend)."""
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "BACKENDS" for t in node.targets):
            backends = tuple(ast.literal_eval(node.value))
            unknown = [b for b in backends if b not in FRAMEWORKS]
            if not backends or unknown:
                raise ValueError(f"{path}: BACKENDS {backends!r}: expected a non-empty tuple of {sorted(FRAMEWORKS)}")
            return backends
    raise ValueError(f"{path}: an isolated test module must declare BACKENDS = (...) (tests/helpers/isolation.py)")


def backend_under_test(backends: tuple[str, ...]) -> str:
    """The backend of this process: ``$DPCORE_TEST_BACKEND``, or the module's only backend when unset."""
    chosen = os.environ.get(ENV)
    if chosen is None and len(backends) == 1:
        return backends[0]
    if chosen not in backends:
        raise pytest.UsageError(f"this module runs on one of {backends} per process: set {ENV} to one of them "
                                f"(got {chosen!r}); python -m pytest tests/test_isolated.py runs every pair")
    return chosen


def import_framework(backend: str):
    """Import the framework of ``backend`` (quietly for TensorFlow); a missing framework skips the module."""
    if backend == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return pytest.importorskip(FRAMEWORKS[backend])
