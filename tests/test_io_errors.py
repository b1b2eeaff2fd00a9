"""dpcore.io errors: missing files, unknown extensions, malformed HDF5 / YAML envelopes, failed writes leave
nothing behind, file modes, missing optional dependencies, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpcore.io import ModelFileError, read_model_file, write_model_file
from helpers.model_files import synthetic_envelope

h5py = pytest.importorskip("h5py")
yaml = pytest.importorskip("yaml")


# --------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    fn = tmp_path / "nope.dp"
    with pytest.raises(FileNotFoundError, match="nope.dp"):
        read_model_file(fn)


@pytest.mark.parametrize("func", ["read", "write"])
def test_unknown_extension(tmp_path, func):
    fn = tmp_path / "model.json"
    fn.write_text("{}")
    with pytest.raises(ModelFileError) as info:
        if func == "read":
            read_model_file(fn)
        else:
            write_model_file(fn, {"model": {}})
    msg = str(info.value)
    assert "model.json" in msg and ".dp" in msg and ".yaml" in msg and ".yml" in msg


def test_dp_not_hdf5(tmp_path):
    fn = tmp_path / "fake.dp"
    fn.write_text("this is not HDF5")
    with pytest.raises(ModelFileError, match=r"fake\.dp.*not an HDF5"):
        read_model_file(fn)


def test_hdf5_without_json(tmp_path):
    fn = tmp_path / "nojson.dp"
    with h5py.File(fn, "w") as f:
        f.create_dataset("variable_0000", data=np.ones(3))
    with pytest.raises(ModelFileError, match=r"nojson\.dp.*'json'"):
        read_model_file(fn)


def test_hdf5_json_without_model(tmp_path):
    fn = tmp_path / "nomodel.dp"
    with h5py.File(fn, "w") as f:
        f.attrs["json"] = json.dumps({"software": "x"})
    with pytest.raises(ModelFileError, match=r"nomodel\.dp.*'model'"):
        read_model_file(fn)


@pytest.mark.parametrize("text", ["software: deepmd-kit\nversion: 1\n", "- 1\n- 2\n", "", "a: [1, 2\n"],
                         ids=["no-model-key", "list", "empty", "bad-syntax"])
def test_yaml_not_an_envelope(tmp_path, text):
    fn = tmp_path / "bad.yaml"
    fn.write_text(text)
    with pytest.raises(ModelFileError, match=r"bad\.yaml"):
        read_model_file(fn)


def test_missing_dataset(tmp_path):
    fn = tmp_path / "broken.dp"
    write_model_file(fn, synthetic_envelope())
    with h5py.File(fn, "a") as f:
        del f["variable_0001"]
    with pytest.raises(ModelFileError, match=r"broken\.dp.*/variable_0001"):
        read_model_file(fn)


def test_write_without_model_key(tmp_path):
    with pytest.raises(ModelFileError, match="'model'"):
        write_model_file(tmp_path / "m.dp", {"software": "deepmd-kit"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_failed_write_leaves_nothing_behind(tmp_path, suffix):
    fn = tmp_path / f"m{suffix}"
    write_model_file(fn, synthetic_envelope())
    before = fn.read_bytes()
    bad = synthetic_envelope()
    bad["model_def_script"] = {"oops": object()}  # neither JSON nor YAML can store it
    with pytest.raises(Exception):
        write_model_file(fn, bad)
    assert fn.read_bytes() == before  # old file untouched
    assert [p.name for p in tmp_path.iterdir()] == [fn.name]  # no temp file left
    with pytest.raises(Exception):
        write_model_file(tmp_path / f"new{suffix}", bad)
    assert [p.name for p in tmp_path.iterdir()] == [fn.name]


def test_written_file_mode_is_normal(tmp_path):
    fn = tmp_path / "m.yaml"
    write_model_file(fn, synthetic_envelope())
    umask = os.umask(0)
    os.umask(umask)
    assert fn.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(("module", "suffix", "package"), [("h5py", ".dp", "h5py"), ("yaml", ".yaml", "pyyaml")])
def test_missing_optional_dependency(tmp_path, monkeypatch, module, suffix, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" raise ImportError
    with pytest.raises(ImportError, match=f"pip install {package}"):
        write_model_file(tmp_path / f"m{suffix}", {"model": {}})


def test_import_is_lazy():
    code = "import sys, dpcore.io; print('h5py' in sys.modules, 'yaml' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False"]
