"""Backend selection for the framework tests: one backend per process (tests/helpers/isolation.py).

With ``DPCORE_TEST_BACKEND`` set, only the modules declaring that backend are collected from this folder, and
tests marked ``@pytest.mark.backends(...)`` for other backends are deselected.  Without it, give one module file
(a single-backend module runs its backend; a multi-backend one asks for the variable).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.isolation import ENV, declared_backends


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run this test only on these backends of its module")


def pytest_ignore_collect(collection_path, config):
    """Which modules of this folder to collect (called for every file of the folder not named on the command line)."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return chosen not in declared_backends(collection_path)
    requested = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    if any(r.is_dir() and r in collection_path.resolve().parents for r in requested):
        raise pytest.UsageError(f"tests/isolated/ runs one backend per process: set {ENV} (or name one module file); "
                                "python -m pytest tests/test_isolated.py runs every (module, backend) pair")
    return True  # a sibling of the module named on the command line


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        backend = getattr(item.module, "BACKEND", None)
        if marker is not None and not set(marker.args) <= set(item.module.BACKENDS):
            raise pytest.UsageError(f"{item.nodeid}: backends{marker.args} not all in BACKENDS {item.module.BACKENDS}")
        (drop if marker is not None and backend not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
