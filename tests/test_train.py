"""Training loop pieces that need no framework: Adam (NumPy), lcurve format, checkpoints, parameter
splitting, batch inputs, statistics, CLI errors; and a cross-backend restart (one process per backend).

``make_case`` (tiny synthetic periodic systems labelled by a fixed random dpcore model) is shared with
tests/isolated/test_train_<backend>.py.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpcore.train import checkpoint as ck
from dpcore.train import lcurve
from dpcore.train.optim import adam_init, adam_update, clip_by_global_norm
from helpers import TOL, make_model, random_system

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ shared data
def make_case(root, nsys: int = 2, nframes: int = 4, natoms: int = 8, numb_steps: int = 8, sel="auto") -> dict:
    """Write ``nsys`` training systems and one validation system (deepmd/npy, energies and forces of a
    fixed random model) under ``root``; return a raw input dict training a smaller model on them."""
    root = Path(root)
    teacher = make_model(seed=7, descriptor={"sel": [24, 24], "rcut": 3.5, "neuron": [4, 8]},
                         fitting={"neuron": [8, 8]})
    paths = []
    for k in range(nsys + 1):
        coord, atype, box = random_system(natoms=natoms, nframes=nframes, box_len=4.5, seed=100 + k)
        out = teacher.evaluate(coord, atype, box)
        s = root / f"sys{k}"
        (s / "set.000").mkdir(parents=True)
        np.savetxt(s / "type.raw", atype, fmt="%d")
        (s / "type_map.raw").write_text("O\nH\n")
        np.save(s / "set.000" / "coord.npy", coord.reshape(nframes, -1))
        np.save(s / "set.000" / "box.npy", box.reshape(nframes, 9))
        np.save(s / "set.000" / "energy.npy", out["energy"].reshape(nframes))
        np.save(s / "set.000" / "force.npy", out["force"].reshape(nframes, -1))
        paths.append(str(s))
    return {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": sel, "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8],
                                 "axis_neuron": 4, "seed": 1},
                  "fitting_net": {"neuron": [8, 8], "seed": 1}, "data_stat_nbatch": 2},
        "learning_rate": {"type": "exp", "start_lr": 1e-2, "stop_lr": 1e-3, "decay_steps": 2},
        "loss": {"type": "ener", "start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_f": 10.0, "limit_pref_f": 1.0},
        "training": {"training_data": {"systems": paths[:nsys], "batch_size": 2},
                     "validation_data": {"systems": paths[nsys:], "batch_size": 2, "numb_btch": 2},
                     "numb_steps": numb_steps, "seed": 3, "disp_freq": 2, "save_freq": numb_steps // 2,
                     "max_ckpt_keep": 2},
    }


def make_spin_case(root, nframes: int = 4, natoms: int = 8, numb_steps: int = 12) -> dict:
    """Two training systems and one validation system with spins (deepspin layout: spin.npy, force_mag.npy)
    labelled by a fixed random spin model (Ni magnetic, O not); the input trains a fresh spin model."""
    from dpcore.model.spin_model import SpinEnergyModel

    root = Path(root)
    model = {"type_map": ["Ni", "O"],
             "descriptor": {"type": "se_e2_a", "sel": [24, 24], "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8],
                            "axis_neuron": 4},
             "fitting_net": {"neuron": [8, 8]}, "spin": {"use_spin": [True, False], "virtual_scale": [0.3]}}
    teacher = SpinEnergyModel.from_config(model, seed=5)
    paths = []
    for k in range(3):
        coord, atype, box = random_system(natoms=natoms, nframes=nframes, box_len=4.5, seed=200 + k)
        spin = np.random.default_rng(k).normal(size=coord.shape)
        out = teacher.evaluate(coord, atype, spin, box)
        s = root / f"sys{k}"
        (s / "set.000").mkdir(parents=True)
        np.savetxt(s / "type.raw", atype, fmt="%d")
        (s / "type_map.raw").write_text("Ni\nO\n")
        for name, v in (("coord", coord), ("box", box), ("spin", spin), ("force", out["force"]),
                        ("force_mag", out["force_mag"])):
            np.save(s / "set.000" / f"{name}.npy", np.asarray(v).reshape(nframes, -1))
        np.save(s / "set.000" / "energy.npy", out["energy"].reshape(nframes))
        paths.append(str(s))
    model["descriptor"].update(sel="auto", seed=1)
    model["fitting_net"]["seed"] = 1
    return {
        "model": {**model, "data_stat_nbatch": 2},
        "learning_rate": {"type": "exp", "start_lr": 1e-2, "stop_lr": 1e-3, "decay_steps": 2},
        "loss": {"type": "ener_spin", "start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_fr": 10.0,
                 "limit_pref_fr": 1.0, "start_pref_fm": 10.0, "limit_pref_fm": 1.0},
        "training": {"training_data": {"systems": paths[:2], "batch_size": 2},
                     "validation_data": {"systems": paths[2:], "batch_size": 2, "numb_btch": 2},
                     "numb_steps": numb_steps, "seed": 3, "disp_freq": 2, "save_freq": numb_steps // 2,
                     "max_ckpt_keep": 2},
    }


def flat(tree, prefix=""):
    """{path: array} of a nested dict."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}/{k}"))
        return out
    return {prefix: np.asarray(tree)}


def max_rel_diff(a: dict, b: dict) -> float:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    scale = max(float(np.max(np.abs(v))) for v in fb.values() if v.size)
    return max(float(np.max(np.abs(fa[k] - fb[k]), initial=0.0)) for k in fa) / scale


# ------------------------------------------------------------------------------------------ Adam
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_matches_textbook_formula(wd):
    rng = np.random.default_rng(0)
    params = {"a": {"w": rng.normal(size=(3, 4))}, "b": rng.normal(size=5)}
    state = adam_init(params)
    ref = {k: (v.copy(), np.zeros_like(v), np.zeros_like(v)) for k, v in flat(params).items()}
    for t in range(1, 6):
        grads = {"a": {"w": rng.normal(size=(3, 4))}, "b": rng.normal(size=5)}
        lr = 1e-2 * 0.5 ** t
        params, state = adam_update(params, grads, state, lr, 0.9, 0.999, 1e-8, wd)
        for k, gk in flat(grads).items():
            p, m, v = ref[k]
            # torch divides by sqrt(1-b2^t) before adding eps: p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
            m = 0.9 * m + 0.1 * (gk + wd * p)
            v = 0.999 * v + 0.001 * (gk + wd * p) ** 2
            p = p - lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
            ref[k] = (p, m, v)
    assert state["step"] == 5
    for k, v in flat(params).items():
        np.testing.assert_allclose(v, ref[k][0], rtol=TOL["float64"], atol=0)
        np.testing.assert_allclose(flat(state["m"])[k], ref[k][1], rtol=1e-12)


def test_adam_keeps_dtype_and_accepts_array_step():
    rng = np.random.default_rng(1)
    p = {"w": rng.normal(size=(4,)).astype(np.float32)}
    g = {"w": rng.normal(size=(4,)).astype(np.float32)}
    s = adam_init(p)
    p1, s1 = adam_update(p, g, s, 1e-3)
    assert p1["w"].dtype == np.float32 and s1["m"]["w"].dtype == np.float32
    # a 0-d array step / lr (what a jitted step receives) gives the same numbers
    p2, s2 = adam_update(p, g, {**s, "step": np.asarray(0)}, np.asarray(1e-3))
    assert p2["w"].dtype == np.float32
    np.testing.assert_allclose(p2["w"], p1["w"], rtol=TOL["float32"])
    assert int(s2["step"]) == 1


def test_clip_by_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": {"c": np.array([4.0])}}
    out = clip_by_global_norm(g, 1.0)
    np.testing.assert_allclose(np.sqrt(np.sum(out["a"] ** 2) + np.sum(out["b"]["c"] ** 2)), 1.0, rtol=1e-6)
    same = clip_by_global_norm(g, 10.0)
    np.testing.assert_array_equal(same["a"], g["a"])


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


# ------------------------------------------------------------------------------------------ loop pieces
def test_trainable_split_merge():
    from dpcore.train.params import merge_params, split_params, trainable_mask

    model = make_model(fitting={"trainable": [True, False, True]})
    mask = trainable_mask(model.config, model.params)
    tr, fr = split_params(model.params, mask)
    assert set(tr) == {"descriptor", "fitting"} and set(tr["descriptor"]) == {"embedding"}
    assert set(tr["fitting"]["nets"]["0"]) == {"0", "2"}  # layer 1 frozen
    assert "davg" in fr["descriptor"] and "out_bias" in fr and "bias_atom_e" in fr["fitting"]
    merged = merge_params(tr, fr)
    assert flat(merged).keys() == flat(model.params).keys()
    frozen_desc = make_model(descriptor={"trainable": False})
    tr2, _ = split_params(frozen_desc.params, trainable_mask(frozen_desc.config, frozen_desc.params))
    assert "descriptor" not in tr2


def test_batch_inputs_match_inference(tmp_path):
    """Inputs built from a sampled batch give the same energies/forces as EnergyModel.evaluate."""
    from dpcore.backends import get_backend
    from dpcore.config import normalize_config
    from dpcore.data import NeighborListCache, samplers_from_config
    from dpcore.train.batch import batch_inputs
    from dpcore.train.setup import nlist_maker

    cfg = normalize_config(make_case(tmp_path, sel=[24, 24]))
    train_s, _ = samplers_from_config(cfg)
    model = make_model(descriptor={"sel": [24, 24], "rcut": 3.5, "neuron": [4, 8]}, fitting={"neuron": [8, 8]})
    train_s.nlist_cache = NeighborListCache(nlist_maker(model.config))
    batch = train_s.next_batch()
    inputs, labels, blocks = batch_inputs(model.config, batch)
    assert blocks is not None and labels["find_energy"] == 1.0 and labels["find_virial"] == 0.0
    out = get_backend("numpy").model_forward(model.config, model.params, inputs, blocks)
    ref = model.evaluate(batch["coord"], batch["atype"][0], batch["box"])
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=TOL["float64"])
    np.testing.assert_allclose(out["force"], ref["force"], rtol=TOL["float64"], atol=1e-12)


def test_stats_and_auto_sel(tmp_path):
    from dpcore.config import normalize_config
    from dpcore.data import NeighborListCache, samplers_from_config
    from dpcore.stat.labels import energy_bias
    from dpcore.stat.descriptor import descriptor_stats
    from dpcore.train.setup import build_model_and_stats, nlist_maker, resolve_sel

    cfg = normalize_config(make_case(tmp_path))
    train_s, _ = samplers_from_config(cfg)
    cfg = resolve_sel(cfg, train_s.systems)
    sel = cfg["model"]["descriptor"]["sel"]
    assert isinstance(sel, list) and all(s % 4 == 0 and s > 0 for s in sel)
    train_s.nlist_cache = NeighborListCache(nlist_maker(cfg["model"]))
    model = build_model_and_stats(cfg, train_s)
    samples = train_s.stat_batches(2)
    davg, dstd = descriptor_stats(model.config, samples)
    np.testing.assert_array_equal(model.params["descriptor"]["davg"], davg)
    np.testing.assert_array_equal(model.params["descriptor"]["dstd"], dstd)
    bias = energy_bias(samples, 2)["out_bias"].reshape(2)
    np.testing.assert_array_equal(model.params["out_bias"], bias)
    # training.stat_file: the env-matrix sums are stored, then read back instead of recomputed
    cfg["training"]["stat_file"] = str(tmp_path / "stat")
    build_model_and_stats(cfg, train_s)
    assert any((tmp_path / "stat").rglob("r_0.npy"))
    cached = build_model_and_stats(cfg, train_s)
    np.testing.assert_array_equal(cached.params["descriptor"]["dstd"], dstd)
    # --init-model keeps the given parameters (statistics included)
    again = build_model_and_stats(cfg, train_s, init_params=model.params)
    np.testing.assert_array_equal(again.params["out_bias"], model.params["out_bias"])
    bad = copy.deepcopy(model.params)
    bad["descriptor"]["davg"] = bad["descriptor"]["davg"][:, :4]
    with pytest.raises(ValueError, match="init-model.*shape"):
        build_model_and_stats(cfg, train_s, init_params=bad)


def test_train_refuses_numpy_backend(tmp_path):
    from dpcore.train import train

    with pytest.raises(ValueError, match="cannot train.*torch, jax, tensorflow, paddle"):
        train(make_case(tmp_path), "numpy")


def test_train_refuses_what_it_does_not_implement(tmp_path):
    from dpcore.train import train

    cfg = make_case(tmp_path)
    with pytest.raises(ValueError, match="mutually exclusive"):
        train(cfg, "torch", restart="a", init_model="b")
    bad = copy.deepcopy(cfg)
    bad["training"]["enable_ema"] = True
    with pytest.raises(NotImplementedError, match="training/enable_ema"):
        train(bad, "torch")



# ------------------------------------------------------------------------------------------ CLI
def _cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "DPCORE_ISOLATED"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "dpcore.cli", "train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--backend", "numpy"], "'numpy' has no automatic differentiation and cannot train"),
    (["--backend", "jaxx"],
     "unknown backend 'jaxx' (did you mean 'jax'?); choose one of torch, jax, tensorflow, paddle"),
    (["--restat", "x"], "unrecognized option '--restat'; did you mean '--restart'?"),
    (["--restart", "nowhere/model.ckpt"], "--restart: checkpoint 'nowhere/model.ckpt' not found"),
    (["--init-model", "missing.dp"], "init-model 'missing.dp' not found"),
])
def test_cli_errors(tmp_path, args, message):
    (tmp_path / "input.json").write_text(json.dumps(make_case(tmp_path / "data")))
    proc = _cli("input.json", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_input(tmp_path):
    proc = _cli("nothere.json", cwd=tmp_path)
    assert proc.returncode == 2 and "input file 'nothere.json' not found" in proc.stderr


def test_cli_restart_on_another_backend(tmp_path):
    """torch trains 8 steps (checkpoints at 4 and 8); jax restarts from torch's step-4 checkpoint in a copy of
    the folder and continues the same learning curve: lcurve.out identical, final parameters within 1e-10."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    import shutil

    cfg = make_case(tmp_path / "data", sel=[24, 24])
    run = tmp_path / "torch"
    run.mkdir()
    (run / "input.json").write_text(json.dumps(cfg))
    proc = _cli("input.json", "--backend", "torch", cwd=run)
    assert proc.returncode == 0, proc.stderr
    assert (run / "out.json").exists() and (run / "model.ckpt-4.npz").exists()
    cont = tmp_path / "jax"
    shutil.copytree(run, cont)
    proc = _cli("input.json", "--backend", "jax", "--restart", "model.ckpt-4.npz", cwd=cont)
    assert proc.returncode == 0, proc.stderr
    assert (cont / "lcurve.out").read_text() == (run / "lcurve.out").read_text()
    a = ck.load_checkpoint(run / "model.ckpt-8.npz")
    b = ck.load_checkpoint(cont / "model.ckpt-8.npz")
    assert b["backend"] == "jax" and a["backend"] == "torch"
    assert max_rel_diff(b["params"], a["params"]) < 1e-10
    assert max_rel_diff(b["optimizer"]["m"], a["optimizer"]["m"]) < 1e-8


# ------------------------------------------------------------------------------------------ shared by tests/isolated
def check_train_and_restart(backend: str, tmp_path, numb_steps: int = 12, spin: bool = False) -> dict:
    """Train ``numb_steps`` on the tiny case (sel auto, validation, checkpoints at the middle and the end);
    the validation error decreases, lcurve.out is well formed, and a restart from the middle checkpoint
    (in a copy of the folder, as after a kill) reproduces the same lcurve.out and final parameters."""
    import shutil

    from dpcore.train import train

    cfg = (make_spin_case if spin else make_case)(tmp_path / "data", numb_steps=numb_steps)
    run = tmp_path / "run"
    run.mkdir()
    result = train(cfg, backend, workdir=run)
    names, data = lcurve.read_lcurve(run / "lcurve.out")
    keys = ["rmse", "rmse_e", "rmse_fm", "rmse_fr"] if spin else ["rmse", "rmse_e", "rmse_f"]
    assert names == ["step"] + [f"{k}_{w}" for k in keys for w in ("val", "trn")] + ["lr"]
    assert data[:, 0].tolist() == [1] + list(range(2, numb_steps + 1, 2))
    assert np.all(np.isfinite(data))
    assert data[-1, 1] < 0.7 * data[0, 1], data[:, 1]  # validation rmse (the whole validation system) went down
    assert data[0, -1] == pytest.approx(1e-2) and data[-1, -1] < data[0, -1]
    half = numb_steps // 2
    assert sorted(p.name for p in run.iterdir()) == sorted(["checkpoint", "lcurve.out", f"model.ckpt-{half}.npz",
                                                           f"model.ckpt-{numb_steps}.npz"])
    end = ck.load_checkpoint(run)
    assert end["step"] == numb_steps and end["backend"] == backend and end["optimizer"]["step"] == numb_steps
    assert end["config"]["model"]["descriptor"]["sel"] == result["model"].sel  # "auto" resolved and recorded
    assert result["valid"]["rmse"] == pytest.approx(data[-1, 1], rel=1e-2)

    cont = tmp_path / "cont"
    shutil.copytree(run, cont)
    train(cfg, backend, workdir=cont, restart=cont / f"model.ckpt-{half}.npz")
    assert (cont / "lcurve.out").read_text() == (run / "lcurve.out").read_text()
    again = ck.load_checkpoint(cont)
    assert again["step"] == numb_steps
    assert max_rel_diff(again["params"], end["params"]) <= 1e-12
    assert max_rel_diff(again["optimizer"]["v"], end["optimizer"]["v"]) <= 1e-12
    return {"run": run, "cfg": cfg, "lcurve": data, "result": result}


def check_init_model(backend: str, tmp_path, run: Path, cfg: dict) -> None:
    """--init-model from a checkpoint and from a frozen .yaml model: statistics kept, training proceeds."""
    from dpcore.train import train

    model = ck.model_from_checkpoint(run)
    model.save(tmp_path / "frozen.yaml")
    for src in (run, tmp_path / "frozen.yaml"):
        work = tmp_path / f"init_{Path(src).name}"
        work.mkdir()
        out = train(cfg, backend, workdir=work, init_model=src, numb_steps=2)
        p = out["model"].params
        np.testing.assert_array_equal(p["descriptor"]["dstd"], model.params["descriptor"]["dstd"])
        np.testing.assert_array_equal(p["out_bias"], model.params["out_bias"])
        assert max_rel_diff(p["fitting"]["nets"], model.params["fitting"]["nets"]) > 0  # trained on


def test_spin_statistics(tmp_path):
    """A spin model's statistics are its backbone's on the frames with virtual atoms; virtual types get no bias."""
    from dpcore.config import normalize_config
    from dpcore.data import samplers_from_config
    from dpcore.stat.labels import energy_bias
    from dpcore.stat.descriptor import descriptor_stats
    from dpcore.train.setup import build_model_and_stats, resolve_sel, spin_stat_samples

    cfg = normalize_config(make_spin_case(tmp_path))
    train_s, _ = samplers_from_config(cfg)
    cfg = resolve_sel(cfg, train_s.systems)
    model = build_model_and_stats(cfg, train_s)
    assert model.model_type == "spin_ener" and len(model.config["type_map"]) == 4
    samples = spin_stat_samples(model, train_s.stat_batches(2))
    s0 = samples[0]
    nloc = s0["coord"].shape[1] // 2
    np.testing.assert_array_equal(s0["atype"][:, nloc:], s0["atype"][:, :nloc] + 2)
    ni = s0["atype"][0, :nloc] == 0
    np.testing.assert_allclose(s0["coord"][:, nloc:][:, ni] - s0["coord"][:, :nloc][:, ni], 0.3 * s0["spin"][:, ni])
    np.testing.assert_array_equal(s0["coord"][:, nloc:][:, ~ni], s0["coord"][:, :nloc][:, ~ni])
    davg, dstd = descriptor_stats(model.config, samples)
    np.testing.assert_array_equal(model.params["descriptor"]["dstd"], dstd)
    bias = energy_bias(samples, 4, model.config["atom_exclude_types"])["out_bias"].reshape(4)
    np.testing.assert_array_equal(model.params["out_bias"], bias)
    assert np.all(bias[2:] == 0.0) and np.all(bias[:2] != 0.0)


def check_options(backend: str, tmp_path) -> None:
    """disp_avg (training columns averaged since the last display), gradient_max_norm (global-norm clipping:
    a tiny norm leaves Adam's steps at ~lr * g / eps, i.e. the parameters hardly move), no validation data."""
    from dpcore.train import train

    cfg = make_case(tmp_path / "data", numb_steps=4, sel=[24, 24])  # checkpoints at steps 2 and 4
    cfg["training"]["validation_data"] = None
    runs = {}
    for name, extra in {"plain": {"disp_freq": 1}, "avg": {"disp_avg": True, "disp_freq": 4},
                        "clip": {"gradient_max_norm": 1e-14}}.items():
        c = copy.deepcopy(cfg)
        c["training"].update(extra)
        (tmp_path / name).mkdir()
        runs[name] = train(c, backend, workdir=tmp_path / name)
    names, plain = lcurve.read_lcurve(tmp_path / "plain" / "lcurve.out")
    assert names == ["step", "rmse_trn", "rmse_e_trn", "rmse_f_trn", "lr"]
    _, avg = lcurve.read_lcurve(tmp_path / "avg" / "lcurve.out")
    np.testing.assert_array_equal(avg[0], plain[0])  # step 1: one step averaged
    assert avg[1, 0] == 4  # the mean of the training metrics of steps 2, 3, 4 (printed with 3 digits)
    np.testing.assert_allclose(avg[1, 1:4], plain[1:4, 1:4].mean(axis=0), rtol=2e-2)
    moved = {k: max_rel_diff(runs[k]["model"].params["fitting"]["nets"],  # steps 3 and 4
                             ck.load_checkpoint(tmp_path / k / "model.ckpt-2.npz")["params"]["fitting"]["nets"])
             for k in ("plain", "clip")}
    assert moved["clip"] < 1e-3 * moved["plain"], moved
