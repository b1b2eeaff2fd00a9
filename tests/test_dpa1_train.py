"""Training DPA-1 models (SPEC_DPA1 1, 9): ``sel: "auto"`` as one total neighbour count, a list ``sel`` (summed,
warned), the spin advice; and ``dpcore train`` on every autodiff backend (one process each) giving one identical
lcurve.out for a DPA-1 energy model and a se_atten_v2 spin model, then ``dpcore freeze`` and ``dpcore test``."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dpcore.config import normalize_config
from dpcore.data import load_systems
from dpcore.descriptor.dpa1_config import DPA1Warning
from dpcore.stat.neighbor import data_neighbor_stat
from dpcore.train import checkpoint as ck
from dpcore.train.setup import resolve_sel
from helpers.train import make_case, make_spin_case, max_rel_diff

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "jax", "tensorflow", "paddle")
PARAMS_TOL = 1e-10  # same float64 math on every backend; only summation order differs
TINY = {"type": "dpa1", "sel": "auto", "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4,
        "attn": 8, "attn_layer": 1, "tebd_dim": 4, "seed": 1}


def _quiet_normalize(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        return normalize_config(cfg)


def _brute_force_max_total(system, rcut):
    """Most neighbours of any type within rcut of one atom (wrapped positions, cell heights above rcut: the images
    of shifts -1..1 are enough)."""
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    most = 0
    for f in range(system.nframes):
        box = system.box[f].reshape(3, 3)
        heights = abs(np.linalg.det(box)) / np.linalg.norm(np.cross(box[[1, 2, 0]], box[[2, 0, 1]]), axis=1)
        assert np.all(heights > rcut)
        frac = system.coord[f].reshape(-1, 3) @ np.linalg.inv(box)
        pos = (frac - np.floor(frac)) @ box
        images = (pos[None, :, :] + (shifts @ box)[:, None, :]).reshape(-1, 3)
        d = np.linalg.norm(pos[:, None, :] - images[None, :, :], axis=-1)
        most = max(most, int(((d < rcut) & (d > 0)).sum(axis=1).max()))
    return most


@pytest.fixture(scope="module")
def tiny_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpa1_case")
    cfg = make_case(root / "data", numb_steps=3)
    cfg["model"]["descriptor"] = dict(TINY)
    return cfg


def test_auto_sel_is_one_total_count(tiny_case):
    """DeePMD-kit's update_sel with mixed_type: one int 4 * ceil(int(f * max_total) / 4), max_total over every
    type at once (not the sum of the per-type maxima); se_e2_a keeps per-type counts."""
    systems = load_systems(tiny_case["training"]["training_data"]["systems"], type_map=["O", "H"])
    most = max(_brute_force_max_total(s, 3.5) for s in systems)
    _, mixed = data_neighbor_stat(systems, 3.5, 2, mixed_types=True)
    _, per_type = data_neighbor_stat(systems, 3.5, 2)
    assert mixed.tolist() == [most] and most < per_type.sum()
    for sel, factor in (("auto", 1.1), ("auto:1.5", 1.5)):
        cfg = copy.deepcopy(tiny_case)
        cfg["model"]["descriptor"]["sel"] = sel
        out = resolve_sel(_quiet_normalize(cfg), systems)["model"]["descriptor"]["sel"]
        assert isinstance(out, int) and out == 4 * -(-int(most * factor) // 4), (sel, out, most)
    se = copy.deepcopy(tiny_case)
    se["model"]["descriptor"] = {"type": "se_e2_a", "sel": "auto", "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4]}
    assert resolve_sel(normalize_config(se), systems)["model"]["descriptor"]["sel"] == [
        4 * -(-int(m * 1.1) // 4) for m in per_type.tolist()]


def test_list_sel_is_summed_with_a_warning(tiny_case):
    """SPEC_DPA1 0.5: a list sel is summed (one capacity for all types), and the user is told that DeePMD-kit's
    dp train keeps only its first element."""
    cfg = copy.deepcopy(tiny_case)
    cfg["model"]["descriptor"]["sel"] = [12, 16]
    with pytest.warns(DPA1Warning, match=r"sum \(28\).*first element, 12\)"):
        norm = normalize_config(cfg)
    from dpcore.model.factory import model_from_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        model = model_from_config(norm["model"], seed=1)
    assert model.params["descriptor"]["davg"].shape == (2, 28, 4)
    cfg["model"]["descriptor"]["sel"] = [28]  # DeePMD-kit's stored form of an int sel (e.g. --init-model): no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DPA1Warning)
        warnings.filterwarnings("ignore", "model/descriptor: the energy", DPA1Warning)
        normalize_config(cfg)


def test_spin_auto_sel_counts_real_atoms_and_warns(tmp_path):
    """A DPA-1 spin model: sel "auto" from the real atoms (as DeePMD-kit), with the advice to raise it since the
    virtual atoms compete for the same slots (sel not doubled)."""
    cfg = make_spin_case(tmp_path / "data", numb_steps=2)
    cfg["model"]["descriptor"] = dict(TINY)
    systems = load_systems(cfg["training"]["training_data"]["systems"], type_map=["Ni", "O"])
    most = max(_brute_force_max_total(s, 3.5) for s in systems)
    with pytest.warns(DPA1Warning, match=rf"real atoms only \(up to {most} neighbours\).*sel >= {2 * most + 2}"):
        out = resolve_sel(_quiet_normalize(cfg), systems)
    assert out["model"]["descriptor"]["sel"] == 4 * -(-int(most * 1.1) // 4)


def test_example_inputs():
    """examples/water_dpa1 and examples/spin_dpa1: DeePMD-kit's settings, no DPA-1 behaviour warning (smooth
    models), and on the shared data (when present beside the repository) enough slots for every neighbour: the
    spin example's sel covers each real neighbour and its virtual/placeholder partner (2 x max + 2)."""
    from dpcore.config import load_config

    with warnings.catch_warnings():
        warnings.simplefilter("error", DPA1Warning)
        water = load_config(ROOT / "examples" / "water_dpa1" / "input.json")
        spin = load_config(ROOT / "examples" / "spin_dpa1" / "input.json")
    d = water["model"]["descriptor"]
    assert (d["type"], d["sel"], d["neuron"], d["axis_neuron"], d["attn"], d["attn_layer"], d["tebd_dim"]) == (
        "se_atten_v2", 120, [25, 50, 100], 16, 128, 2, 8)
    assert spin["model"]["descriptor"]["type"] == "dpa1" and spin["model"]["spin"]["use_spin"] == [True, False]
    shared = ROOT.parent / "shared" / "data"
    if not (shared / "nio_spin" / "data_0" / "type.raw").exists():
        pytest.skip(f"shared DFT data not found at {shared}")
    for cfg in (water, spin):
        paths = [str(ROOT / s) for s in cfg["training"]["training_data"]["systems"]]
        systems = load_systems(paths, type_map=cfg["model"]["type_map"])
        _, most = data_neighbor_stat(systems, cfg["model"]["descriptor"]["rcut"], 2, mixed_types=True)
        need = 2 * int(most[0]) + 2 if "spin" in cfg["model"] else int(most[0])
        assert need <= cfg["model"]["descriptor"]["sel"], (paths, most)


# ------------------------------------------------------------------------------- every backend, one process each
def _env():
    env = {k: v for k, v in os.environ.items() if k != "DPCORE_ISOLATED"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _dpcore(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dpcore.cli", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=1200)


def _train_everywhere(cfg: dict, root: Path) -> dict:
    """``dpcore train`` of ``cfg`` on each backend in its own folder and process, two at a time."""
    missing = [b for b in BACKENDS if importlib.util.find_spec(b) is None]
    if missing:
        pytest.skip(f"frameworks not installed: {missing}")

    def one(backend):
        run = root / backend
        run.mkdir()
        (run / "input.json").write_text(json.dumps(cfg))
        proc = _dpcore("train", "input.json", "--backend", backend, cwd=run)
        assert proc.returncode == 0, f"{backend}:\n{proc.stderr[-3000:]}"
        return run

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(BACKENDS, pool.map(one, BACKENDS)))


def _tiny_spin_case(root):
    cfg = make_spin_case(root, numb_steps=3)
    cfg["model"]["descriptor"] = {**TINY, "type": "se_atten_v2", "sel": 40}  # strip + smooth; 2 x 19 + 2 slots
    return cfg


@pytest.mark.parametrize("kind", ["energy", "spin"])
def test_lcurve_identical_on_every_backend_then_freeze_and_test(tmp_path, kind):
    """3 steps of a DPA-1 energy model (concat, sel auto) and a se_atten_v2 spin model on torch, jax, tensorflow and
    paddle: one lcurve.out byte for byte, final parameters within float64 round-off; the torch run is frozen and
    tested on the validation system (the spin model's magnetic force included)."""
    if kind == "energy":
        cfg = make_case(tmp_path / "data", numb_steps=3)
        cfg["model"]["descriptor"] = dict(TINY)
    else:
        cfg = _tiny_spin_case(tmp_path / "data")
    valid = cfg["training"].pop("validation_data")["systems"]
    cfg["training"].update(validation_data=None, disp_freq=1, save_freq=3)
    runs = _train_everywhere(cfg, tmp_path)
    curves = {b: (r / "lcurve.out").read_text() for b, r in runs.items()}
    assert [int(line.split()[0]) for line in curves["torch"].splitlines() if not line.startswith("#")] == [1, 2, 3]
    for b in BACKENDS[1:]:
        assert curves[b] == curves["torch"], f"{b}:\n{curves[b]}\ntorch:\n{curves['torch']}"
    ref = ck.load_checkpoint(runs["torch"])
    sel = ref["config"]["model"]["descriptor"]["sel"]
    assert isinstance(sel, int) and sel > 0  # "auto" resolved to one int (energy) / kept (spin)
    for b in BACKENDS[1:]:
        other = ck.load_checkpoint(runs[b])
        assert other["backend"] == b and other["step"] == 3
        assert max_rel_diff(other["params"], ref["params"]) < PARAMS_TOL, b

    proc = _dpcore("freeze", runs["torch"], "-o", "model.dp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _dpcore("test", "-m", "model.dp", "-s", *valid, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rmse = {line.split(":")[0].strip(): float(line.split(":")[1].split()[0])
            for line in proc.stdout.splitlines() if "RMSE" in line and ":" in line}
    labelled = ["Energy RMSE", "Force  RMSE"] + (["Force spin RMSE"] if kind == "spin" else [])  # no virial labels
    assert all(np.isfinite(rmse[k]) and rmse[k] > 0 for k in labelled), proc.stdout
