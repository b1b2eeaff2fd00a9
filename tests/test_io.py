"""Tests of dpcore.io: DeePMD-kit serialized model files (.dp HDF5, .yaml/.yml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dpcore.io import ModelFileError, read_model_file, write_model_file

FIXTURES = Path(__file__).parent / "fixtures"
CASES = ["se_a_one_side", "se_a_two_side_excl", "se_a_fparam_aparam", "se_a_float32", "se_a_exclusions"]
MODEL_FILES = sorted(FIXTURES.glob("*.yaml")) + sorted(FIXTURES.glob("*.dp"))
DPKIT_PYTHON = Path("/tmp/dpkit-venv/bin/python")

h5py = pytest.importorskip("h5py")
yaml = pytest.importorskip("yaml")


# --------------------------------------------------------------------------- helpers


def synthetic_envelope() -> dict:
    """Envelope with every awkward variable shape: nested dicts, lists, None, dtypes, specials."""
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1e308, 1 / 3])
    return {
        "backend": "dpcore",
        "model": {
            "@class": "Model",
            "type": "standard",
            "type_map": ["O", "H"],
            "preset_out_bias": {"energy": [None, 1.5]},
            "@variables": {
                "out_bias": rng.normal(size=(1, 2, 1)),
                "f32": rng.normal(size=(3, 4)).astype(np.float32),
                "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
                "i64": np.array([-(2**62), 2**62], dtype=np.int64),
                "flags": np.array([True, False]),
                "special": special,
                "scalar0d": np.array(2.5),
                "nothing": None,
                "nested": {"deeper": {"w": rng.normal(size=(2, 2)), "b": None}},
                "listed": [rng.normal(size=3), None, [np.float32(1.25) * np.ones(2, np.float32), None]],
            },
            "layers": [
                {"@class": "Layer", "@variables": {"w": rng.normal(size=(2, 3)), "b": None, "idt": None}},
                {"@class": "Layer", "@variables": {"w": rng.normal(size=(3, 1)), "b": rng.normal(size=1)}},
            ],
        },
        "model_def_script": {"type_map": ["O", "H"], "descriptor": {"sel": [2, 3]}},
        "@variables": {},
    }


def assert_same(a, b, path="envelope"):
    """Recursive equality; arrays bit-for-bit with identical dtype and shape."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype, f"{path}: {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: {a.shape} != {b.shape}"
        if a.dtype.kind == "f":  # YAML spells every NaN ".nan": NaN sign/payload bits are not kept
            a, b = np.where(np.isnan(a), np.nan, a), np.where(np.isnan(b), np.nan, b)
        assert a.tobytes() == b.tobytes(), f"{path}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def variables(obj, path=""):
    """All (path, value) pairs under "@variables" keys."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "@variables":
                out += _leaves(v, f"{path}.{k}")
            else:
                out += variables(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += variables(v, f"{path}[{i}]")
    return out


def _leaves(obj, path):
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _leaves(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [x for i, v in enumerate(obj) for x in _leaves(v, f"{path}[{i}]")]
    return [(path, obj)]


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


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_fixture_reads_as_standard_model(path):
    env = read_model_file(path)
    assert env["software"] == "deepmd-kit"
    model = env["model"]
    assert model["type"] == "standard" and model["@class"] == "Model"
    assert model["descriptor"]["type"] == "se_e2_a" and model["fitting"]["type"] == "ener"
    ntypes = len(model["type_map"])
    desc = model["descriptor"]
    nnei = sum(desc["sel"])
    assert model["@variables"]["out_bias"].shape == (1, ntypes, 1)
    assert desc["@variables"]["davg"].shape == (ntypes, nnei, 4)
    assert np.all(desc["@variables"]["dstd"] > 0)
    for _, value in variables(env):
        assert value is None or isinstance(value, np.ndarray)


def test_fixture_set_is_complete():
    for case in CASES:
        assert (FIXTURES / f"{case}.yaml").is_file(), case
        assert (FIXTURES / f"{case}.npz").is_file(), case
    assert (FIXTURES / "se_a_fparam_aparam.dp").is_file()


def test_fixture_dp_equals_yaml():
    a = read_model_file(FIXTURES / "se_a_fparam_aparam.dp")
    b = read_model_file(FIXTURES / "se_a_fparam_aparam.yaml")
    assert_same(a["model"], b["model"])


def test_fixture_float32_dtypes():
    model = read_model_file(FIXTURES / "se_a_float32.yaml")["model"]
    assert model["descriptor"]["@variables"]["davg"].dtype == np.float32
    layer = model["fitting"]["nets"]["networks"][0]["layers"][0]
    assert layer["@variables"]["w"].dtype == np.float32
    assert model["@variables"]["out_bias"].dtype == np.float64


@pytest.mark.parametrize("case", CASES)
def test_fixture_npz_keys_and_shapes(case):
    model = read_model_file(FIXTURES / f"{case}.yaml")["model"]
    z = np.load(FIXTURES / f"{case}.npz")
    nf, nloc = z["atype"].shape
    assert z["coord"].shape == (nf, nloc, 3)
    assert z["energy"].shape == (nf, 1) and z["atom_energy"].shape == (nf, nloc, 1)
    desc = model["descriptor"]
    assert z["descriptor"].shape == (nf, nloc, desc["neuron"][-1] * desc["axis_neuron"])
    assert ("box" in z) == (case != "se_a_fparam_aparam")
    if "box" in z:
        assert z["box"].shape == (nf, 9)
    fit = model["fitting"]
    assert ("fparam" in z) == (fit["numb_fparam"] > 0) and ("aparam" in z) == (fit["numb_aparam"] > 0)
    np.testing.assert_allclose(z["atom_energy"].sum(axis=1), z["energy"], rtol=1e-12)


def test_fixture_excluded_pairs_are_zeroed_by_deepmd():
    """DeePMD-kit's serialize() clears the nets of descriptor-excluded pairs (type_one_side false)."""
    nets = read_model_file(FIXTURES / "se_a_two_side_excl.yaml")["model"]["descriptor"]["embeddings"]["networks"]
    ntypes = 2
    for tc in range(ntypes):
        for tn in range(ntypes):
            ws = [lay["@variables"]["w"] for lay in nets[tc + tn * ntypes]["layers"]]
            zero = all(np.all(w == 0) for w in ws)
            assert zero == ({tc, tn} == {0, 1})


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


# --------------------------------------------------------------------------- DeePMD-kit reads our files


DPKIT_CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model
    model_file, npz = sys.argv[1], sys.argv[2]
    data = load_dp_model(model_file)
    model = BaseModel.deserialize(data["model"])
    z = np.load(npz)
    nf, nloc = z["atype"].shape
    out = model.call(z["coord"].reshape(nf, -1), z["atype"],
                     box=z["box"] if "box" in z else None,
                     fparam=z["fparam"] if "fparam" in z else None,
                     aparam=z["aparam"] if "aparam" in z else None)
    print(json.dumps({"energy": np.asarray(out["energy"]).ravel().tolist(),
                      "atom_energy": np.asarray(out["atom_energy"]).ravel().tolist(),
                      "software": data.get("software")}))
    """
)


@pytest.mark.skipif(not DPKIT_PYTHON.exists(), reason="no DeePMD-kit venv at /tmp/dpkit-venv")
@pytest.mark.parametrize("case", ["se_a_two_side_excl", "se_a_fparam_aparam", "se_a_exclusions"])
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_deepmd_reads_written_file(tmp_path, case, suffix):
    env = read_model_file(FIXTURES / f"{case}.yaml")
    for key in ("software", "version", "time", "backend"):
        env.pop(key)  # let write_model_file fill them
    fn = tmp_path / f"{case}{suffix}"
    write_model_file(fn, env)
    proc = subprocess.run([str(DPKIT_PYTHON), "-c", DPKIT_CHECK, str(fn), str(FIXTURES / f"{case}.npz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    z = np.load(FIXTURES / f"{case}.npz")
    assert res["software"] == "deepmd-kit"
    np.testing.assert_array_equal(np.array(res["energy"]), z["energy"].ravel())
    np.testing.assert_array_equal(np.array(res["atom_energy"]), z["atom_energy"].ravel())
