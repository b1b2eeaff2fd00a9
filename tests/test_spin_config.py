"""The spin section of a model config (SPEC 7.1): the forms of use_spin and virtual_scale, DeePMD-kit's
TensorFlow form, their errors, and the backbone model built from it."""

import numpy as np
import pytest

from dpcore.config import ConfigError
from dpcore.model.spin_model import SpinEnergyModel, backbone_config, spin_settings
from helpers.spin import MODELS, spin_config


# ------------------------------------------------------------------------------------------------ config forms
def _settings(spin, type_map=("Ni", "O", "Fe")):
    cfg = spin_config(type_map=list(type_map), descriptor={"sel": [10] * len(type_map)}, spin=spin)
    return SpinEnergyModel.from_config(cfg, seed=0)


def test_use_spin_forms_are_equivalent():
    ref = _settings({"use_spin": [True, False, True], "virtual_scale": [0.3, 0.5]})
    for use in ([0, 2], ["Ni", "Fe"], ["Fe", "Ni"], [2, 0, 2]):
        m = _settings({"use_spin": use, "virtual_scale": [0.3, 0.5]})
        assert m.spin == ref.spin and m.config == ref.config
    assert ref.spin == {"use_spin": [True, False, True], "virtual_scale": [0.3, 0.0, 0.5]}


def test_virtual_scale_forms():
    use = [True, False, True]
    assert _settings({"use_spin": use, "virtual_scale": 0.3}).spin["virtual_scale"] == [0.3, 0.3, 0.3]
    m = _settings({"use_spin": use, "virtual_scale": [0.3, 0.9, 0.5]})  # one per type: kept, masked on use
    assert m.spin["virtual_scale"] == [0.3, 0.9, 0.5]
    np.testing.assert_array_equal(m.virtual_scale_mask, [0.3, 0.0, 0.5])
    assert _settings({"use_spin": use, "virtual_scale": [0.3, 0.5]}).spin["virtual_scale"] == [0.3, 0.0, 0.5]


def test_tensorflow_form_is_converted():
    m = _settings({"use_spin": [True, True, False], "spin_norm": [1.2737, 2.0], "virtual_len": [0.4, 0.5]},
                  type_map=("Ni", "Fe", "O"))
    assert m.spin["virtual_scale"] == pytest.approx([0.4 / 1.2737, 0.25, 0.0], rel=1e-15)
    # the DeePMD-kit example: virtual_len 0.4 / spin_norm 1.2737 = 0.3140 of the PyTorch input
    m2 = _settings({"use_spin": [True, False], "spin_norm": [1.2737], "virtual_len": [0.4]}, type_map=("Ni", "O"))
    assert m2.spin["virtual_scale"][0] == pytest.approx(0.3140, abs=1e-4)


def test_tensorflow_form_needs_magnetic_types_first():
    with pytest.raises(ValueError, match="magnetic types first in type_map"):
        _settings({"use_spin": [False, True], "spin_norm": [1.2737], "virtual_len": [0.4]}, type_map=("O", "Ni"))
    with pytest.raises(ValueError, match="magnetic types first in type_map"):
        _settings({"use_spin": ["Fe"], "spin_norm": [1.2737], "virtual_len": [0.4]})
    # the same types with virtual_scale are fine
    assert _settings({"use_spin": [False, True], "virtual_scale": [0.3]}, type_map=("O", "Ni")).use_spin == [False, True]


@pytest.mark.parametrize("spin, error, match", [
    ({"use_spin": ["Co"], "virtual_scale": 0.3}, ValueError, r"use_spin.*\['Co'\]"),
    ({"use_spin": [True, False], "virtual_scale": 0.3}, ValueError, "expected 3 booleans"),
    ({"use_spin": [5], "virtual_scale": 0.3}, ValueError, "type indices"),
    ({"use_spin": [0, "O"], "virtual_scale": 0.3}, ValueError, "use_spin"),
    ({"use_spin": [True, False, True], "virtual_scale": [0.3, 0.4, 0.5, 0.6]}, ValueError,
     r"virtual_scale.*expected 3 \(one per type\) or 2 \(one per magnetic type\)"),
    ({"use_spin": [True, False, True], "virtual_scale": 1}, ValueError, "Invalid virtual scale type: int"),
    ({"use_spin": [True, False, True]}, ValueError, "virtual_scale: required"),
    ({"use_spin": [True, False, True], "virtual_scale": [0.3, 0.0]}, ValueError, "need a finite virtual_scale > 0"),
    ({"use_spin": [True, False, True], "virtual_scale": -0.3}, ValueError, "need a finite virtual_scale > 0"),
    ({"use_spin": [True, False, True], "spin_norm": [1.0, 1.0]}, ValueError, "needs both 'spin_norm' and 'virtual_len'"),
    ({"use_spin": [True, False, True], "virtual_scale": 0.3, "allow_missing_label": True}, ValueError,
     "allow_missing_label"),
    ({"use_spin": [True, False, True], "virtual_scale": 0.3, "scheme": "native"}, ValueError, "deepspin"),
])
def test_spin_section_errors(spin, error, match):
    with pytest.raises(error, match=match):
        _settings(spin)


def test_config_errors_are_config_errors_where_the_schema_catches_them():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="model/spin/use_spin"):
        _settings({"use_spin": ["Co"], "virtual_scale": 0.3})


def test_backbone_construction():
    """SPEC 7.1 steps 1-5, with the user's model-level exclusions merged in."""
    m = SpinEnergyModel.from_config(spin_config(**MODELS["three_types"]), seed=0)
    c = m.config
    assert c["type_map"] == ["Fe", "Ni", "O", "Fe_spin", "Ni_spin", "O_spin"]
    placeholder = [[5, q] for q in range(6)]
    assert c["pair_exclude_types"] == placeholder + [[0, 2]]
    assert c["descriptor"]["exclude_types"] == placeholder + [[0, 2]]
    assert c["atom_exclude_types"] == [1, 3, 4, 5]
    assert c["descriptor"]["sel"] == [30] * 6 and m.sel == [30, 30, 30]
    assert m.type_map == ["Fe", "Ni", "O"] and m.ntypes == 3
    assert "spin" not in c
    with pytest.raises(ValueError, match="exclude_types.*model/pair_exclude_types"):
        SpinEnergyModel.from_config(spin_config(descriptor={"exclude_types": [[0, 1]]}))
    with pytest.raises(ValueError, match="sel is 'auto'"):
        SpinEnergyModel.from_config(spin_config(descriptor={"sel": "auto"}))


@pytest.mark.parametrize("given, expected", [(None, 0.01), (0.0, 0.01), (0.05, 0.05)])
def test_env_protection_default(given, expected):
    cfg = spin_config()
    if given is not None:
        cfg["descriptor"]["env_protection"] = given
    m = SpinEnergyModel.from_config(cfg, seed=0)
    assert m.config["descriptor"]["env_protection"] == expected
    assert m.to_dict()["backbone_model"]["descriptor"]["env_mat"]["protection"] == expected


def test_helpers_match_from_config():
    from dpcore.config import normalize_model

    cfg = normalize_model(spin_config())
    settings = spin_settings(cfg["spin"], cfg["type_map"])
    assert backbone_config(cfg, settings["use_spin"]) == SpinEnergyModel.from_config(spin_config()).config
