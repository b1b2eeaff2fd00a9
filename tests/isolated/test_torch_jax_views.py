"""The framework-native views of the PyTorch and JAX backends around the same parameter dict, one backend per
process (``BACKENDS``; tests/helpers/isolation.py): PyTorch's ``TorchEnergyModel`` (an ``nn.Module``) and JAX's
pure function ``dpcore.backends.jax_model.energy_fn`` (a parameter pytree).  Through each, the model's numbers,
an optimizer step that lowers an energy + force loss, and a parameter gradient that equals central differences
and the gradient through the other force mode."""

import copy

import numpy as np
import pytest

from helpers import FORCE_MODE_GRAD_TOL, LOSS_GRAD_FD_TOL, TOL, make_model, random_fparam_aparam, random_system, rel_err
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("jax", "torch")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)

SEL = {"sel": [16, 16]}  # no sel overflow for FRAMES
FRAMES = dict(natoms=10, nframes=2, box_len=6.0)
FPARAM_APARAM = {"descriptor": SEL, "fitting": {"numb_fparam": 2, "numb_aparam": 1}}
FD_STEP = 1e-4  # central differences on the loss: truncation ~h^2, roundoff ~eps/h
GRAD_TOL = {"fd": LOSS_GRAD_FD_TOL, "modes": FORCE_MODE_GRAD_TOL}  # parameter gradient: vs FD, analytic vs autodiff


def _model(**kw):
    return make_model(**FPARAM_APARAM, **kw)


def _extra(model, nf=2, natoms=FRAMES["natoms"]):
    fparam, aparam = random_fparam_aparam(model, nf, natoms)
    return {"fparam": fparam, "aparam": aparam}


# ----------------------------------------------------------------------------------- PyTorch: TorchEnergyModel
def _torch_labels_and_loss(model, coord, atype, box, extra):
    import torch

    labels = _model(seed=7).evaluate(coord, atype, box, **extra)
    e_lab, f_lab = torch.from_numpy(labels["energy"]), torch.from_numpy(labels["force"])

    def loss(out):
        return torch.mean((out["energy"] - e_lab) ** 2) + torch.mean((out["force"] - f_lab) ** 2)

    return loss


@pytest.mark.backends("torch")
def test_torch_module_matches_model_and_round_trips():
    import torch

    from dpcore.backends.torch_module import TorchEnergyModel

    model = _model()
    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    tm = TorchEnergyModel(model)
    names = dict(tm.named_parameters())
    assert "descriptor.embedding.0.1.w" in names and "fitting.nets.1.0.b" in names
    assert {"descriptor.davg", "descriptor.dstd", "out_bias", "fitting.bias_atom_e", "fitting.fparam_avg",
            "fitting.aparam_inv_std"} <= set(dict(tm.named_buffers()))
    assert all(p.requires_grad for p in tm.parameters())
    frozen = TorchEnergyModel(make_model(descriptor={**SEL, "trainable": False}))
    assert {k.split(".")[0] for k, p in frozen.named_parameters() if not p.requires_grad} == {"descriptor"}
    out = tm(torch.from_numpy(coord), atype, torch.from_numpy(box), **extra)
    ref = model.evaluate(coord, atype, box, **extra)
    for key in ("energy", "atom_energy", "force", "virial"):
        assert rel_err(out[key].detach().numpy(), ref[key]) <= TOL["float64"], key
    back = tm.to_energy_model()
    np.testing.assert_array_equal(back.params["descriptor"]["embedding"]["0"]["0"]["w"],
                                  model.params["descriptor"]["embedding"]["0"]["0"]["w"])
    # torch.func.functional_call with replaced parameters equals the module with those parameters loaded
    new = {k: v.detach() * 1.01 for k, v in tm.named_parameters()}
    functional = torch.func.functional_call(tm, new, (coord, atype, box), extra)
    tm2 = TorchEnergyModel(model)
    tm2.load_state_dict({**tm2.state_dict(), **new})
    np.testing.assert_allclose(functional["force"].detach().numpy(), tm2(coord, atype, box, **extra)["force"].detach().numpy(),
                               rtol=TOL["float64"], atol=0)
    # forces are differentiable w.r.t. coordinates given as tensors (second derivative flows)
    c = torch.from_numpy(coord).requires_grad_(True)
    weights = torch.from_numpy(np.random.default_rng(0).normal(size=coord.shape))  # (sum of forces is 0)
    (gc,) = torch.autograd.grad(torch.sum(tm(c, atype, box, **extra)["force"] * weights), c)
    assert torch.isfinite(gc).all() and float(gc.abs().max()) > 0


@pytest.mark.backends("torch")
@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_torch_module_adam_step_decreases_loss(force_mode):
    import torch

    from dpcore.backends.torch_module import TorchEnergyModel

    model = _model()
    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    loss_of = _torch_labels_and_loss(model, coord, atype, box, extra)
    tm = TorchEnergyModel(model, force_mode=force_mode)
    opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    loss0 = loss_of(tm(coord, atype, box, **extra))
    opt.zero_grad()
    loss0.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tm.parameters())
    opt.step()
    with torch.no_grad():
        loss1 = loss_of(tm(coord, atype, box, **extra))
    assert float(loss1) < float(loss0.detach())
    trained = tm.write_to(copy.deepcopy(model))
    np.testing.assert_allclose(trained.evaluate(coord, atype, box, **extra)["energy"],
                               tm(coord, atype, box, **extra)["energy"].detach().numpy(), rtol=TOL["float64"])


@pytest.mark.backends("torch")
def test_torch_parameter_gradient_fd_and_double_backward():
    """d(loss)/d(one weight array) with analytic forces == central differences == through autodiff forces."""
    import torch

    from dpcore.backends.torch_module import TorchEnergyModel

    model = _model()
    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    loss_of = _torch_labels_and_loss(model, coord, atype, box, extra)
    key = "descriptor.embedding.1.1.w"  # (4, 8): through embedding net, env matrix and the force backward
    grads = {}
    for mode in ("analytic", "autodiff"):
        tm = TorchEnergyModel(model, force_mode=mode)
        (grads[mode],) = torch.autograd.grad(loss_of(tm(coord, atype, box, **extra)), [dict(tm.named_parameters())[key]])
    tm = TorchEnergyModel(model)
    w = dict(tm.named_parameters())[key]
    fd = torch.zeros_like(w)
    with torch.no_grad():
        for idx in np.ndindex(*w.shape):
            w0 = float(w[idx])
            vals = []
            for h in (FD_STEP, -FD_STEP):
                w[idx] = w0 + h
                vals.append(float(loss_of(tm(coord, atype, box, **extra))))
            w[idx] = w0
            fd[idx] = (vals[0] - vals[1]) / (2 * FD_STEP)
    scale = float(fd.abs().max())
    assert scale > 0
    assert float((grads["analytic"] - fd).abs().max()) <= GRAD_TOL["fd"] * scale
    assert float((grads["analytic"] - grads["autodiff"]).abs().max()) <= GRAD_TOL["modes"] * scale


# ----------------------------------------------------------------------------------- JAX: energy_fn
def _jax_view(model, force_mode="analytic"):
    import jax.numpy as jnp

    from dpcore.backends.jax_model import energy_fn, neighbors

    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    params, fn = energy_fn(model, force_mode=force_mode)
    nbr = neighbors(model, coord, atype, box)
    labels = _model(seed=7).evaluate(coord, atype, box, **extra)

    def loss(p):
        out = fn(p, coord, box, nbr, **extra)
        return jnp.mean((out["energy"] - labels["energy"]) ** 2) + jnp.mean((out["force"] - labels["force"]) ** 2)

    return params, fn, nbr, (coord, atype, box, extra), loss


@pytest.mark.backends("jax")
def test_jax_energy_fn_matches_model_under_jit():
    import jax

    model = _model()
    params, fn, nbr, (coord, atype, box, extra), _ = _jax_view(model)
    ref = model.evaluate(coord, atype, box, **extra)
    out = jax.jit(fn)(params, coord, box, nbr, **extra)
    for key in ("energy", "atom_energy", "force", "virial"):
        assert rel_err(out[key], ref[key]) <= TOL["float64"], key


@pytest.mark.backends("jax")
def test_jax_energy_fn_sgd_step_decreases_loss(force_mode="analytic"):  # (autodiff: the gradient test below)
    import jax

    from dpcore.backends.jax_model import params_to_numpy

    model = _model()
    params, fn, nbr, (coord, atype, box, extra), loss = _jax_view(model, force_mode)
    loss0, grads = jax.jit(jax.value_and_grad(loss))(params)
    lr = 1e-3  # optax is not a dependency: one plain SGD step on the network weights
    trainable = ("embedding", "nets")  # network weights; statistics are not trained

    def step(path, p, g):
        return p - lr * g if any(getattr(k, "key", None) in trainable for k in path) else p

    new = jax.tree_util.tree_map_with_path(step, params, grads)
    assert float(loss(new)) < float(loss0)
    trained = copy.deepcopy(model)
    trained.set_params(params_to_numpy(new))
    np.testing.assert_allclose(trained.evaluate(coord, atype, box, **extra)["energy"],
                               np.asarray(fn(new, coord, box, nbr, **extra)["energy"]), rtol=TOL["float64"])


@pytest.mark.backends("jax")
def test_jax_parameter_gradient_fd_and_double_backward():
    """d(loss)/d(one weight array) with analytic forces == central differences == through autodiff forces."""
    import jax

    model = _model()
    path = ("descriptor", "embedding", "1", "1", "w")  # (4, 8): embedding net, env matrix, force backward

    def get(tree):
        for k in path:
            tree = tree[k]
        return tree

    def with_w(tree, w):
        tree = jax.tree_util.tree_map(lambda x: x, tree)  # fresh containers
        node = tree
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = w
        return tree

    grads = {}
    for mode in ("analytic", "autodiff"):
        params, _, _, _, loss = _jax_view(model, mode)
        grads[mode] = np.asarray(jax.grad(lambda w: loss(with_w(params, w)))(get(params)))
    params, _, _, _, loss = _jax_view(model)
    w0 = np.asarray(get(params))
    fd = np.zeros_like(w0)
    loss_w = jax.jit(lambda w: loss(with_w(params, w)))
    for idx in np.ndindex(*w0.shape):
        vals = []
        for h in (FD_STEP, -FD_STEP):
            w = w0.copy()
            w[idx] += h
            vals.append(float(loss_w(w)))
        fd[idx] = (vals[0] - vals[1]) / (2 * FD_STEP)
    scale = np.abs(fd).max()
    assert scale > 0
    assert np.abs(grads["analytic"] - fd).max() <= GRAD_TOL["fd"] * scale
    assert np.abs(grads["analytic"] - grads["autodiff"]).max() <= GRAD_TOL["modes"] * scale
