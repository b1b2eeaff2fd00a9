"""Spin model files (.dp / .yaml round trips, DeePMD-kit's spin_ener layout and its energies) and the
conformance of every spin output on all six backends."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import dpcore
from dpcore.model.spin_model import SpinEnergyModel
from helpers import TOL, random_fparam_aparam
from helpers.spin import make_spin_model, spin_system

FIXTURES = Path(__file__).parent / "fixtures" / "spin"


# ------------------------------------------------------------------------------------------------ model files
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_save_load_round_trip(tmp_path, suffix):
    model = make_spin_model("three_types")
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    path = tmp_path / f"spin{suffix}"
    model.save(path)
    loaded = dpcore.load(path)
    assert isinstance(loaded, SpinEnergyModel) and loaded.spin == model.spin
    assert loaded.model_def_script == model.model_def_script
    out = loaded.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])
    d = loaded.to_dict()
    assert set(d) == {"type", "backbone_model", "spin"} and d["type"] == "spin_ener"
    assert d["spin"] == {"use_spin": [True, True, False], "virtual_scale": [0.25, 0.4, 0.0]}
    assert d["backbone_model"]["type_map"] == ["Fe", "Ni", "O", "Fe_spin", "Ni_spin", "O_spin"]


def test_from_dict_errors():
    d = make_spin_model().to_dict()
    with pytest.raises(ValueError, match="virtual_scale: null"):
        SpinEnergyModel.from_dict({**d, "spin": {"use_spin": [True, False], "virtual_scale": None}})
    with pytest.raises(ValueError, match="use_spin has 3 entries for 2 real types"):
        SpinEnergyModel.from_dict({**d, "spin": {"use_spin": [True, False, True], "virtual_scale": [0.3]}})
    with pytest.raises(ValueError, match="backbone_model: missing"):
        SpinEnergyModel.from_dict({"type": "spin_ener", "spin": d["spin"]})


def test_reproduces_deepmd_kit_spin_energies():
    """tests/fixtures/spin/spin_ener.*: made, saved, reloaded and evaluated by DeePMD-kit 3.2.0
    (tests/fixtures/make_spin_fixture.py)."""
    model = dpcore.load(FIXTURES / "spin_ener.yaml")
    assert isinstance(model, SpinEnergyModel)
    ref = np.load(FIXTURES / "spin_ener.npz")
    for prefix in ("", "cluster_"):
        box = ref[f"{prefix}box"] if f"{prefix}box" in ref.files else None
        out = model.evaluate(ref[f"{prefix}coord"], ref[f"{prefix}atype"], ref[f"{prefix}spin"], box, atomic=True)
        for key in ("energy", "atom_energy"):
            err = np.abs(out[key] - ref[f"{prefix}{key}"]).max() / np.abs(ref[f"{prefix}{key}"]).max()
            assert err <= TOL["float64"], (prefix, key, err)
        np.testing.assert_array_equal(out["mask_mag"], ref[f"{prefix}mask_mag"])


# ------------------------------------------------------------------------------------------------ conformance
ALL = ["numpy", "array_api_strict", "torch", "jax", "tensorflow", "paddle"]
AUTODIFF = ["torch", "jax", "tensorflow", "paddle"]
SPIN_ROWS = ["atom_energy", "energy", "force", "force_mag", "virial", "atom_virial", "mask_mag"]


def test_spin_cases_in_the_catalogue():
    from dpcore.conformance import cases as C

    spin = C.catalogue("spin")
    assert spin and all(c in C.catalogue("full") for c in spin)
    assert json.loads(json.dumps(spin)) == spin
    models = [C.build_model(c["model"]) for c in spin]
    assert all(isinstance(m, SpinEnergyModel) for m in models)
    assert {m.config["descriptor"]["precision"] for m in models} == {"float32", "float64"}
    assert {c["system"]["kind"] for c in spin} == {"periodic", "cluster"}
    for case, model in zip(spin, models):
        system = C.build_system(case["system"], model)
        assert system["spin"].shape == system["coord"].shape
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no sel overflow
            C.prepare_case(model, system)


def test_conformance_of_spin_outputs_on_all_six_backends():
    from dpcore.conformance import runner
    from dpcore.conformance.report import to_markdown

    report = runner.run(ALL, catalogue="spin", echo=lambda line: None)
    md = to_markdown(report)
    print("\n" + md)
    assert report["passed"], md
    table = {(r["backend"], r["output"]): r for r in report["summary"]}
    ncases = len(report["cases"])
    for b in ALL:
        for out in SPIN_ROWS:
            assert table[(b, f"{out} [spin]")]["cases"] == ncases
            assert ((b, f"{out} [spin_autodiff]") in table) == (b in AUTODIFF)
        assert (b, "force") not in table  # standard kinds do not apply to spin models
    for b in ALL[1:]:
        for kind in ("spin", "spin_autodiff"):
            row = table.get((b, f"force_mag [{kind}]"))
            if row is not None:
                assert set(row["errors"]) == {"float64", "float32"}
