"""PyTorch backend and the ``TorchEnergyModel`` view (runs in its own process: imports only torch)."""

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpcore.backends import get_backend  # noqa: E402
from dpcore.backends.torch_module import TorchEnergyModel  # noqa: E402
from dpcore.infer.inputs import prepare  # noqa: E402
from helpers import TOL, make_model, random_system  # noqa: E402

SEL = {"sel": [16, 16]}  # no sel overflow for FRAMES
FRAMES = dict(natoms=10, nframes=2, box_len=6.0)
MODELS = {
    "two_side": {},
    "one_side_exclude": {"descriptor": {"type_one_side": True, "exclude_types": [[0, 1]]}},
    "fparam_aparam": {"fitting": {"numb_fparam": 2, "numb_aparam": 1}},
    "float32": {"descriptor": {"precision": "float32"}, "fitting": {"precision": "float32"}},
}
FD_STEP = 1e-4  # central differences on the loss: truncation ~h^2, roundoff ~eps/h
GRAD_TOL = {"fd": 1e-7, "modes": 1e-10}  # parameter gradient: vs central differences, analytic vs autodiff


def _model(name="two_side", **kw):
    spec = copy.deepcopy(MODELS[name])
    spec["descriptor"] = {**SEL, **spec.get("descriptor", {})}
    return make_model(**spec, **kw)


def _extra(model, nf=2, natoms=FRAMES["natoms"]):
    rng = np.random.default_rng(3)
    f = model.config["fitting_net"]
    return {"fparam": rng.normal(size=(nf, f["numb_fparam"])) if f["numb_fparam"] else None,
            "aparam": rng.normal(size=(nf, natoms, f["numb_aparam"])) if f["numb_aparam"] else None}


def _rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("pbc", [True, False], ids=["pbc", "cluster"])
@pytest.mark.parametrize("name", MODELS)
def test_torch_equals_numpy(name, pbc, force_mode):
    model = _model(name)
    coord, atype, box = random_system(**FRAMES)
    box = box if pbc else None
    extra = _extra(model)
    be = get_backend("torch")
    tol = TOL[model.config["fitting_net"]["precision"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inputs, blocks, _ = prepare(model, coord, atype, box, **extra)
    ref = get_backend("numpy").model_forward(model.config, model.params, inputs, blocks, atomic_virial=True)
    out = be.model_forward(model.config, be.tree_asarray(model.params), be.tree_asarray(inputs), blocks,
                           atomic_virial=True, force_mode=force_mode)
    assert set(out) == set(ref)
    for key in ref:
        assert be.to_numpy(out[key]).dtype == ref[key].dtype, key
        assert _rel_err(be.to_numpy(out[key]), ref[key]) <= tol, (key, _rel_err(be.to_numpy(out[key]), ref[key]))
    if force_mode == "analytic" and pbc:  # the public entry point, atoms in the caller's order
        got = model.evaluate(coord, atype, box, backend="torch", atomic=True, **extra)
        want = model.evaluate(coord, atype, box, atomic=True, **extra)
        for key in want:
            assert _rel_err(got[key], want[key]) <= tol, key


def test_contract_conversion_and_settings():
    be = get_backend("torch", device="cpu")
    assert be.device == torch.device("cpu")
    for dt in (np.float32, np.float64, np.int64, np.bool_):
        x = np.arange(6).reshape(2, 3).astype(dt)
        t = be.asarray(x)
        assert t.device == torch.device("cpu") and be.to_numpy(t).dtype == x.dtype
        assert np.array_equal(be.to_numpy(t), x)
    be.asarray(np.arange(3.0)[::-1])  # negative strides / read-only arrays are accepted
    ro = np.arange(3.0)
    ro.flags.writeable = False
    assert be.to_numpy(be.asarray(ro)).tolist() == [0.0, 1.0, 2.0]
    leaf = torch.ones(3, dtype=torch.float64, requires_grad=True)
    y = leaf * 2
    assert be.asarray(y) is y and be.asarray(y).requires_grad  # never detached
    assert be.settings["torch.backends.cuda.matmul.allow_tf32"] is False
    assert be.settings["torch.backends.cudnn.allow_tf32"] is False
    assert be.settings["float32_matmul_precision"] == "highest" == torch.get_float32_matmul_precision()
    caps = be.capabilities
    assert caps["autodiff"] and caps["use_default_pf"] and caps["float32"] and caps["float64"]
    assert "cpu" in caps["devices"] and (be.jit(len) is len or be.compile)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown backend 'torchh'"):
        get_backend("torchh")


def test_value_and_grad_pytree():
    be = get_backend("torch")
    tree = {"a": torch.tensor([1.0, 2.0], dtype=torch.float64), "b": [{"c": torch.tensor(3.0, dtype=torch.float64)}],
            "unused": torch.ones(2, dtype=torch.float64)}

    def f(p, s):
        return s * (torch.sum(p["a"] ** 2) + p["b"][0]["c"] ** 3), {"c": p["b"][0]["c"]}

    (val, aux), (g,) = be.value_and_grad(f, (0,), has_aux=True)(tree, 2.0)
    assert float(val) == 2 * (5 + 27) and not val.requires_grad and float(aux["c"]) == 3.0
    assert set(g) == {"a", "b", "unused"} and isinstance(g["b"], list)
    assert torch.equal(g["a"], torch.tensor([4.0, 8.0], dtype=torch.float64))
    assert float(g["b"][0]["c"]) == 54.0 and torch.equal(g["unused"], torch.zeros(2, dtype=torch.float64))
    assert not tree["a"].requires_grad  # arguments are not modified
    val, gx = be.value_and_grad(lambda x: torch.sum(torch.sin(x)), argnums=0)(tree["a"])  # int argnums: no tuple
    assert torch.allclose(gx, torch.cos(tree["a"]))
    # create_graph: the gradient can be differentiated again
    x = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    _, (gx,) = be.value_and_grad(lambda z: torch.sum(z ** 3), create_graph=True)(x)
    (hx,) = torch.autograd.grad(gx.sum(), x)
    assert torch.allclose(hx, 6 * x.detach())


# ----------------------------------------------------------------------------------- TorchEnergyModel
def _labels_and_loss(model, coord, atype, box, extra):
    labels = _model("fparam_aparam", seed=7).evaluate(coord, atype, box, **extra)
    e_lab, f_lab = torch.from_numpy(labels["energy"]), torch.from_numpy(labels["force"])

    def loss(out):
        return torch.mean((out["energy"] - e_lab) ** 2) + torch.mean((out["force"] - f_lab) ** 2)

    return loss


def test_torch_module_matches_model_and_round_trips():
    model = _model("fparam_aparam")
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
        assert _rel_err(out[key].detach().numpy(), ref[key]) <= TOL["float64"], key
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


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_torch_module_adam_step_decreases_loss(force_mode):
    model = _model("fparam_aparam")
    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    loss_of = _labels_and_loss(model, coord, atype, box, extra)
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


def test_parameter_gradient_fd_and_double_backward():
    """d(loss)/d(one weight array) with analytic forces == central differences == through autodiff forces."""
    model = _model("fparam_aparam")
    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    loss_of = _labels_and_loss(model, coord, atype, box, extra)
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
