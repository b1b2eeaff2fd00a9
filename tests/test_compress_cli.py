"""``dpcore compress``: options and defaults of DeePMD-kit's ``dp compress``, min_nbor_dist from the model file
(both places) or from the training data of ``-t input.json``, never overwriting without ``--force``."""

import json

import numpy as np
import pytest

import dpcore
from dpcore.cli import main
from dpcore.io import read_model_file, write_model_file

from helpers import make_model, random_system
from helpers.data import write_system
from helpers.spin import make_spin_model, spin_system

COMPRESS_TOL = 1e-10  # the bound, compressed vs uncompressed (float64, default step)


def _write(path, model, **extra):
    write_model_file(path, {"model": model.to_dict(), "model_def_script": model.model_def_script, **extra})
    return path


def _info(path):
    return read_model_file(path)["model"]["descriptor"]["compress"]["@variables"]["compress_info"]


@pytest.mark.parametrize("where", ["top", "variables"])
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_compress_reads_min_nbor_dist_from_the_model_file(tmp_path, capsys, where, suffix):
    model = make_model()
    extra = {"min_nbor_dist": 0.9} if where == "top" else {"@variables": {"min_nbor_dist": np.float64(0.9)}}
    src = _write(tmp_path / f"m{suffix}", model, **extra)
    out = tmp_path / f"c{suffix}"
    assert main(["compress", "-i", str(src), "-o", str(out)]) == 0
    assert "min_nbor_dist 0.900000" in capsys.readouterr().out
    env = read_model_file(out)
    assert float(env["min_nbor_dist"]) == 0.9  # written at the top level (dp --dp compress's place)
    assert env["model"]["descriptor"]["@version"] == 3
    assert [list(i[3:]) for i in _info(out)] == [[0.01, 0.1, -1.0]] * 4  # defaults: step 0.01, frequency -1
    coord, atype, box = random_system(natoms=12, nframes=2, seed=3)
    ref, got = model.evaluate(coord, atype, box, atomic=True), dpcore.load(out).evaluate(coord, atype, box, atomic=True)
    for k in ("energy", "force", "virial", "atom_virial"):
        assert np.abs(got[k] - ref[k]).max() <= COMPRESS_TOL * np.abs(ref[k]).max(), k


def test_compress_options(tmp_path):
    src = _write(tmp_path / "m.dp", make_model(), min_nbor_dist=0.9)
    out = tmp_path / "c.dp"
    assert main(["compress", "-i", str(src), "-o", str(out), "-s", "0.02", "-e", "3", "-f", "100"]) == 0
    info = _info(out)
    assert all(list(i[3:]) == [0.02, 0.2, 100.0] and i[2] == 3 * i[1] for i in info)


def test_compress_min_nbor_dist_from_training_data(tmp_path, monkeypatch, capsys):
    from dpcore.data import load_systems
    from dpcore.stat.neighbor import data_neighbor_stat

    monkeypatch.chdir(tmp_path)
    write_system(tmp_path / "data" / "sys0", types=(0, 1, 0, 1, 1), type_map=("O", "H"), nframes=(2,), seed=4)
    (tmp_path / "input.json").write_text(json.dumps({"training": {"training_data": {"systems": ["data"]}}}))
    model = make_model()
    _write(tmp_path / "m.dp", model)
    assert main(["compress", "-i", "m.dp", "-o", "c.dp"]) == 2
    assert "stores no min_nbor_dist" in capsys.readouterr().err
    assert main(["compress", "-i", "m.dp", "-o", "c.dp", "-t", "input.json"]) == 0
    assert "training data of input.json" in capsys.readouterr().out
    expect, _ = data_neighbor_stat(load_systems(["data"], type_map=["O", "H"]), model.rcut, 2)
    assert float(read_model_file("c.dp")["min_nbor_dist"]) == expect


def test_compress_refusals(tmp_path, capsys):
    src = _write(tmp_path / "m.dp", make_model(), min_nbor_dist=0.9)
    out = tmp_path / "c.dp"
    out.write_bytes(b"precious")
    assert main(["compress", "-i", str(src), "-o", str(out)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["compress", "-i", str(src), "-o", str(out), "--force"]) == 0
    assert main(["compress", "-i", str(out), "-o", str(tmp_path / "cc.dp")]) == 2
    assert "already compressed" in capsys.readouterr().err
    resnet = _write(tmp_path / "r.dp", make_model(descriptor={"resnet_dt": True}), min_nbor_dist=0.9)
    assert main(["compress", "-i", str(resnet), "-o", str(tmp_path / "rc.dp")]) == 2
    assert "resnet_dt" in capsys.readouterr().err and not (tmp_path / "rc.dp").exists()
    assert main(["compress", "-i", str(src), "-o", str(tmp_path / "c.pth")]) == 2
    assert ".dp" in capsys.readouterr().err


def test_compress_spin_model(tmp_path):
    model = make_spin_model()
    src = _write(tmp_path / "s.dp", model, min_nbor_dist=0.15)
    out = tmp_path / "sc.dp"
    assert main(["compress", "-i", str(src), "-o", str(out)]) == 0
    comp = dpcore.load(out)
    assert comp.model_type == "spin_ener" and len(comp.config["descriptor"]["compress"]["info"]) == 16
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    ref, got = model.evaluate(coord, atype, spin, box), comp.evaluate(coord, atype, spin, box)
    for k in ("energy", "force", "force_mag", "virial"):
        assert np.abs(got[k] - ref[k]).max() <= COMPRESS_TOL * np.abs(ref[k]).max(), k


def test_training_from_a_compressed_model_is_refused(tmp_path):
    """--init-model of a compressed file: the tabulated forward would leave the embedding nets untrained."""
    from dpcore.train.setup import load_init_model

    src = _write(tmp_path / "m.dp", make_model(), min_nbor_dist=0.9)
    out = tmp_path / "c.dp"
    assert main(["compress", "-i", str(src), "-o", str(out)]) == 0
    assert load_init_model(str(src)).config["descriptor"].get("compress") is None
    with pytest.raises(ValueError, match="is a compressed model"):
        load_init_model(str(out))
