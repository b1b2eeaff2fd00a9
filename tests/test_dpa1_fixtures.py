"""DeePMD-kit-made DPA-1 models (tests/fixtures/dpa1/, made by make_dpa1_fixtures.py with DeePMD-kit 3.2.0):
dpcore reproduces DeePMD-kit's energies, forces, virials (and magnetic forces) on its files, with the analytic
backward on NumPy."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import TOL, rel_err

import dpcore
from dpcore.descriptor.dpa1_config import DPA1Warning

FIXTURES = Path(__file__).parent / "fixtures" / "dpa1"
CASES = ["dpa1_concat_2layers", "se_atten_v2_strip", "dpa1_no_attention_excl"]
OUTPUTS = ("energy", "atom_energy", "force", "virial", "atom_virial")


def _load(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        return dpcore.load(FIXTURES / f"{name}.yaml"), dict(np.load(FIXTURES / f"{name}.npz"))


@pytest.mark.parametrize("name", CASES)
def test_energy_models_give_deepmd_kits_numbers(name):
    model, ref = _load(name)
    out = model.evaluate(ref["coord"], ref["atype"], ref["box"], atomic=True)
    for key in OUTPUTS:
        assert rel_err(out[key].reshape(ref[key].shape), ref[key]) <= TOL["float64"], key


def test_fixture_settings():
    """What each fixture exercises (so a regenerated file keeps covering it)."""
    d = {name: _load(name)[0].config for name in CASES}
    concat = d["dpa1_concat_2layers"]["descriptor"]
    assert concat["attn_layer"] == 2 and concat["tebd_input_mode"] == "concat" and not concat["smooth_type_embedding"]
    strip = d["se_atten_v2_strip"]["descriptor"]
    assert strip["type"] == "se_atten_v2" and strip["sel"] == [20, 20] and strip["temperature"] == 0.8
    excl = d["dpa1_no_attention_excl"]
    assert excl["descriptor"]["attn_layer"] == 0 and excl["descriptor"]["exclude_types"] == [[0, 0]]
    assert excl["pair_exclude_types"] == [[1, 2]] and excl["atom_exclude_types"] == [2]
    for name in CASES:
        assert _load(name)[1]["atype"][0] != 0  # empty slots typed as a non-zero first atom (SPEC_DPA1 0.2)


def test_spin_model_gives_deepmd_kits_numbers():
    model, ref = _load("dpa1_spin")
    assert model.model_type == "spin_ener"
    out = model.evaluate(ref["coord"], ref["atype"], ref["spin"], ref["box"], atomic=True)
    for key in OUTPUTS + ("force_mag",):
        assert rel_err(out[key].reshape(ref[key].shape), ref[key]) <= TOL["float64"], key
