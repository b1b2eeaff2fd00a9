"""Tiny training cases shared by tests/test_train_*.py and tests/isolated/test_train_backends.py: synthetic
periodic systems (deepmd/npy) labelled by a fixed random dpcore model, and parameter-tree comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import make_model, random_system

def make_case(root, nsys: int = 2, nframes: int = 4, natoms: int = 8, numb_steps: int = 8, sel="auto") -> dict:
    """Write ``nsys`` training systems and one validation system (deepmd/npy, energies and forces of a
    fixed random model) under ``root``; return a raw input dict training a smaller model on them."""
    root = Path(root)
    teacher = make_model(seed=7, descriptor={"sel": [24, 24], "rcut": 3.5, "neuron": [4, 8]},
                         fitting={"neuron": [8, 8]})
    paths = []
    for k in range(nsys + 1):
        coord, atype, box = random_system(natoms=natoms, nframes=nframes, box_len=4.5, seed=100 + k)
        out = teacher.evaluate(coord, atype, box)
        s = root / f"sys{k}"
        (s / "set.000").mkdir(parents=True)
        np.savetxt(s / "type.raw", atype, fmt="%d")
        (s / "type_map.raw").write_text("O\nH\n")
        np.save(s / "set.000" / "coord.npy", coord.reshape(nframes, -1))
        np.save(s / "set.000" / "box.npy", box.reshape(nframes, 9))
        np.save(s / "set.000" / "energy.npy", out["energy"].reshape(nframes))
        np.save(s / "set.000" / "force.npy", out["force"].reshape(nframes, -1))
        paths.append(str(s))
    return {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": sel, "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8],
                                 "axis_neuron": 4, "seed": 1},
                  "fitting_net": {"neuron": [8, 8], "seed": 1}, "data_stat_nbatch": 2},
        "learning_rate": {"type": "exp", "start_lr": 1e-2, "stop_lr": 1e-3, "decay_steps": 2},
        "loss": {"type": "ener", "start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_f": 10.0, "limit_pref_f": 1.0},
        "training": {"training_data": {"systems": paths[:nsys], "batch_size": 2},
                     "validation_data": {"systems": paths[nsys:], "batch_size": 2, "numb_btch": 2},
                     "numb_steps": numb_steps, "seed": 3, "disp_freq": 2, "save_freq": numb_steps // 2,
                     "max_ckpt_keep": 2},
    }


def make_spin_case(root, nframes: int = 4, natoms: int = 8, numb_steps: int = 12) -> dict:
    """Two training systems and one validation system with spins (deepspin layout: spin.npy, force_mag.npy)
    labelled by a fixed random spin model (Ni magnetic, O not); the input trains a fresh spin model."""
    from dpcore.model.spin_model import SpinEnergyModel

    root = Path(root)
    model = {"type_map": ["Ni", "O"],
             "descriptor": {"type": "se_e2_a", "sel": [24, 24], "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8],
                            "axis_neuron": 4},
             "fitting_net": {"neuron": [8, 8]}, "spin": {"use_spin": [True, False], "virtual_scale": [0.3]}}
    teacher = SpinEnergyModel.from_config(model, seed=5)
    paths = []
    for k in range(3):
        coord, atype, box = random_system(natoms=natoms, nframes=nframes, box_len=4.5, seed=200 + k)
        spin = np.random.default_rng(k).normal(size=coord.shape)
        out = teacher.evaluate(coord, atype, spin, box)
        s = root / f"sys{k}"
        (s / "set.000").mkdir(parents=True)
        np.savetxt(s / "type.raw", atype, fmt="%d")
        (s / "type_map.raw").write_text("Ni\nO\n")
        for name, v in (("coord", coord), ("box", box), ("spin", spin), ("force", out["force"]),
                        ("force_mag", out["force_mag"])):
            np.save(s / "set.000" / f"{name}.npy", np.asarray(v).reshape(nframes, -1))
        np.save(s / "set.000" / "energy.npy", out["energy"].reshape(nframes))
        paths.append(str(s))
    model["descriptor"].update(sel="auto", seed=1)
    model["fitting_net"]["seed"] = 1
    return {
        "model": {**model, "data_stat_nbatch": 2},
        "learning_rate": {"type": "exp", "start_lr": 1e-2, "stop_lr": 1e-3, "decay_steps": 2},
        "loss": {"type": "ener_spin", "start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_fr": 10.0,
                 "limit_pref_fr": 1.0, "start_pref_fm": 10.0, "limit_pref_fm": 1.0},
        "training": {"training_data": {"systems": paths[:2], "batch_size": 2},
                     "validation_data": {"systems": paths[2:], "batch_size": 2, "numb_btch": 2},
                     "numb_steps": numb_steps, "seed": 3, "disp_freq": 2, "save_freq": numb_steps // 2,
                     "max_ckpt_keep": 2},
    }


def flat(tree, prefix=""):
    """{path: array} of a nested dict."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}/{k}"))
        return out
    return {prefix: np.asarray(tree)}


def max_rel_diff(a: dict, b: dict) -> float:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    scale = max(float(np.max(np.abs(v))) for v in fb.values() if v.size)
    return max(float(np.max(np.abs(fa[k] - fb[k]), initial=0.0)) for k in fa) / scale
