"""The shipped physics checks as a tool: ``dpcore conformance --physics`` (one process per backend), the Python
API's errors and records, and the hygiene of dpcore.conformance (no framework import, no import cycle, small
modules).  The physics itself is tested in tests/test_physics.py."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_model

from dpcore.conformance import checks
from dpcore.conformance.checks_base import CheckResult, rel_error
from dpcore.conformance.physics import PHYSICS_CASES, physics_cases, to_markdown

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "jax", "tensorflow", "paddle", "array_api_strict")


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dpcore.cli", "conformance", *args], capture_output=True, text=True,
                          env=env)


# ------------------------------------------------------------------------------------------------ the command
def test_physics_command_on_numpy_and_torch(tmp_path):
    """The catalogue subset on NumPy and on torch (autodiff rows too), each in its own process."""
    proc = cli("--physics", "--backends", "numpy,torch", "--json", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["passed"] and report["backends"] == ["numpy", "torch"]
    assert [c["name"] for c in report["cases"]] == list(PHYSICS_CASES)
    assert "Load average (1, 5, 15 min)" in proc.stdout and "| numpy | torch | result |" in proc.stdout
    for line in ("| two_side | finite_differences | force | 1e-08 |", "| spin | finite_differences | force_mag |",
                 "| spin | supercell | energy / 8 |", "| two_side | smoothness | energy (rcut ± 1e-12 Å) |"):
        assert line in proc.stdout, line
    torch_rows = {(r["model"], r["name"], r["output"]) for r in report["processes"]["torch"]["results"]}
    numpy_rows = {(r["model"], r["name"], r["output"]) for r in report["processes"]["numpy"]["results"]}
    assert ("spin", "finite_differences", "force_mag [autodiff]") in torch_rows - numpy_rows
    assert numpy_rows < torch_rows
    assert {r["system"] for r in report["processes"]["numpy"]["results"]} == {
        s for systems in PHYSICS_CASES.values() for s in systems} | {"3-atom cluster"}
    assert "[numpy] physics checks started" in proc.stderr


def test_physics_command_on_a_model_file(tmp_path):
    path = tmp_path / "mine.yaml"
    make_model().save(path)
    proc = cli("--physics", "--backends", "np", "--model", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Models: mine." in proc.stdout
    for system in ("pbc_triclinic", "small_box", "cluster"):
        assert any(c["name"] == "mine" and system in c["systems"] for c in physics_cases(model_file=path))


def test_physics_command_fails_when_a_backend_crashes(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("import os\nos.abort()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = cli("--physics", "--backends", "numpy,torch", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "dpcore conformance --physics: FAIL" in proc.stdout
    assert "- torch / (backend):" in proc.stdout and "SIGABRT" in proc.stdout


def test_physics_command_argument_errors(tmp_path):
    proc = cli("--physics", "--backends", "numpy,nosuch")
    assert proc.returncode == 2 and "nosuch" in proc.stderr
    proc = cli("--physics", "--model", str(tmp_path / "missing.dp"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_physics_table_marks_failures():
    bad = CheckResult("rotation", "force", 3e-9, 1e-11, False, "torch", "small_box", "float64", "")
    ok = CheckResult("rotation", "force", 1e-15, 1e-11, True, "numpy", "small_box", "float64", "")
    report = {"passed": False, "backends": ["numpy", "torch"], "cases": [{"name": "m"}], "cpus": 2, "seconds": 1.0,
              "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.5, 1.0, 1.0]},
              "processes": {b: {"results": [{"model": "m", **r.to_dict()}], "errors": {}, "exit": "exit code 0",
                                "exit_code": 0, "seconds": 1.0, "load": [1.5]} for b, r in (("numpy", ok), ("torch", bad))}}
    md = to_markdown(report)
    assert "| m | rotation | force | 1e-11 | 1.0e-15 | **3.0e-09** | **FAIL** |" in md
    assert "- torch / m / rotation / force / small_box: error 3.00e-09 > tol 1e-11" in md
    assert "1.0 1.0 1.0 at start, 1.5 1.0 1.0 at the end (2 CPUs)" in md


# ------------------------------------------------------------------------------------------------ the Python API
def test_results_are_records():
    results = checks.check_rotation(make_model(), "cluster")
    assert all(isinstance(r, CheckResult) and r.backend == "numpy" and r.system == "cluster" for r in results)
    json.dumps([r.to_dict() for r in results])
    table = checks.format_table(results)
    assert table.count("| rotation |") == len(results) and "**FAIL**" not in table
    checks.assert_passed(results)
    assert checks.failures(results) == []


def test_api_errors():
    model = make_model()
    with pytest.raises(ValueError, match="unknown check"):
        checks.run_checks(model, checks=["rotation", "chirality"])
    with pytest.raises(ValueError, match="unknown system"):
        checks.check_rotation(model, "moon")
    with pytest.raises(ValueError, match="needs a periodic system"):
        checks.check_supercell(model, "cluster")
    with pytest.raises(TypeError, match="expected a model"):
        checks.check_rotation(42, "cluster")
    with pytest.raises(ValueError, match="spin"):
        from dpcore.conformance.cases import build_model, model_spec

        spin = build_model(model_spec("spin"))
        checks.check_rotation(spin, {"coord": np.zeros((1, 2, 3)), "atype": np.array([0, 1]), "box": None})


def test_error_measure():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0, 2.5], [1.0, 2.0]) == pytest.approx(0.25)
    assert rel_error([0.0, 1e-300], [0.0, 0.0]) == float("inf")
    assert rel_error([np.nan, 0.0], [1.0, 1.0]) == float("inf")


def test_finite_differences_on_a_subset_of_atoms_and_a_model_section():
    from dpcore.conformance.cases import model_config

    section = model_config("two_side")  # a model section: a fresh model (seed 1)
    results = checks.check_finite_differences(section, "cluster", atoms=[0, 3])
    checks.assert_passed(results)
    assert "2 atoms" in results[0].detail


# ------------------------------------------------------------------------------------------------ hygiene
def test_checks_import_no_framework():
    code = ("import sys, dpcore.conformance.checks, dpcore.conformance.physics; "
            f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_conformance_modules_are_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "conformance").glob("*.py")}
    assert max(sizes.values()) <= 400, sizes
