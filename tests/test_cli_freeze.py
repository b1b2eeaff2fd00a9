"""``dpcore freeze``: checkpoint -> DeePMD-kit model file, read back by dpcore (and DeePMD-kit if present)."""

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dpcore
from dpcore.train.checkpoint import write_checkpoint
from dpcore.cli import main

from helpers import TOL, make_model, random_system
from helpers.deepmd_kit import PYTHON as DPKIT_PYTHON, env as dpkit_env, requires_deepmd_kit



@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture
def save_dir(tmp_path, model):
    """A training folder with two checkpoints; the pointer names the later one (step 20)."""
    folder = tmp_path / "run"
    other = make_model(seed=9)
    write_checkpoint(folder, "model.ckpt", {"params": other.params, "config": {"model": other.config}, "step": 10})
    write_checkpoint(folder, "model.ckpt", {"params": model.params, "config": {"model": model.config}, "step": 20})
    return folder


def _same_predictions(a, b):
    coord, atype, box = random_system(natoms=8, nframes=2, seed=4)
    pa, pb = a.evaluate(coord, atype, box), b.evaluate(coord, atype, box)
    for k in ("energy", "force", "virial"):
        np.testing.assert_allclose(pb[k], pa[k], rtol=TOL["float64"], atol=TOL["float64"], err_msg=k)


@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
@pytest.mark.parametrize("how", ["folder", "pointer", "file", "-c"])
def test_freeze_then_load(tmp_path, save_dir, model, suffix, how, capsys):
    out = tmp_path / f"frozen{suffix}"
    src = {"folder": [str(save_dir)], "pointer": [str(save_dir / "checkpoint")],
           "file": [str(save_dir / "model.ckpt-20.npz")], "-c": ["-c", str(save_dir)]}[how]
    assert main(["freeze", *src, "-o", str(out)]) == 0
    assert "model.ckpt-20.npz" in capsys.readouterr().out
    _same_predictions(model, dpcore.load(out))
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_refuses_to_overwrite_without_force(tmp_path, save_dir, model, capsys):
    out = tmp_path / "model.dp"
    out.write_bytes(b"precious")
    assert main(["freeze", str(save_dir), "-o", str(out)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["freeze", str(save_dir), "-o", str(out), "--force"]) == 0
    _same_predictions(model, dpcore.load(out))


def test_clear_errors(tmp_path, save_dir, capsys):
    assert main(["freeze", str(save_dir), "-o", str(tmp_path / "model.pth")]) == 2
    assert "must end in one of .dp, .yaml, .yml" in capsys.readouterr().err
    assert main(["freeze", str(tmp_path / "nothing"), "-o", str(tmp_path / "m.dp")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main(["freeze", str(tmp_path / "junk.npz"), "-o", str(tmp_path / "m.dp")]) == 2
    assert "not a dpcore checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m.dp").exists()


DPKIT_EVAL = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model
    data = load_dp_model(sys.argv[1])
    model = BaseModel.deserialize(data["model"])
    z = np.load(sys.argv[2])
    out = model.call(z["coord"].reshape(len(z["box"]), -1), z["atype"], box=z["box"])
    print(json.dumps({"energy": np.asarray(out["energy"]).ravel().tolist()}))
    """
)


@requires_deepmd_kit
def test_deepmd_kit_reads_frozen_model(tmp_path, save_dir, model):
    out = tmp_path / "frozen.dp"
    assert main(["freeze", str(save_dir), "-o", str(out)]) == 0
    coord, atype, box = random_system(natoms=8, nframes=2, seed=4)
    np.savez(tmp_path / "in.npz", coord=coord, atype=np.broadcast_to(atype, (2, 8)), box=box)
    proc = subprocess.run([str(DPKIT_PYTHON), "-c", DPKIT_EVAL, str(out), str(tmp_path / "in.npz")],
                          capture_output=True, text=True, timeout=300, env=dpkit_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    energy = np.array(json.loads(proc.stdout.strip().splitlines()[-1])["energy"])
    np.testing.assert_allclose(energy, model.evaluate(coord, atype, box)["energy"].ravel(), rtol=1e-10)
