"""Thread settings decided by dpcore (backends/threads.py): the rules, the errors, and what reaches the frameworks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dpcore.backends import threads

CLEAN = {k: v for k, v in os.environ.items()
         if k not in (threads.ENV_INTRA, threads.ENV_INTER, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                      "NPROC")}


def _run(code: str, **env) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter with a clean thread environment."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**CLEAN, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_explicit_request_wins_over_environment(monkeypatch):
    monkeypatch.setenv(threads.ENV_INTRA, "3")
    plan = threads.decide(1)
    assert (plan.intra, plan.inter, plan.source) == (1, 1, "--threads")


@pytest.mark.parametrize("name", [threads.ENV_INTRA, "OMP_NUM_THREADS"])
def test_environment_variables(monkeypatch, name):
    for other in (threads.ENV_INTRA, "OMP_NUM_THREADS", threads.ENV_INTER):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "2")
    monkeypatch.setenv(threads.ENV_INTER, "2")
    plan = threads.decide()
    assert (plan.intra, plan.inter, plan.source) == (2, 2, name)


def test_deepmd_variable_precedes_omp(monkeypatch):
    monkeypatch.setenv(threads.ENV_INTRA, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.decide().source == threads.ENV_INTRA


def test_auto_counts_idle_usable_cores(monkeypatch):
    for name in (threads.ENV_INTRA, "OMP_NUM_THREADS", threads.ENV_INTER, "LOCAL_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(threads, "idle_cores", lambda cores, sample_s=0.2: 1.4)  # a busy machine
    plan = threads.decide()
    assert (plan.intra, plan.inter) == (1, 1) and plan.source.startswith("auto: 1.4 of 4")
    monkeypatch.setattr(threads, "idle_cores", lambda cores, sample_s=0.2: 0.0)  # never fewer than one
    assert threads.decide("auto").intra == 1
    monkeypatch.setattr(threads, "idle_cores", lambda cores, sample_s=0.2: 3.7)
    assert threads.decide("AUTO").intra == 4


def test_auto_shares_idle_cores_among_local_workers(monkeypatch):
    for name in (threads.ENV_INTRA, "OMP_NUM_THREADS", threads.ENV_INTER, "SLURM_NTASKS_PER_NODE",
                 "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: list(range(8)))
    monkeypatch.setattr(threads, "idle_cores", lambda cores, sample_s=0.2: 8.0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, dpcore.train.launch
    plan = threads.decide()
    assert plan.intra == 2 and "shared by 4 processes" in plan.source
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8(x2)")
    assert threads.decide().intra == 8  # a batch script, not an srun step: one process
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "16")
    assert threads.decide().intra == 1


def test_idle_cores_is_measured():
    cores = threads.usable_cores()
    idle = threads.idle_cores(cores, sample_s=0.05)
    assert 0.0 <= idle <= len(cores) + 1e-9


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_values_name_their_source(monkeypatch, value):
    with pytest.raises(ValueError, match="--threads must be a positive integer"):
        threads.decide(value)
    monkeypatch.setenv(threads.ENV_INTRA, value)
    with pytest.raises(ValueError, match=threads.ENV_INTRA):
        threads.decide()


def test_cli_rejects_bad_threads(capsys):
    from dpcore.cli import main

    assert main(["neighbor-stat", "--threads", "zero", "-s", "nowhere", "-r", "6", "-t", "O"]) == 2
    assert "--threads must be a positive integer number of threads, got 'zero'" in capsys.readouterr().err


def test_configured_plan_reaches_torch_blas_and_children():
    out = _run("""
import json, os, subprocess, sys, torch
from threadpoolctl import threadpool_info
torch.set_num_threads(2)
from dpcore.backends import threads, get_backend
plan = threads.configure(1)
be = get_backend("torch")
child = subprocess.run([sys.executable, "-c", "from dpcore.backends import threads; print(threads.current().intra)"],
                       capture_output=True, text=True).stdout.strip()
print(json.dumps({"torch": torch.get_num_threads(), "settings": be.settings["intra_op_threads"],
                  "blas": sorted({i["num_threads"] for i in threadpool_info()}), "child": child}))
""")
    assert out == {"torch": 1, "settings": 1, "blas": [1], "child": "1"}


_XLA_POOL = """
import json, os
from dpcore.backends import get_backend
be = get_backend("jax")
total = float(be.namespace().sum(be.asarray(__import__("numpy").ones(3))))
pool = sum(open(f"/proc/self/task/{t}/comm").read().strip() == "tf_XLAEigen" for t in os.listdir("/proc/self/task"))
print(json.dumps({"flags": os.environ.get("XLA_FLAGS", ""), "intra": be.settings.get("intra_op_threads"),
                  "sum": total, "pool": pool}))
"""


def test_environment_plan_applies_to_jax_before_its_first_computation():
    """One thread means one: XLA's flags make each operation serial, and its CPU client's pool (threads named
    tf_XLAEigen, which run independent operations concurrently) has the plan's size, not one per core."""
    out = _run(_XLA_POOL, **{threads.ENV_INTRA: "1"})
    assert "--xla_cpu_multi_thread_eigen=false" in out["flags"] and out["intra"] == 1 and out["sum"] == 3.0
    assert out["pool"] == 1
    if len(threads.usable_cores()) >= 2:
        assert _run(_XLA_POOL, **{threads.ENV_INTRA: "2"})["pool"] == 2


def test_library_use_keeps_framework_settings_unless_asked():
    out = _run("""
import json, torch
torch.set_num_threads(2)
from dpcore.backends import get_backend
be = get_backend("torch")
print(json.dumps({"torch": torch.get_num_threads(), "recorded": "intra_op_threads" in be.settings}))
""")
    assert out == {"torch": 2, "recorded": False}
