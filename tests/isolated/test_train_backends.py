"""Training on each framework, one backend per process (``BACKENDS``; tests/helpers/isolation.py): a tiny
end-to-end run (energy and spin models) whose validation error falls, an exact restart from the middle
checkpoint, --init-model from a checkpoint and from a frozen model; training options (torch and paddle); and
dpcore's Adam on torch tensors step for step against torch.optim.Adam."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest

from dpcore.train import checkpoint as ck
from dpcore.train import lcurve, train
from helpers import TOL
from helpers.isolation import backend_under_test, import_framework
from helpers.train import make_case, make_spin_case, max_rel_diff

BACKENDS = ("jax", "paddle", "tensorflow", "torch")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)
ADAM_TOL = {"float64": 1e-14, "float32": 1e-6}  # dpcore's Adam vs torch.optim.Adam, parameters after each step


def _train_and_restart(tmp_path, numb_steps: int = 12, spin: bool = False) -> dict:
    """Train ``numb_steps`` on the tiny case (sel auto, validation, checkpoints at the middle and the end);
    the validation error decreases, lcurve.out is well formed, and a restart from the middle checkpoint
    (in a copy of the folder, as after a kill) reproduces the same lcurve.out and final parameters."""
    cfg = (make_spin_case if spin else make_case)(tmp_path / "data", numb_steps=numb_steps)
    run = tmp_path / "run"
    run.mkdir()
    result = train(cfg, BACKEND, workdir=run)
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
    assert end["step"] == numb_steps and end["backend"] == BACKEND and end["optimizer"]["step"] == numb_steps
    assert end["config"]["model"]["descriptor"]["sel"] == result["model"].sel  # "auto" resolved and recorded
    assert result["valid"]["rmse"] == pytest.approx(data[-1, 1], rel=1e-2)

    cont = tmp_path / "cont"
    shutil.copytree(run, cont)
    train(cfg, BACKEND, workdir=cont, restart=cont / f"model.ckpt-{half}.npz")
    assert (cont / "lcurve.out").read_text() == (run / "lcurve.out").read_text()
    again = ck.load_checkpoint(cont)
    assert again["step"] == numb_steps
    assert max_rel_diff(again["params"], end["params"]) <= TOL["float64"]
    assert max_rel_diff(again["optimizer"]["v"], end["optimizer"]["v"]) <= TOL["float64"]
    return {"run": run, "cfg": cfg, "lcurve": data, "result": result}


def _init_model(tmp_path, run: Path, cfg: dict) -> None:
    """--init-model from a checkpoint and from a frozen .yaml model: statistics kept, training proceeds."""
    model = ck.model_from_checkpoint(run)
    model.save(tmp_path / "frozen.yaml")
    for src in (run, tmp_path / "frozen.yaml"):
        work = tmp_path / f"init_{Path(src).name}"
        work.mkdir()
        out = train(cfg, BACKEND, workdir=work, init_model=src, numb_steps=2)
        p = out["model"].params
        np.testing.assert_array_equal(p["descriptor"]["dstd"], model.params["descriptor"]["dstd"])
        np.testing.assert_array_equal(p["out_bias"], model.params["out_bias"])
        assert max_rel_diff(p["fitting"]["nets"], model.params["fitting"]["nets"]) > 0  # trained on


def test_train_restart_init_model(tmp_path):
    out = _train_and_restart(tmp_path)
    _init_model(tmp_path, out["run"], out["cfg"])


def test_spin_train_restart_init_model(tmp_path):
    out = _train_and_restart(tmp_path, spin=True)
    _init_model(tmp_path, out["run"], out["cfg"])


@pytest.mark.backends("paddle", "torch")
def test_train_options(tmp_path):
    """disp_avg (training columns averaged since the last display), gradient_max_norm (global-norm clipping:
    a tiny norm leaves Adam's steps at ~lr * g / eps, i.e. the parameters hardly move), no validation data."""
    cfg = make_case(tmp_path / "data", numb_steps=4, sel=[24, 24])  # checkpoints at steps 2 and 4
    cfg["training"]["validation_data"] = None
    runs = {}
    for name, extra in {"plain": {"disp_freq": 1}, "avg": {"disp_avg": True, "disp_freq": 4},
                        "clip": {"gradient_max_norm": 1e-14}}.items():
        c = copy.deepcopy(cfg)
        c["training"].update(extra)
        (tmp_path / name).mkdir()
        runs[name] = train(c, BACKEND, workdir=tmp_path / name)
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


@pytest.mark.backends("torch")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_equals_torch_optim_adam(dtype, weight_decay):
    """dpcore.train.optim.adam_update on torch tensors gives torch.optim.Adam's parameters step by step."""
    import torch

    from dpcore.train.optim import adam_init, adam_update

    rng = np.random.default_rng(0)
    init = {"net": {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}, "idt": rng.normal(size=3)}
    leaves = [("net", "w"), ("net", "b"), ("idt",)]

    def get(tree, path):
        for k in path:
            tree = tree[k]
        return tree

    ref = [torch.tensor(get(init, p), dtype=getattr(torch, dtype), requires_grad=True) for p in leaves]
    opt = torch.optim.Adam(ref, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    params = {"net": {"w": ref[0].detach().clone(), "b": ref[1].detach().clone()}, "idt": ref[2].detach().clone()}
    state = adam_init(params)
    for t in range(10):
        grads = {"net": {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}, "idt": rng.normal(size=3)}
        lr = 1e-2 * 0.8 ** t
        for group in opt.param_groups:
            group["lr"] = lr
        for r, p in zip(ref, leaves):
            r.grad = torch.tensor(get(grads, p), dtype=r.dtype)
        opt.step()
        tgrads = {"net": {k: torch.tensor(v, dtype=ref[0].dtype) for k, v in grads["net"].items()},
                  "idt": torch.tensor(grads["idt"], dtype=ref[0].dtype)}
        params, state = adam_update(params, tgrads, state, lr, 0.9, 0.999, 1e-8, weight_decay)
        for r, p in zip(ref, leaves):
            assert get(params, p).dtype == r.dtype
            tol = ADAM_TOL[dtype]
            np.testing.assert_allclose(get(params, p).numpy(), r.detach().numpy(), rtol=tol, atol=tol)
