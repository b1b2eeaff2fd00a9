"""The DeePMD-kit reference fixtures (tests/fixtures/README.md) read as standard models, and DeePMD-kit
reading the files dpcore writes (when a DeePMD-kit venv is present)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dpcore.io import read_model_file, write_model_file
from helpers import TOL
from helpers.model_files import assert_same, variables
from helpers.deepmd_kit import PYTHON as DPKIT_PYTHON, env as dpkit_env, requires_deepmd_kit

FIXTURES = Path(__file__).parent / "fixtures"
CASES = ["se_a_one_side", "se_a_two_side_excl", "se_a_fparam_aparam", "se_a_float32", "se_a_exclusions"]
MODEL_FILES = sorted(FIXTURES.glob("*.yaml")) + sorted(FIXTURES.glob("*.dp"))

h5py = pytest.importorskip("h5py")
yaml = pytest.importorskip("yaml")


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
    np.testing.assert_allclose(z["atom_energy"].sum(axis=1), z["energy"], rtol=TOL["float64"])


def test_fixture_excluded_pairs_are_zeroed_by_deepmd():
    """DeePMD-kit's serialize() clears the nets of descriptor-excluded pairs (type_one_side false)."""
    nets = read_model_file(FIXTURES / "se_a_two_side_excl.yaml")["model"]["descriptor"]["embeddings"]["networks"]
    ntypes = 2
    for tc in range(ntypes):
        for tn in range(ntypes):
            ws = [lay["@variables"]["w"] for lay in nets[tc + tn * ntypes]["layers"]]
            zero = all(np.all(w == 0) for w in ws)
            assert zero == ({tc, tn} == {0, 1})


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


@requires_deepmd_kit
@pytest.mark.parametrize("case", ["se_a_two_side_excl", "se_a_fparam_aparam", "se_a_exclusions"])
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_deepmd_reads_written_file(tmp_path, case, suffix):
    env = read_model_file(FIXTURES / f"{case}.yaml")
    for key in ("software", "version", "time", "backend"):
        env.pop(key)  # let write_model_file fill them
    fn = tmp_path / f"{case}{suffix}"
    write_model_file(fn, env)
    proc = subprocess.run([str(DPKIT_PYTHON), "-c", DPKIT_CHECK, str(fn), str(FIXTURES / f"{case}.npz")],
                          capture_output=True, text=True, timeout=300, env=dpkit_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    z = np.load(FIXTURES / f"{case}.npz")
    assert res["software"] == "deepmd-kit"
    # DeePMD-kit's own numbers move by an ulp with the NumPy/BLAS build of its venv (numpy 2.4.6 gave 1.5e-16
    # relative against the fixtures' build): the file is read right when they agree to round-off
    np.testing.assert_allclose(np.array(res["energy"]), z["energy"].ravel(), rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.array(res["atom_energy"]), z["atom_energy"].ravel(), rtol=1e-14, atol=0)
