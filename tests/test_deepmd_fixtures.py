"""DeePMD-kit-made model files: dpcore reproduces DeePMD-kit's energies and round-trips the files."""

from pathlib import Path

import numpy as np
import pytest

import dpcore
from dpcore.io import read_model_file
from helpers import TOL

# some fixtures overflow sel on purpose (they test the "nearest sum(sel), then split by type" rule)
pytestmark = pytest.mark.filterwarnings("ignore::dpcore.nlist.SelOverflowWarning")

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(p.stem for p in FIXTURES.glob("*.yaml"))


def _reference(name):
    z = np.load(FIXTURES / f"{name}.npz")
    return {k: z[k] for k in z.files}


def _evaluate(model, ref, **kw):
    return model.evaluate(ref["coord"], ref["atype"], ref.get("box"), ref.get("fparam"), ref.get("aparam"), **kw)


def _assert_same_structure(a, b, path="model"):
    """Deep equality of serialized dicts: same keys, same values, arrays equal with the same dtype."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys differ: {set(a) ^ set(b)}"
        for k in a:
            _assert_same_structure(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_structure(x, y, f"{path}/{i}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("name", CASES)
def test_energies_match_deepmd_kit(name):
    model = dpcore.load(FIXTURES / f"{name}.yaml")
    ref = _reference(name)
    out = _evaluate(model, ref)
    tol = TOL[str(model.params["fitting"]["nets"]["0"]["0"]["w"].dtype)]
    scale = np.abs(ref["energy"]).max()
    assert np.abs(out["energy"] - ref["energy"]).max() <= tol * scale
    assert np.abs(out["atom_energy"] - ref["atom_energy"]).max() <= tol * np.abs(ref["atom_energy"]).max()


@pytest.mark.parametrize("name", CASES)
def test_serialized_dict_round_trip(name, tmp_path):
    envelope = read_model_file(FIXTURES / f"{name}.yaml")
    model = dpcore.load(FIXTURES / f"{name}.yaml")
    _assert_same_structure(envelope["model"], model.to_dict())
    for suffix in (".yaml", ".dp"):
        model.save(tmp_path / f"m{suffix}")
        again = dpcore.load(tmp_path / f"m{suffix}")
        _assert_same_structure(model.to_dict(), again.to_dict())


def test_dp_file_matches_yaml():
    dp_files = sorted(FIXTURES.glob("*.dp"))
    assert dp_files, "no .dp fixture"
    for path in dp_files:
        ref = _reference(path.stem)
        out = _evaluate(dpcore.load(path), ref)
        assert np.abs(out["energy"] - ref["energy"]).max() <= TOL["float64"] * np.abs(ref["energy"]).max()


def test_unsupported_model_type_is_named(tmp_path):
    from dpcore.io import write_model_file

    envelope = read_model_file(FIXTURES / f"{CASES[0]}.yaml")
    envelope["model"]["type"] = "zbl"
    write_model_file(tmp_path / "zbl.yaml", envelope)
    with pytest.raises(NotImplementedError, match="'zbl'"):
        dpcore.load(tmp_path / "zbl.yaml")
    envelope["model"]["type"] = "standard"
    envelope["model"]["descriptor"]["type"] = "dpa2"
    write_model_file(tmp_path / "dpa2.yaml", envelope)
    with pytest.raises(NotImplementedError, match="descriptor type 'dpa2'"):
        dpcore.load(tmp_path / "dpa2.yaml")
