"""``dpcore train`` on the command line: usage errors (exit 2, no traceback) and a restart on another backend
(torch trains, jax continues from its checkpoint; each in its own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpcore.train import checkpoint as ck
from helpers.train import make_case, max_rel_diff

ROOT = Path(__file__).resolve().parents[1]
# torch -> jax restart after 4 of 8 steps: both run the same float64 math; only summation order differs
RESTART_TOL = {"params": 1e-10, "adam_m": 1e-8}


# ------------------------------------------------------------------------------------------ CLI
def _cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "DPCORE_ISOLATED"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "dpcore.cli", "train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--backend", "numpy"], "'numpy' has no automatic differentiation and cannot train"),
    (["--backend", "jaxx"],
     "unknown backend 'jaxx' (did you mean 'jax'?); choose one of torch, jax, tensorflow, paddle"),
    (["--restat", "x"], "unrecognized option '--restat'; did you mean '--restart'?"),
    (["--restart", "nowhere/model.ckpt"], "--restart: checkpoint 'nowhere/model.ckpt' not found"),
    (["--init-model", "missing.dp"], "init-model 'missing.dp' not found"),
])
def test_cli_errors(tmp_path, args, message):
    (tmp_path / "input.json").write_text(json.dumps(make_case(tmp_path / "data")))
    proc = _cli("input.json", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_input(tmp_path):
    proc = _cli("nothere.json", cwd=tmp_path)
    assert proc.returncode == 2 and "input file 'nothere.json' not found" in proc.stderr


def test_cli_restart_on_another_backend(tmp_path):
    """torch trains 8 steps (checkpoints at 4 and 8); jax restarts from torch's step-4 checkpoint in a copy of
    the folder and continues the same learning curve: lcurve.out identical, final parameters within 1e-10."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    import shutil

    cfg = make_case(tmp_path / "data", sel=[24, 24])
    run = tmp_path / "torch"
    run.mkdir()
    (run / "input.json").write_text(json.dumps(cfg))
    proc = _cli("input.json", "--backend", "torch", cwd=run)
    assert proc.returncode == 0, proc.stderr
    assert (run / "out.json").exists() and (run / "model.ckpt-4.npz").exists()
    cont = tmp_path / "jax"
    shutil.copytree(run, cont)
    proc = _cli("input.json", "--backend", "jax", "--restart", "model.ckpt-4.npz", cwd=cont)
    assert proc.returncode == 0, proc.stderr
    assert (cont / "lcurve.out").read_text() == (run / "lcurve.out").read_text()
    a = ck.load_checkpoint(run / "model.ckpt-8.npz")
    b = ck.load_checkpoint(cont / "model.ckpt-8.npz")
    assert b["backend"] == "jax" and a["backend"] == "torch"
    assert max_rel_diff(b["params"], a["params"]) < RESTART_TOL["params"]
    assert max_rel_diff(b["optimizer"]["m"], a["optimizer"]["m"]) < RESTART_TOL["adam_m"]
