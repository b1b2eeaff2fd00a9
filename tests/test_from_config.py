"""EnergyModel.from_config: deterministic fresh models from an input.json model section; save/load round trip."""

import numpy as np
import pytest

import dpcore
from dpcore.config import ConfigError
from helpers import TOL, random_system

WATER_MODEL = {  # DeePMD-kit examples/water/se_e2_a/input.json, model section (smaller sel for speed)
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_e2_a", "sel": [24, 24], "rcut_smth": 0.5, "rcut": 4.0, "neuron": [25, 50, 100],
                   "resnet_dt": False, "axis_neuron": 16, "seed": 1, "_comment": " that's all"},
    "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1, "_comment": " that's all"},
    "_comment": " that's all",
}


def _leaves(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_same_seed_same_model_other_seed_other_model():
    a = dict(_leaves(dpcore.EnergyModel.from_config(WATER_MODEL, seed=3).params))
    b = dict(_leaves(dpcore.EnergyModel.from_config(WATER_MODEL, seed=3).params))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    cfg = {**WATER_MODEL, "descriptor": {**WATER_MODEL["descriptor"], "seed": None},
           "fitting_net": {**WATER_MODEL["fitting_net"], "seed": None}}
    c = dict(_leaves(dpcore.EnergyModel.from_config(cfg, seed=3).params))
    d = dict(_leaves(dpcore.EnergyModel.from_config(cfg, seed=4).params))
    assert not np.array_equal(c["descriptor.embedding.0.0.w"], d["descriptor.embedding.0.0.w"])
    assert "descriptor.embedding.3.2.w" in a  # type_one_side false (argcheck default): ntypes^2 nets
    assert "descriptor.embedding.0.1.idt" not in a and "fitting.nets.1.1.idt" in a  # resnet_dt rules


def test_defaults_are_deepmd_argcheck_defaults():
    cfg = dpcore.EnergyModel.from_config(WATER_MODEL, seed=1).config
    assert cfg["descriptor"]["type_one_side"] is False and cfg["descriptor"]["env_protection"] == 0.0
    assert cfg["fitting_net"]["numb_fparam"] == 0 and cfg["data_stat_nbatch"] == 10


@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_save_load_round_trip(tmp_path, suffix):
    # YAML stores every weight as text: keep this model small (the .dp path is exercised at full size elsewhere)
    small = {**WATER_MODEL, "fitting_net": {**WATER_MODEL["fitting_net"], "neuron": [32, 32]}}
    model = dpcore.EnergyModel.from_config(small, seed=1)
    coord, atype, box = random_system(natoms=9, nframes=1)
    ref = model.evaluate(coord, atype, box)
    model.save(tmp_path / f"m{suffix}")
    again = dpcore.load(tmp_path / f"m{suffix}")
    out = again.evaluate(coord, atype, box)
    for key in ("energy", "force", "virial"):
        np.testing.assert_array_equal(out[key], ref[key])
    assert again.model_def_script["descriptor"]["sel"] == [24, 24]


def test_bad_model_sections():
    with pytest.raises(ConfigError, match=r"model/descriptor: unknown key 'sell'; did you mean 'sel'\?"):
        dpcore.EnergyModel.from_config({**WATER_MODEL, "descriptor": {**WATER_MODEL["descriptor"], "sell": 3}})
    with pytest.raises(ValueError, match=r"sel is 'auto': it is resolved from the training data"):
        dpcore.EnergyModel.from_config({**WATER_MODEL, "descriptor": {**WATER_MODEL["descriptor"], "sel": "auto"}})


def test_spin_section_needs_the_spin_model():
    spin = {**WATER_MODEL, "type_map": ["Ni", "O"], "spin": {"use_spin": [True, False], "virtual_scale": [0.3]}}
    with pytest.raises(ValueError, match="has a 'spin' section: build it with dpcore.SpinEnergyModel"):
        dpcore.EnergyModel.from_config(spin, seed=1)
    assert isinstance(dpcore.model_from_config(spin, seed=1), dpcore.SpinEnergyModel)
    assert type(dpcore.model_from_config(WATER_MODEL, seed=1)) is dpcore.EnergyModel
