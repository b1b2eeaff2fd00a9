"""The Paddle adapter (lazy import and registration, conversion, devices, value_and_grad with create_graph),
the energy model against the NumPy reference (both force modes), and the ``paddle.nn.Layer`` view (parameters
and buffers, forward, an Adam step, write-back, the loss gradient in both force modes).

One process, Paddle only: paddle must never share a process with tensorflow (``BACKENDS``;
tests/helpers/isolation.py).  The namespace shim: tests/isolated/test_paddle_shim.py.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dpcore.backends import get_backend
from dpcore.backends import namespace_subset as subset
from dpcore.infer.inputs import prepare, unpermute
from helpers import FORCE_MODE_GRAD_TOL, TOL, dtype_name, make_model, random_system
from helpers import rel_err_nonfinite as rel_err
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("paddle",)
BACKEND = backend_under_test(BACKENDS)
paddle = import_framework(BACKEND)

BE = get_backend("paddle")
pns = BE.namespace()
DTYPE_NAMES = subset.DTYPES


# --------------------------------------------------------------------------------------------- adapter
def test_adapter_imports_the_framework_and_registers_lazily():
    import dpcore.backends.paddle as mod

    assert mod.paddle is sys.modules["paddle"] and mod.paddle.__name__ == "paddle"
    code = ("import sys, dpcore, dpcore.xp as x\n"
            "assert 'paddle' not in sys.modules\n"
            "import dpcore.backends.paddle\n"
            "assert not x._SHIMS, 'registered at import'\n"
            "import paddle\n"
            "dt, dev = paddle.get_default_dtype(), paddle.get_device()\n"
            "from dpcore.backends import get_backend\n"
            "be = get_backend('paddle')\n"
            "assert x._SHIMS and x.namespace(paddle.zeros([1])) is be.namespace()\n"
            "assert (paddle.get_default_dtype(), paddle.get_device()) == (dt, dev)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_adapter_contract():
    assert BE.name == "paddle" and BE.capabilities["use_default_pf"] is False and BE.capabilities["autodiff"]
    assert {"paddle_version", "device", "default_dtype"} <= set(BE.settings)
    assert BE.settings["default_dtype"] == paddle.get_default_dtype()
    for dt in DTYPE_NAMES:
        for shape in ((), (0,), (2, 3)):
            a = np.zeros(shape, dtype=dt)
            t = BE.asarray(a)
            assert isinstance(t, paddle.Tensor) and dtype_name(pns, t.dtype) == dt and tuple(t.shape) == shape
            back = BE.to_numpy(t)
            assert back.dtype == a.dtype and back.shape == shape
    t = paddle.to_tensor([1.0, 2.0], stop_gradient=False)
    y = t * 2.0
    assert BE.asarray(y) is y and not y.stop_gradient  # framework tensors unchanged, never detached
    np.testing.assert_array_equal(BE.to_numpy(y), [2.0, 4.0])
    assert BE.asarray(np.arange(4.0)[::-1]).numpy().tolist() == [3.0, 2.0, 1.0, 0.0]
    cpu = get_backend("paddle", "cpu")
    assert str(cpu.asarray(np.ones(2)).place) == str(paddle.CPUPlace())
    f = lambda x: x  # noqa: E731
    assert BE.jit(f) is f
    with pytest.raises(ValueError):
        get_backend("paddle", "tpu:0")
    if not paddle.is_compiled_with_cuda():
        with pytest.raises(RuntimeError, match="no GPU"):
            get_backend("paddle", "gpu:0")


def test_value_and_grad_pytrees():
    rng = np.random.default_rng(0)
    tree_np = {"a": {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}, "l": [rng.normal(size=2), None],
               "unused": rng.normal(size=3), "n": np.arange(3)}
    x_np = rng.normal(size=(4, 3))
    tree, x = BE.tree_asarray(tree_np), BE.asarray(x_np)

    def f(p, x):
        h = pns.tanh(x @ p["a"]["w"] + p["a"]["b"])
        e = pns.sum(h * h * p["l"][0])
        return e, {"h": h}

    (val, aux), (gp, gx) = BE.value_and_grad(f, (0, 1), has_aux=True)(tree, x)
    h = np.tanh(x_np @ tree_np["a"]["w"] + tree_np["a"]["b"])
    assert abs(float(val) - np.sum(h * h * tree_np["l"][0])) <= TOL["float64"] * abs(float(val))
    gz = 2 * h * tree_np["l"][0] * (1 - h * h)
    assert rel_err(gp["a"]["w"].numpy(), x_np.T @ gz) <= TOL["float64"]
    assert rel_err(gp["a"]["b"].numpy(), gz.sum(0)) <= TOL["float64"]
    assert rel_err(gp["l"][0].numpy(), np.sum(h * h, axis=0)) <= TOL["float64"]
    assert rel_err(gx.numpy(), gz @ tree_np["a"]["w"].T) <= TOL["float64"]
    assert gp["l"][1] is None and gp["n"] is None and isinstance(gp["l"], list)
    np.testing.assert_array_equal(gp["unused"].numpy(), np.zeros(3))
    assert rel_err(aux["h"].numpy(), h) <= TOL["float64"]
    assert x.stop_gradient and tree["a"]["w"].stop_gradient  # inputs not modified
    # int argnums: JAX returns the gradient itself, not a tuple; works inside paddle.no_grad too
    with paddle.no_grad():
        val, g = BE.value_and_grad(lambda x: pns.sum(x * x), 0)(x)
    assert rel_err(g.numpy(), 2 * x_np) <= TOL["float64"]
    with pytest.raises(TypeError, match="scalar"):
        BE.value_and_grad(lambda x: x * 2.0)(x)


def test_value_and_grad_create_graph_and_graph_inputs():
    """Gradients of gradients (force training), and arguments that already depend on parameters."""
    w = paddle.to_tensor(np.array([0.3, -1.2, 0.7]), stop_gradient=False)
    x_np = np.array([0.5, 1.5, -0.25])
    # E(x) = sum(w * x^3); F = -dE/dx = -3 w x^2; d/dw sum(F^2) = 18 w x^4
    _, (gx,) = BE.value_and_grad(lambda x: pns.sum(w * x * x * x), (0,), create_graph=True)(BE.asarray(x_np))
    (gw,) = paddle.grad([pns.sum(gx * gx)], [w])
    assert rel_err(gw.numpy(), 18 * w.numpy() * x_np**4) <= TOL["float64"]
    # an argument computed from w keeps its graph: d/dw of g(2w) through value_and_grad's input
    v = w * 2.0
    val, (gv,) = BE.value_and_grad(lambda v: pns.sum(v * v), (0,), create_graph=True)(v)
    (gw2,) = paddle.grad([pns.sum(gv)], [w])  # sum(2v) = sum(4w) -> 4
    np.testing.assert_allclose(gw2.numpy(), 4.0)


# --------------------------------------------------------------------------------------------- model
SYSTEMS = {
    "pbc-triclinic-two-side": (dict(), dict(natoms=10), {}),
    "nopbc-one-side": (dict(descriptor={"type_one_side": True}), dict(natoms=9, triclinic=False), {"nopbc": True}),
    "pbc-one-side-exclusions": (dict(descriptor={"type_one_side": True, "exclude_types": [[0, 1]]},
                                     pair_exclude_types=[[1, 1]], atom_exclude_types=[1]), dict(natoms=10), {}),
    "two-side-exclude-types": (dict(descriptor={"exclude_types": [[0, 0]]}), dict(natoms=10, seed=4), {}),
    "fparam-aparam": (dict(fitting={"numb_fparam": 2, "numb_aparam": 1}), dict(natoms=8, seed=5), {"params": True}),
    "padding-mixed-frames": (dict(), dict(natoms=10, seed=6), {"padding": True}),
    "float32": (dict(descriptor={"precision": "float32"}, fitting={"precision": "float32"}), dict(natoms=10), {}),
}
MODELS: dict = {}


def system(name):
    if name not in MODELS:
        model_kw, sys_kw, opts = SYSTEMS[name]
        model = make_model(**model_kw)
        coord, atype, box = random_system(**sys_kw)
        nf, n = coord.shape[:2]
        rng = np.random.default_rng(11)
        args = dict(coord=coord, atype=atype, box=None if opts.get("nopbc") else box)
        if opts.get("padding"):  # per-frame compositions and a padding atom: the where(type) path, no sorting
            at = np.stack([atype, np.roll(atype, 3)])
            at[1, -1] = -1
            args["atype"] = at
        if opts.get("params"):
            args["fparam"] = rng.normal(size=(nf, 2))
            args["aparam"] = rng.normal(size=(nf, n, 1))
        ref = model.evaluate(**args, atomic=True)
        dt = model.config["fitting_net"]["precision"]
        MODELS[name] = (model, args, ref, "float32" if dt == "float32" else "float64")
    return MODELS[name]


def paddle_outputs(model, args, force_mode):
    inputs, blocks, perm = prepare(model, args["coord"], args["atype"], args.get("box"), args.get("fparam"),
                                   args.get("aparam"))
    out = BE.model_forward(model.config, model.backend_params(BE), BE.tree_asarray(inputs), blocks,
                           atomic_virial=True, force_mode=force_mode)
    assert all(isinstance(v, paddle.Tensor) for v in out.values())
    return unpermute({k: BE.to_numpy(v) for k, v in out.items()}, perm)


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_model_matches_numpy(name, force_mode):
    model, args, ref, dt = system(name)
    got = paddle_outputs(model, args, force_mode)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key].dtype == ref[key].dtype and got[key].shape == ref[key].shape, key
        assert rel_err(got[key], ref[key]) <= TOL[dt], (key, rel_err(got[key], ref[key]))
    assert np.abs(ref["force"]).max() > 0


def test_energy_model_evaluate_backend_paddle():
    model, args, ref, dt = system("pbc-triclinic-two-side")
    got = model.evaluate(**args, backend="paddle", atomic=True)
    for key in ref:
        assert rel_err(got[key], ref[key]) <= TOL[dt], key


# --------------------------------------------------------------------------------------------- Layer view
def _flat_keys(tree, prefix=""):
    out = []
    for k, v in tree.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def test_layer_parameters_and_buffers():
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    model, _, _, _ = system("fparam-aparam")
    layer = PaddleEnergyModel(model)
    keys = _flat_keys(model.params)
    assert sorted(layer.state_dict()) == sorted(keys)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {k for k in keys if k.startswith(("descriptor.embedding.", "fitting.nets."))}
    assert {"descriptor.davg", "descriptor.dstd", "out_bias", "fitting.fparam_avg", "fitting.bias_atom_e"} <= \
        {n for n, _ in layer.named_buffers()}
    p = layer.state_dict()["descriptor.embedding.0.1.w"]
    assert p.dtype == paddle.float64 and not p.stop_gradient
    np.testing.assert_array_equal(p.numpy(), model.params["descriptor"]["embedding"]["0"]["1"]["w"])
    frozen = make_model(descriptor={"trainable": False}, fitting={"trainable": [True, False, True]})
    names = {n for n, _ in PaddleEnergyModel(frozen).named_parameters()}
    assert not any(n.startswith("descriptor.") for n in names)
    assert "fitting.nets.0.0.w" in names and "fitting.nets.0.1.w" not in names and "fitting.nets.1.2.b" in names


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_layer_forward_matches_numpy(force_mode):
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    for name in ("pbc-triclinic-two-side", "nopbc-one-side", "fparam-aparam", "padding-mixed-frames", "float32"):
        model, args, ref, dt = system(name)
        layer = PaddleEnergyModel(model, force_mode=force_mode)
        out = layer(**args, atomic_virial=True)
        for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):
            assert isinstance(out[key], paddle.Tensor)
            assert rel_err(out[key].numpy(), ref[key]) <= TOL[dt], (name, key)


def _loss(out, labels, natoms):
    de = out["energy"] - paddle.to_tensor(labels["energy"])
    df = out["force"] - paddle.to_tensor(labels["force"])
    return pns.sum(de * de) / (de.shape[0] * natoms**2) + pns.sum(df * df) / df.size


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_layer_adam_step_decreases_energy_force_loss(force_mode):
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    model = make_model(seed=1)
    target = make_model(seed=1)
    rng = np.random.default_rng(5)
    perturbed = BE.tree_to_numpy(BE.tree_asarray(target.params))
    for net in perturbed["fitting"]["nets"].values():
        for layer in net.values():
            layer["w"] = layer["w"] + rng.normal(0, 0.05, layer["w"].shape)
    target.set_params(perturbed)
    coord, atype, box = random_system(natoms=8, nframes=2, seed=9)
    labels = target.evaluate(coord, atype, box)
    layer = PaddleEnergyModel(model, force_mode=force_mode)
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=layer.parameters())
    loss0 = _loss(layer(coord, atype, box), labels, 8)
    loss0.backward()
    grad_norm = sum(float(pns.sum(p.grad * p.grad)) for p in layer.parameters() if p.grad is not None)
    assert grad_norm > 0
    opt.step()
    opt.clear_grad()
    with paddle.no_grad():
        out1 = layer(coord, atype, box)
    loss1 = _loss(out1, labels, 8)
    assert float(loss1) < float(loss0)
    # write back: the EnergyModel now gives the layer's numbers with the NumPy backend
    layer.write_back()
    ref = model.evaluate(coord, atype, box)
    for key in ("energy", "force", "virial"):
        assert rel_err(out1[key].numpy(), ref[key]) <= TOL["float64"], key


def test_layer_loss_gradient_same_in_both_force_modes():
    """d(energy+force loss)/d(params): analytic forces (one backward) vs autodiff forces (create_graph)."""
    from dpcore.backends.paddle_layer import PaddleEnergyModel

    model, args, ref, _ = system("pbc-triclinic-two-side")
    labels = {k: v * 1.1 for k, v in ref.items()}
    grads = []
    for mode in ("analytic", "autodiff"):
        layer = PaddleEnergyModel(model, force_mode=mode)
        _loss(layer(**args), labels, 10).backward()
        grads.append({n: p.grad.numpy() for n, p in layer.named_parameters()})
    for n in grads[0]:
        assert rel_err(grads[1][n], grads[0][n]) <= FORCE_MODE_GRAD_TOL, n
