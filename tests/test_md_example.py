"""examples/md runs end to end (short runs on a small fresh model): NVE + NVT with trajectories, energies,
summary and plot; the spin snippet prints magnetic forces; the benchmark table has a row per backend."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ase")

import dpcore  # noqa: E402

MD_DIR = Path(__file__).resolve().parent.parent / "examples" / "md"
DESCRIPTOR = {"type": "se_e2_a", "sel": [30, 30], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4}


def example(name):
    """The module examples/md/<name>.py (the folder on sys.path, as when run as a script)."""
    sys.path.insert(0, str(MD_DIR))
    try:
        spec = importlib.util.spec_from_file_location(f"md_example_{name}", MD_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(MD_DIR))
    return module


def model_file(tmp_path, type_map, spin=None) -> Path:
    section = {"type_map": type_map, "descriptor": dict(DESCRIPTOR), "fitting_net": {"neuron": [8, 8]}}
    if spin:
        section["spin"] = spin
    path = tmp_path / ("spin.dp" if spin else "model.dp")
    dpcore.model_from_config(section, seed=1).save(path)
    return path


def test_md_example_writes_trajectories_energies_and_summary(tmp_path, capsys):
    md = example("md")
    out = tmp_path / "run"
    summary = md.main(["--model", str(model_file(tmp_path, ["Cu", "Au"])), "--steps", "20", "--repeat", "2",
                       "--traj-every", "5", "--out", str(out)])
    text = capsys.readouterr().out
    assert "NVE: 20 steps" in text and "eV/atom/ps" in text and "NVT: 20 steps" in text
    for name in ("nve", "nvt"):
        records = np.loadtxt(out / f"{name}.csv", delimiter=",")
        assert records.shape == (21, 5)  # step 0 and 20 steps: time, epot, ekin, etot, T
        np.testing.assert_allclose(records[:, 3], records[:, 1] + records[:, 2])
        from ase.io import read

        assert len(read(out / f"{name}.traj", index=":")) == 5  # steps 0, 5, 10, 15, 20
    assert json.loads((out / "summary.json").read_text())["nve"]["drift_eV_per_atom_ps"] == \
        summary["nve"]["drift_eV_per_atom_ps"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
    else:
        assert (out / "energies.png").stat().st_size > 0


def test_drift_is_the_slope_of_the_total_energy_per_atom():
    md = example("md")
    t_fs = np.arange(0.0, 1001.0, 2.0)
    records = np.column_stack([t_fs, 0 * t_fs, 0 * t_fs, 10.0 + 0.004 * t_fs * 1e-3 * 4, 0 * t_fs])  # 4 atoms
    assert md.drift_per_atom_ps(records, natoms=4) == pytest.approx(0.004)


def test_spin_example_prints_magnetic_forces(tmp_path, capsys):
    spin = example("spin")
    path = model_file(tmp_path, ["Fe", "Al"], spin={"use_spin": [True, False], "virtual_scale": [0.2]})
    spin.main(["--model", str(path), "--steps", "5"])
    text = capsys.readouterr().out
    assert "magnetic force -dE/ds (eV/μB)" in text and "NVE at fixed spins: 5 steps" in text
    assert sum(line.split()[1:2] == ["Fe"] for line in text.splitlines()) == 8


def test_bench_table_has_a_row_per_backend(tmp_path, capsys):
    bench = example("bench")
    bench.main(["--backends", "numpy", "--steps", "3", "--eval-calls", "2", "--out", str(tmp_path),
                "--model", str(model_file(tmp_path, ["Cu", "Au"]))])
    text = capsys.readouterr().out
    assert "| numpy |" in text and "load average" in text
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["backend"] for r in rows] == ["numpy"] and rows[0]["steps"] == 3
