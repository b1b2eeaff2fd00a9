"""JAX backend and the pure-function view ``dpcore.backends.jax_model`` (own process: imports only jax)."""

import copy
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from dpcore.backends import get_backend  # noqa: E402
from dpcore.backends.base import Backend  # noqa: E402
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
TRAINABLE = ("embedding", "nets")  # network weights; statistics are not trained


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
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))


def _prepared(name, pbc=True):
    model = _model(name)
    coord, atype, box = random_system(**FRAMES)
    box = box if pbc else None
    extra = _extra(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inputs, blocks, _ = prepare(model, coord, atype, box, **extra)
    return model, inputs, blocks


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("pbc", [True, False], ids=["pbc", "cluster"])
@pytest.mark.parametrize("name", MODELS)
def test_jax_equals_numpy(name, pbc, force_mode):
    model, inputs, blocks = _prepared(name, pbc)
    be = get_backend("jax")
    tol = TOL[model.config["fitting_net"]["precision"]]
    ref = get_backend("numpy").model_forward(model.config, model.params, inputs, blocks, atomic_virial=True)
    out = be.model_forward(model.config, be.tree_asarray(model.params), be.tree_asarray(inputs), blocks,
                           atomic_virial=True, force_mode=force_mode)
    assert set(out) == set(ref)
    for key in ref:
        assert be.to_numpy(out[key]).dtype == ref[key].dtype, key
        assert _rel_err(out[key], ref[key]) <= tol, (key, _rel_err(out[key], ref[key]))
    if force_mode == "analytic" and pbc:  # the public entry point, atoms in the caller's order
        coord, atype, box = random_system(**FRAMES)
        extra = _extra(model)
        got = model.evaluate(coord, atype, box, backend="jax", atomic=True, **extra)
        want = model.evaluate(coord, atype, box, atomic=True, **extra)
        for key in want:
            assert _rel_err(got[key], want[key]) <= tol, key


def test_jit_gives_same_numbers(force_mode="analytic"):  # (autodiff under jit: test_jax_equals_numpy)
    model, inputs, blocks = _prepared("fparam_aparam")
    be = get_backend("jax")
    params, inp = be.tree_asarray(model.params), be.tree_asarray(inputs)

    def f(p, i):  # the un-jitted core call (the adapter's model_forward is itself jitted)
        return Backend.model_forward(be, model.config, p, i, blocks, atomic_virial=True, force_mode=force_mode)

    eager, jitted, adapter = f(params, inp), be.jit(f)(params, inp), be.model_forward(
        model.config, params, inp, blocks, atomic_virial=True, force_mode=force_mode)
    for key in eager:
        assert _rel_err(adapter[key], np.asarray(eager[key])) <= TOL["float64"], key
    for key in eager:
        assert _rel_err(jitted[key], np.asarray(eager[key])) <= TOL["float64"], key


def test_contract_conversion_device_and_settings():
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
    caps = be.capabilities
    assert caps["autodiff"] and caps["jit"] and caps["use_default_pf"] and caps["float32"] and caps["float64"]
    assert "cpu" in caps["devices"]


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown backend 'jaxx'"):
        get_backend("jaxx")


def test_value_and_grad_pytree():
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


# ----------------------------------------------------------------------------------- energy_fn view
def _view(model, force_mode="analytic"):
    from dpcore.backends.jax_model import energy_fn, neighbors

    coord, atype, box = random_system(**FRAMES)
    extra = _extra(model)
    params, fn = energy_fn(model, force_mode=force_mode)
    nbr = neighbors(model, coord, atype, box)
    labels = _model("fparam_aparam", seed=7).evaluate(coord, atype, box, **extra)

    def loss(p):
        out = fn(p, coord, box, nbr, **extra)
        return jnp.mean((out["energy"] - labels["energy"]) ** 2) + jnp.mean((out["force"] - labels["force"]) ** 2)

    return params, fn, nbr, (coord, atype, box, extra), loss


def test_energy_fn_matches_model_under_jit():
    model = _model("fparam_aparam")
    params, fn, nbr, (coord, atype, box, extra), _ = _view(model)
    ref = model.evaluate(coord, atype, box, **extra)
    out = jax.jit(fn)(params, coord, box, nbr, **extra)
    for key in ("energy", "atom_energy", "force", "virial"):
        assert _rel_err(out[key], ref[key]) <= TOL["float64"], key


def test_energy_fn_sgd_step_decreases_loss(force_mode="analytic"):  # (autodiff: the gradient test below)
    from dpcore.backends.jax_model import params_to_numpy

    model = _model("fparam_aparam")
    params, fn, nbr, (coord, atype, box, extra), loss = _view(model, force_mode)
    loss0, grads = jax.jit(jax.value_and_grad(loss))(params)
    lr = 1e-3  # optax is not a dependency: one plain SGD step on the network weights

    def step(path, p, g):
        return p - lr * g if any(getattr(k, "key", None) in TRAINABLE for k in path) else p

    new = jax.tree_util.tree_map_with_path(step, params, grads)
    assert float(loss(new)) < float(loss0)
    trained = copy.deepcopy(model)
    trained.set_params(params_to_numpy(new))
    np.testing.assert_allclose(trained.evaluate(coord, atype, box, **extra)["energy"],
                               np.asarray(fn(new, coord, box, nbr, **extra)["energy"]), rtol=TOL["float64"])


def test_parameter_gradient_fd_and_double_backward():
    """d(loss)/d(one weight array) with analytic forces == central differences == through autodiff forces."""
    model = _model("fparam_aparam")
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
        params, _, _, _, loss = _view(model, mode)
        grads[mode] = np.asarray(jax.grad(lambda w: loss(with_w(params, w)))(get(params)))
    params, _, _, _, loss = _view(model)
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
