"""Training on torch (its own process): tiny end-to-end run, exact restart, --init-model."""

import pytest

pytest.importorskip("torch")

from test_train import check_init_model, check_train_and_restart  # noqa: E402


def test_train_restart_init_model(tmp_path):
    out = check_train_and_restart("torch", tmp_path)
    check_init_model("torch", tmp_path, out["run"], out["cfg"])


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-14), ("float32", 1e-6)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_equals_torch_optim_adam(dtype, tol, weight_decay):
    """dpcore.train.optim.adam_update on torch tensors gives torch.optim.Adam's parameters step by step."""
    import numpy as np
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
            np.testing.assert_allclose(get(params, p).numpy(), r.detach().numpy(), rtol=tol, atol=tol)
    assert state["step"] == 10


def test_spin_train_restart_init_model(tmp_path):
    out = check_train_and_restart("torch", tmp_path, spin=True)
    check_init_model("torch", tmp_path, out["run"], out["cfg"])


def test_train_options(tmp_path):
    from test_train import check_options

    check_options("torch", tmp_path)
