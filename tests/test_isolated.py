"""Run each (framework test module, backend) pair in its own Python process (backend isolation: paddle
segfaults when imported after tensorflow).  The modules of tests/isolated/ declare their backends
(``BACKENDS = (...)``, see tests/helpers/isolation.py); a process imports only the framework it tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.isolation import ENV, declared_backends

HERE = Path(__file__).parent
PAIRS = [(p.name, backend) for p in sorted((HERE / "isolated").glob("test_*.py")) for backend in declared_backends(p)]


@pytest.mark.parametrize("module, backend", [pytest.param(m, b, id=f"{m}-{b}") for m, b in PAIRS])
def test_isolated(module, backend):
    env = dict(os.environ, DPCORE_ISOLATED="1", **{ENV: backend})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           str(HERE / "isolated" / module)], env=env, capture_output=True, text=True, cwd=HERE.parent)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"{module} on {backend} failed in its own process (exit {proc.returncode}):\n{tail}"
