"""Run each framework's test module in its own Python process (backend isolation, see tests/conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MODULES = sorted(p.name for p in (HERE / "isolated").glob("test_*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_isolated(module):
    env = dict(os.environ, DPCORE_ISOLATED="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           str(HERE / "isolated" / module)], env=env, capture_output=True, text=True, cwd=HERE.parent)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"{module} failed in its own process (exit {proc.returncode}):\n{tail}"
