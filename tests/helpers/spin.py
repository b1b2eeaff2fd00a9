"""Spin models and systems shared by tests/test_spin_*.py and tests/isolated/test_spin_backends.py."""

from __future__ import annotations

import copy
import itertools

import numpy as np

from dpcore.conformance.cases import randomize_statistics
from dpcore.model.spin_model import SpinEnergyModel
from helpers import random_system

BASE = {  # the spin model section of every spin test
    "type_map": ["Ni", "O"],
    "descriptor": {"type": "se_e2_a", "sel": [40, 40], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8, 16],
                   "axis_neuron": 4, "type_one_side": False, "precision": "float64"},
    "fitting_net": {"neuron": [16, 16], "precision": "float64"},
    "spin": {"use_spin": [True, False], "virtual_scale": [0.3]},
}


def spin_config(**over) -> dict:
    """BASE with sections updated (descriptor, fitting_net) or replaced (spin and the others)."""
    cfg = copy.deepcopy(BASE)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict) and k != "spin":
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


MODELS = {
    "two_side": {},
    "three_types": dict(type_map=["Fe", "Ni", "O"], descriptor={"sel": [30, 30, 30], "type_one_side": True,
                                                                "activation_function": "gelu", "resnet_dt": True},
                        fitting_net={"numb_fparam": 1, "numb_aparam": 2, "activation_function": "silu"},
                        pair_exclude_types=[[0, 2]], atom_exclude_types=[1],
                        spin={"use_spin": ["Fe", "Ni"], "virtual_scale": [0.25, 0.4]}),
}


def make_spin_model(name="two_side", seed=1, stats_seed=2) -> SpinEnergyModel:
    """A spin model with random networks and non-trivial statistics (davg/dstd/out_bias/fparam stats)."""
    model = SpinEnergyModel.from_config(spin_config(**MODELS[name]), seed=seed)
    randomize_statistics(model.config, model.params, stats_seed)
    # smaller dstd: larger normalised environments, forces ~0.01-0.1 eV/Å instead of ~1e-4, so the
    # finite-difference round-off (eps |E| / H ~ 1e-12) stays far below FD_TOL x max|force|
    model.params["descriptor"]["dstd"] *= 0.3
    return model


SYSTEMS = {
    "pbc_triclinic": dict(natoms=8, box_len=4.5),
    "small_box": dict(natoms=3, box_len=2.6, min_dist=0.8),  # several image shells for rcut 4
    "cluster": dict(natoms=8, box_len=4.0),
}


def spin_system(model, name, nframes=2, seed=0):
    """coord, atype, spin, box (None for the cluster); every real/virtual pair >= 0.3 Å apart."""
    rng = np.random.default_rng(seed + 100)
    for attempt in range(200):
        coord, atype, box = random_system(nframes=nframes, seed=seed + attempt, ntypes=model.ntypes, **SYSTEMS[name])
        direction = rng.normal(size=coord.shape)
        spin = direction / np.linalg.norm(direction, axis=-1, keepdims=True) * rng.uniform(0.6, 1.6, coord.shape[:2] + (1,))
        box = None if name == "cluster" else box
        if _min_pair_distance(model, coord, atype, spin, box) >= 0.3:
            return coord, atype, spin, box
    raise RuntimeError("could not place a spin system")


def _min_pair_distance(model, coord, atype, spin, box):
    """Smallest distance between the real and virtual atoms of different atoms (nearest images)."""
    vs = model.virtual_scale_mask[atype]
    shifts = np.zeros((1, 3)) if box is None else np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ box.reshape(-1, 3, 3)
    shifts = np.broadcast_to(shifts, (coord.shape[0],) + shifts.shape[-2:])
    n = coord.shape[1]
    best = np.inf
    for f in range(coord.shape[0]):
        pts = np.concatenate([coord[f], coord[f] + vs[:, None] * spin[f]])[np.concatenate([np.ones(n, bool), vs > 0])]
        owner = np.concatenate([np.arange(n), np.arange(n)[vs > 0]])
        r = np.linalg.norm(pts[None, :, None] - pts[:, None, None] + shifts[f][None, None], axis=-1).min(-1)
        best = min(best, r[owner[:, None] != owner[None, :]].min())
    return best
