"""dpcore.io round trips of DeePMD-kit serialized model files (.dp HDF5, .yaml/.yml): bit-exact values, the
on-disk layouts of DeePMD-kit, byte-identical rewrites of DeePMD-kit's files, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpcore.io import read_model_file, write_model_file
from helpers.model_files import assert_same, synthetic_envelope, variables

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_FILES = sorted(FIXTURES.glob("*.yaml")) + sorted(FIXTURES.glob("*.dp"))

h5py = pytest.importorskip("h5py")
yaml = pytest.importorskip("yaml")


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".dp", ".yaml", ".yml"])
def test_round_trip_synthetic(tmp_path, suffix):
    env = synthetic_envelope()
    first = tmp_path / f"a{suffix}"
    write_model_file(first, env)
    got = read_model_file(first)
    # metadata DeePMD-kit's save_dp_model adds, everything else as given
    assert got["software"] == "deepmd-kit"
    assert isinstance(got["version"], str) and isinstance(got["time"], str)
    assert got["backend"] == "dpcore"
    assert_same({k: got[k] for k in env}, env)
    # read -> write -> read is the identity, metadata included
    second = tmp_path / f"b{suffix}"
    write_model_file(second, got)
    assert_same(read_model_file(second), got)


def test_write_does_not_modify_input(tmp_path):
    env = synthetic_envelope()
    before = repr(env)
    write_model_file(tmp_path / "m.dp", env)
    write_model_file(tmp_path / "m.yaml", env)
    assert repr(env) == before


def test_hdf5_layout_is_deepmd_layout(tmp_path):
    env = synthetic_envelope()
    fn = tmp_path / "m.dp"
    write_model_file(fn, env)
    with h5py.File(fn, "r") as f:
        text = f.attrs["json"]
        stored = json.loads(text)
        names = sorted(f.keys())
        assert all(isinstance(f[n], h5py.Dataset) for n in names)
    assert text == json.dumps(stored, separators=(",", ":"))  # compact separators
    refs = [v for _, v in variables(stored)]
    non_null = [r for r in refs if r is not None]
    # counter depth-first in insertion order, one root-level dataset per non-null variable
    assert non_null == [f"/variable_{i:04d}" for i in range(len(non_null))]
    assert names == [r[1:] for r in non_null]
    assert stored["model"]["@variables"]["nothing"] is None
    assert stored["model"]["@variables"]["listed"][1] is None
    assert list(stored)[:3] == ["software", "version", "time"]


def test_yaml_layout_is_deepmd_layout(tmp_path):
    fn = tmp_path / "m.yaml"
    write_model_file(fn, synthetic_envelope())
    raw = yaml.safe_load(fn.read_text())
    enc = raw["model"]["@variables"]["f32"]
    assert enc["@class"] == "np.ndarray" and enc["@is_variable"] is True and enc["@version"] == 1
    assert enc["dtype"] == "float32" and len(enc["value"]) == 3
    assert raw["model"]["@variables"]["nothing"] is None
    text = fn.read_text()
    assert text == yaml.safe_dump(raw)  # safe_dump with sorted keys


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_rewrite_fixture_is_byte_identical_to_deepmd(tmp_path, path):
    """Rewriting a file DeePMD-kit wrote gives DeePMD-kit's own bytes (yaml) / JSON + datasets (dp)."""
    env = read_model_file(path)
    out = tmp_path / path.name
    write_model_file(out, env)
    if path.suffix == ".yaml":
        assert out.read_text() == path.read_text()
    else:
        with h5py.File(path, "r") as a, h5py.File(out, "r") as b:
            assert a.attrs["json"] == b.attrs["json"]
            assert sorted(a.keys()) == sorted(b.keys())
            for k in a.keys():
                assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                assert a[k][()].tobytes() == b[k][()].tobytes()


def test_cross_format(tmp_path):
    env = read_model_file(FIXTURES / "se_a_float32.yaml")
    write_model_file(tmp_path / "m.dp", env)
    write_model_file(tmp_path / "m.yml", read_model_file(tmp_path / "m.dp"))
    assert_same(read_model_file(tmp_path / "m.yml"), env)


def test_existing_metadata_kept_and_missing_filled(tmp_path):
    env = {"software": "deepmd-kit", "version": "3.0.1", "time": "then", "backend": "PyTorch",
           "model": {"type": "standard"}}
    write_model_file(tmp_path / "m.dp", env)
    got = read_model_file(tmp_path / "m.dp")
    assert (got["version"], got["time"], got["backend"]) == ("3.0.1", "then", "PyTorch")
    assert got["model_def_script"] == {}  # dp convert-backend to .pth needs the key
