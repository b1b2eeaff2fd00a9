"""DeePMD-kit 3.2.0 in its own virtualenv, for the interoperability tests.

Made by ``bash .ci/deepmd_venv.sh`` (CI runs it before the tests); location ``$DPCORE_DPKIT_VENV``, default
``.dpkit-venv/`` in the repository.  Tests that need it are marked :data:`requires_deepmd_kit` and skip
only where the venv was not made (a developer's machine), never in CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(os.environ.get("DPCORE_DPKIT_VENV", ROOT / ".dpkit-venv"))
PYTHON = VENV / "bin" / "python"
DP = VENV / "bin" / "dp"

requires_deepmd_kit = pytest.mark.skipif(
    not PYTHON.exists(), reason=f"no DeePMD-kit venv at {VENV}: make it with `bash .ci/deepmd_venv.sh`")


def env() -> dict:
    """Environment of a DeePMD-kit process: this project's paths removed, framework logs quiet."""
    out = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return out


def run(args, cwd=None, timeout=900) -> subprocess.CompletedProcess:
    """Run a DeePMD-kit command (``["dp", ...]`` or ``["python", ...]`` resolved in the venv)."""
    exe = {"dp": str(DP), "python": str(PYTHON)}.get(args[0], args[0])
    return subprocess.run([exe, *map(str, args[1:])], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)
