"""The PyTorch and JAX backends, one per process (``BACKENDS``; tests/helpers/isolation.py).

The energy model (four variants, periodic and cluster) and the spin model on the backend equal the NumPy
reference with analytic and autodiff forces.  Backend-specific tests (``@pytest.mark.backends``, named after
their framework): each adapter's contract, value_and_grad and jit, JAX's compiled spin forward, the spin force
loss gradient through both force modes on PyTorch.  The framework-native views: test_torch_jax_views.py.
"""

import copy
import warnings

import numpy as np
import pytest

from dpcore.backends import get_backend
from dpcore.infer.inputs import prepare
from helpers import FORCE_MODE_GRAD_TOL, TOL, make_model, random_fparam_aparam, random_system, rel_err
from helpers.isolation import backend_under_test, import_framework
from helpers.spin import MODELS as SPIN_MODELS
from helpers.spin import make_spin_model, spin_system

BACKENDS = ("jax", "torch")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)

SEL = {"sel": [16, 16]}  # no sel overflow for FRAMES
FRAMES = dict(natoms=10, nframes=2, box_len=6.0)
MODELS = {
    "two_side": {},
    "one_side_exclude": {"descriptor": {"type_one_side": True, "exclude_types": [[0, 1]]}},
    "fparam_aparam": {"fitting": {"numb_fparam": 2, "numb_aparam": 1}},
    "float32": {"descriptor": {"precision": "float32"}, "fitting": {"precision": "float32"}},
}
SPIN_KEYS = ("energy", "atom_energy", "force", "force_mag", "virial", "atom_virial", "mask_mag", "mask")
SPIN_CASES = {"torch": [(name, system) for name in SPIN_MODELS for system in ("pbc_triclinic", "cluster")],
              "jax": [("three_types", "pbc_triclinic")]}  # (model, system); on jax each case compiles


def _model(name="two_side", **kw):
    spec = copy.deepcopy(MODELS[name])
    spec["descriptor"] = {**SEL, **spec.get("descriptor", {})}
    return make_model(**spec, **kw)


def _extra(model, nf=2, natoms=FRAMES["natoms"]):
    fparam, aparam = random_fparam_aparam(model, nf, natoms)
    return {"fparam": fparam, "aparam": aparam}


def _prepared(name, pbc=True):
    model = _model(name)
    coord, atype, box = random_system(**FRAMES)
    box = box if pbc else None
    extra = _extra(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inputs, blocks, _ = prepare(model, coord, atype, box, **extra)
    return model, inputs, blocks


# ----------------------------------------------------------------------------------- both backends
@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("pbc", [True, False], ids=["pbc", "cluster"])
@pytest.mark.parametrize("name", MODELS)
def test_model_equals_numpy(name, pbc, force_mode):
    model, inputs, blocks = _prepared(name, pbc)
    be = get_backend(BACKEND)
    tol = TOL[model.config["fitting_net"]["precision"]]
    ref = get_backend("numpy").model_forward(model.config, model.params, inputs, blocks, atomic_virial=True)
    out = be.model_forward(model.config, be.tree_asarray(model.params), be.tree_asarray(inputs), blocks,
                           atomic_virial=True, force_mode=force_mode)
    assert set(out) == set(ref)
    for key in ref:
        got = be.to_numpy(out[key])
        assert got.dtype == ref[key].dtype, key
        assert rel_err(got, ref[key]) <= tol, (key, rel_err(got, ref[key]))
    if force_mode == "analytic" and pbc:  # the public entry point, atoms in the caller's order
        coord, atype, box = random_system(**FRAMES)
        extra = _extra(model)
        got = model.evaluate(coord, atype, box, backend=BACKEND, atomic=True, **extra)
        want = model.evaluate(coord, atype, box, atomic=True, **extra)
        for key in want:
            assert rel_err(got[key], want[key]) <= tol, key


def test_unknown_backend_name():
    typo = BACKEND + BACKEND[-1]  # torchh, jaxx
    with pytest.raises(ValueError, match=f"unknown backend '{typo}'"):
        get_backend(typo)


# ----------------------------------------------------------------------------------- spin model
def _spin_inputs(name, system):
    model = make_spin_model(name)
    coord, atype, spin, box = spin_system(model, system)
    f = model.config["fitting_net"]
    rng = np.random.default_rng(0)
    fparam = rng.normal(size=(2, f["numb_fparam"])) if f["numb_fparam"] else None
    aparam = rng.normal(size=(2, coord.shape[1], f["numb_aparam"])) if f["numb_aparam"] else None
    return model, (coord, atype, spin, box, fparam, aparam)


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("name, system", SPIN_CASES[BACKEND])
def test_spin_model_equals_numpy(name, system, force_mode):
    model, args = _spin_inputs(name, system)
    ref = model.evaluate(*args, atomic=True)
    out = model.evaluate(*args, backend=BACKEND, atomic=True, force_mode=force_mode)
    for k in SPIN_KEYS:
        assert out[k].dtype == ref[k].dtype and out[k].shape == ref[k].shape, k
        scale = max(np.abs(ref[k]).max(), 1e-300)
        assert np.abs(out[k].astype(float) - ref[k].astype(float)).max() <= TOL["float64"] * scale, k


@pytest.mark.backends("jax")
@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
def test_jax_spin_model_reuses_the_compiled_forward(force_mode):
    model, (coord, *rest) = _spin_inputs("three_types", "pbc_triclinic")
    be = get_backend("jax")
    model.evaluate(coord, *rest, backend="jax", atomic=True, force_mode=force_mode)
    compiled = dict(be._compiled_forwards)
    assert any(k[0] == "spin" for k in compiled)
    model.evaluate(coord + 0.01, *rest, backend="jax", atomic=True, force_mode=force_mode)
    assert be._compiled_forwards.keys() == compiled.keys()  # same config, blocks and modes: no new compilation
    assert all(be._compiled_forwards[k] is compiled[k] for k in compiled)


def _torch_spin_loss_grads(model, inputs, blocks, force_mode):
    import torch

    from dpcore.model.spin_model import model_forward

    be = get_backend("torch")
    params = be.tree_asarray(model.params)
    leaves = [params["fitting"]["nets"]["0"]["0"]["w"], params["descriptor"]["embedding"]["0"]["0"]["w"]]
    for x in leaves:
        x.requires_grad_(True)
    out = model_forward(be, model.config, params, be.tree_asarray(inputs), blocks, force_mode=force_mode,
                        create_graph=True)
    loss = (out["force"] ** 2).sum() + (out["force_mag"] ** 2).sum() + (out["virial"] ** 2).sum()
    return [g.detach().numpy() for g in torch.autograd.grad(loss, leaves)]


@pytest.mark.backends("torch")
def test_torch_spin_force_loss_gradients_agree_between_force_modes():
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    inputs, blocks, _ = model.prepare(coord, atype, spin, box)
    a = _torch_spin_loss_grads(model, inputs, blocks, "analytic")
    b = _torch_spin_loss_grads(model, inputs, blocks, "autodiff")
    for ga, gb in zip(a, b):
        assert np.abs(ga).max() > 0
        assert np.abs(ga - gb).max() <= FORCE_MODE_GRAD_TOL * np.abs(ga).max()


# ----------------------------------------------------------------------------------- PyTorch
@pytest.mark.backends("torch")
def test_torch_contract_conversion_and_settings():
    import torch

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


@pytest.mark.backends("torch")
def test_torch_value_and_grad_pytree():
    import torch

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


# ----------------------------------------------------------------------------------- JAX
@pytest.mark.backends("jax")
def test_jax_jit_gives_same_numbers(force_mode="analytic"):  # (autodiff under jit: test_model_equals_numpy)
    from dpcore.backends.base import _energy_forward

    model, inputs, blocks = _prepared("fparam_aparam")
    be = get_backend("jax")
    params, inp = be.tree_asarray(model.params), be.tree_asarray(inputs)

    def f(p, i):  # the un-jitted core call (the adapter's model_forward is itself jitted)
        return _energy_forward(be, model.config, p, i, blocks, atomic_virial=True, force_mode=force_mode)

    eager, jitted, adapter = f(params, inp), be.jit(f)(params, inp), be.model_forward(
        model.config, params, inp, blocks, atomic_virial=True, force_mode=force_mode)
    for key in eager:
        assert rel_err(adapter[key], np.asarray(eager[key])) <= TOL["float64"], key
    for key in eager:
        assert rel_err(jitted[key], np.asarray(eager[key])) <= TOL["float64"], key


@pytest.mark.backends("jax")
def test_jax_contract_conversion_device_and_settings():
    import jax

    be = get_backend("jax", device="cpu")
    assert be.device == jax.devices("cpu")[0]
    assert be.settings["jax_enable_x64"] is True and jax.config.jax_enable_x64
    assert be.settings["jax_default_matmul_precision"] == "highest"
    for dt in (np.float32, np.float64, np.int64, np.bool_):
        x = np.arange(6).reshape(2, 3).astype(dt)
        y = be.asarray(x)
        assert y.dtype == x.dtype and be.to_numpy(y).dtype == x.dtype and np.array_equal(be.to_numpy(y), x)
        assert y.devices() == {be.device} and be.asarray(y) is y
    out = get_backend("jax", device="cpu:0").model_forward(*(lambda m, i, b: (m.config, be.tree_asarray(m.params),
                                                                              be.tree_asarray(i), b))(*_prepared("two_side")))
    assert out["force"].devices() == {be.device}
    kept = be.asarray(np.ones(2))
    tree = {"a": np.arange(3, dtype=np.int32), "b": [np.float64(2.5), None, 7, kept], "c": (np.zeros((2, 2)),)}
    placed = be.tree_asarray(tree)  # one batched device_put for the NumPy leaves; the rest kept
    assert placed["a"].dtype == np.int32 and placed["a"].devices() == {be.device}
    assert placed["b"][0].dtype == np.float64 and float(placed["b"][0]) == 2.5
    assert placed["b"][1:] == [None, 7, kept] and placed["b"][3] is kept and isinstance(placed["c"], tuple)
    assert np.array_equal(be.to_numpy(placed["c"][0]), np.zeros((2, 2)))
    caps = be.capabilities
    assert caps["autodiff"] and caps["jit"] and caps["use_default_pf"] and caps["float32"] and caps["float64"]
    assert "cpu" in caps["devices"]


@pytest.mark.backends("jax")
def test_jax_forward_inputs_stay_numpy_unless_a_device_is_asked_for():
    """A jitted forward places NumPy inputs itself (faster than a device_put first); a backend with a device places
    them there; both give the same outputs."""
    import jax

    default, placed = get_backend("jax"), get_backend("jax", device="cpu:0")
    model, inputs, blocks = _prepared("two_side")
    assert default.forward_inputs(inputs) is inputs
    on_device = placed.forward_inputs(inputs)
    assert all(isinstance(on_device[k], jax.Array) for k, x in inputs.items() if isinstance(x, np.ndarray))
    a = default.model_forward(model.config, default.tree_asarray(model.params), default.forward_inputs(inputs), blocks)
    b = placed.model_forward(model.config, placed.tree_asarray(model.params), on_device, blocks)
    for k in ("energy", "force", "virial"):
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k


@pytest.mark.backends("jax")
def test_jax_placement_refuses_a_lost_dtype():
    """With x64 turned off behind dpcore's back, float64 input would silently become float32: a clear error."""
    import jax

    be = get_backend("jax", device="cpu")
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(TypeError, match="float64 became float32; is jax_enable_x64 off"):
            be.asarray(np.ones(3))
        with pytest.raises(TypeError, match="float64 became float32; is jax_enable_x64 off"):
            be.tree_asarray({"a": np.ones(3, dtype=np.int32), "b": [np.ones(2)]})
        with pytest.raises(TypeError, match="float64 became float32; is jax_enable_x64 off"):
            get_backend("jax").forward_inputs({"b": [np.ones(2)]})  # the jitted forward would truncate it
    finally:
        jax.config.update("jax_enable_x64", True)


@pytest.mark.backends("jax")
def test_jax_value_and_grad_pytree():
    import jax.numpy as jnp

    be = get_backend("jax")
    tree = {"a": jnp.asarray([1.0, 2.0]), "b": [{"c": jnp.asarray(3.0)}], "unused": jnp.ones(2)}

    def f(p, s):
        return s * (jnp.sum(p["a"] ** 2) + p["b"][0]["c"] ** 3), {"c": p["b"][0]["c"]}

    (val, aux), (g,) = be.value_and_grad(f, (0,), has_aux=True)(tree, 2.0)
    assert float(val) == 2 * (5 + 27) and float(aux["c"]) == 3.0
    assert set(g) == {"a", "b", "unused"} and isinstance(g["b"], list)
    np.testing.assert_array_equal(g["a"], [4.0, 8.0])
    assert float(g["b"][0]["c"]) == 54.0 and np.array_equal(g["unused"], [0.0, 0.0])
    _, gx = be.value_and_grad(lambda x: jnp.sum(jnp.sin(x)), argnums=0)(tree["a"])  # int argnums: no tuple
    np.testing.assert_allclose(gx, np.cos([1.0, 2.0]), rtol=TOL["float64"])
