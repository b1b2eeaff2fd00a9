"""What training writes: lcurve.out in DeePMD-kit's format, and backend-neutral checkpoints (round trip,
atomic writes, rotation, resolution, a model from a checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpcore.train import checkpoint as ck
from dpcore.train import lcurve
from helpers import TOL, make_model, random_system
from helpers.train import flat


# ------------------------------------------------------------------------------------------ lcurve
def test_lcurve_header_and_line_golden():
    keys = ["rmse", "rmse_e", "rmse_f", "rmse_v"]
    head = lcurve.header(keys)
    assert head == (
        "# step       rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn"
        "    rmse_v_val  rmse_v_trn"
        "   lr      \n"
        "# If there is no available reference data, rmse_*_{val,trn} will print nan\n")
    trn = {"rmse": 23.4, "rmse_e": 0.07, "rmse_f": 0.739, "rmse_v": float("nan")}
    val = {"rmse": 26.3, "rmse_e": 0.0686, "rmse_f": 0.832, "rmse_v": float("nan")}
    assert lcurve.line(1, 1e-3, trn, val, keys) == (
        "      1      2.63e+01    2.34e+01      6.86e-02    7.00e-02      8.32e-01    7.39e-01           nan"
        "         nan    1.0e-03\n")


def test_lcurve_without_validation_and_read_back(tmp_path):
    keys = ["rmse", "rmse_e"]
    assert lcurve.header(keys, validation=False).splitlines()[0] == "# step       rmse_trn    rmse_e_trn   lr      "
    one = lcurve.line(2000, 3.5e-8, {"rmse_e": 1e-3, "rmse": 0.5})
    assert one == "   2000      5.00e-01      1.00e-03    3.5e-08\n"
    path = tmp_path / "lcurve.out"
    path.write_text(lcurve.header(keys, False) + lcurve.line(1, 1e-3, {"rmse": 1, "rmse_e": 2})
                    + lcurve.line(10, 1e-4, {"rmse": 3, "rmse_e": float("nan")}))
    names, data = lcurve.read_lcurve(path)
    assert names == ["step", "rmse_trn", "rmse_e_trn", "lr"]
    assert data.shape == (2, 4) and data[1, 0] == 10 and np.isnan(data[1, 2])
    assert lcurve.truncate_after(path, 5) == 1
    names, data = lcurve.read_lcurve(path)
    assert data.shape == (1, 4) and path.read_text().startswith("# step")


# ------------------------------------------------------------------------------------------ checkpoints
def _state():
    rng = np.random.default_rng(0)
    return {"params": {"descriptor": {"davg": rng.normal(size=(2, 3, 4)), "embedding": {"0": {"0": {
        "w": rng.normal(size=(1, 4)).astype(np.float32)}}}}, "out_bias": np.array([1.5, -2.0])},
        "optimizer": {"type": "Adam", "step": 7, "m": {"x": np.zeros(3)}, "v": {}},
        "step": 7, "sampler": {"train": np.random.default_rng(5).bit_generator.state, "order": [[3, 1, 2], None]},
        "config": {"model": {"sel": [4, 8]}, "flag": True, "none": None}, "backend": "torch"}


def test_checkpoint_round_trip(tmp_path):
    state = _state()
    ck.save_checkpoint(tmp_path / "a.npz", state)
    back = ck.load_checkpoint(tmp_path / "a.npz")
    assert back.pop("path") == str(tmp_path / "a.npz")
    assert flat(back["params"]).keys() == flat(state["params"]).keys()
    for k, v in flat(state["params"]).items():
        assert flat(back["params"])[k].dtype == v.dtype
        np.testing.assert_array_equal(flat(back["params"])[k], v)
    assert back["optimizer"]["v"] == {} and back["step"] == 7
    assert back["sampler"] == json.loads(json.dumps(state["sampler"]))  # big-int RNG state kept exactly
    g = np.random.default_rng()
    g.bit_generator.state = back["sampler"]["train"]
    assert g.random() == np.random.default_rng(5).random()
    assert back["config"] == state["config"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    ck.save_checkpoint(path, {"step": 1, "x": np.ones(3)})
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, {"step": 2, "x": np.zeros(3)})
    assert path.read_bytes() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary left behind


def test_checkpoint_rotation_and_resolution(tmp_path):
    for step in (10, 20, 30, 40):
        ck.write_checkpoint(tmp_path, "model.ckpt", {"step": step, "x": np.full(2, step)}, max_keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint", "model.ckpt-30.npz", "model.ckpt-40.npz"]
    assert (tmp_path / "checkpoint").read_text().strip() == "model.ckpt-40.npz"
    for form in (tmp_path, tmp_path / "checkpoint", tmp_path / "model.ckpt", tmp_path / "model.ckpt-40.npz"):
        assert ck.resolve_checkpoint(form) == tmp_path / "model.ckpt-40.npz"
    assert ck.load_checkpoint(tmp_path / "model.ckpt-30.npz")["step"] == 30
    with pytest.raises(FileNotFoundError, match="not found"):
        ck.resolve_checkpoint(tmp_path / "other.ckpt")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a dpcore checkpoint"):
        ck.load_checkpoint(tmp_path / "junk.npz")


def test_model_from_checkpoint(tmp_path):
    model = make_model()
    ck.write_checkpoint(tmp_path, "model.ckpt", {"params": model.params, "config": {"model": model.config}, "step": 3})
    back = ck.model_from_checkpoint(tmp_path)
    coord, atype, box = random_system(natoms=6, nframes=1)
    np.testing.assert_allclose(back.evaluate(coord, atype, box)["energy"], model.evaluate(coord, atype, box)["energy"],
                               rtol=TOL["float64"])
