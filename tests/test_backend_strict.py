"""array-api-strict backend: the core on the minimal standard namespace equals the NumPy reference.

Runs in the main pytest process: it must not import any deep-learning framework (checked below).
"""

import copy
import sys
import warnings

import numpy as np
import pytest

from dpcore.backends import get_backend
from dpcore.infer.inputs import prepare
from helpers import random_fparam_aparam, TOL, make_model, random_system

pytest.importorskip("array_api_strict")

MODELS = {
    "two_side": {},
    "one_side": {"descriptor": {"type_one_side": True}},
    "two_side_exclude": {"descriptor": {"exclude_types": [[0, 1]]}},
    "one_side_exclude": {"descriptor": {"type_one_side": True, "exclude_types": [[1, 1]]}},
    "fparam_aparam": {"fitting": {"numb_fparam": 2, "numb_aparam": 1}},
    "atom_excl_vacuum": {"fitting": {"atom_ener": [1.0, None]}, "atom_exclude_types": [1],
                         "pair_exclude_types": [[0, 0]]},
    "float32": {"descriptor": {"precision": "float32"}, "fitting": {"precision": "float32"}},
}
SEL = {"sel": [16, 16]}  # no sel overflow for the systems below
SYSTEMS = {"pbc": True, "cluster": False}
FRAMES = dict(natoms=10, nframes=2, box_len=6.0)


def _model(name):
    kw = copy.deepcopy(MODELS[name])
    kw["descriptor"] = {**SEL, **kw.get("descriptor", {})}
    return make_model(**kw)


def _extra(model, nf, natoms, seed=3):
    return dict(zip(("fparam", "aparam"), random_fparam_aparam(model, nf, natoms, seed)))


def _rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("name", MODELS)
def test_strict_evaluate_equals_numpy(name, system):
    model = _model(name)
    coord, atype, box = random_system(**FRAMES)
    box = box if SYSTEMS[system] else None
    extra = _extra(model, 2, FRAMES["natoms"])
    tol = TOL[model.config["fitting_net"]["precision"]]
    # same composition in every frame (type blocks) and a different one per frame (masked path)
    for at in (atype, np.stack([atype, np.roll(atype, 1)])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no sel overflow: every neighbour is seen
            ref = model.evaluate(coord, at, box, atomic=True, **extra)
            out = model.evaluate(coord, at, box, backend="array_api_strict", atomic=True, **extra)
        assert set(out) == set(ref)
        for key in ref:
            assert out[key].dtype == ref[key].dtype, key
            assert _rel_err(out[key], ref[key]) <= tol, (key, _rel_err(out[key], ref[key]))


def test_strict_backend_contract():
    import array_api_strict

    be = get_backend("strict")
    assert be.name == "array_api_strict" and be.namespace() is array_api_strict
    assert be.capabilities["autodiff"] is False and be.capabilities["use_default_pf"] is True
    for dt in (np.float32, np.float64, np.int64, np.bool_):
        x = np.arange(6).reshape(2, 3).astype(dt)
        y = be.asarray(x)
        assert be.to_numpy(y).dtype == x.dtype and np.array_equal(be.to_numpy(y), x)
        assert be.asarray(y) is y
    with pytest.raises(NotImplementedError, match="array_api_strict"):
        be.value_and_grad(lambda x: x)
    assert be.jit(len) is len
    assert "array_api_strict_flags" in be.settings


@pytest.mark.parametrize("name", ["two_side", "default_fparam"])
def test_strict_device_honoured(name):
    import array_api_strict

    model = _model(name) if name in MODELS else make_model(
        descriptor=SEL, fitting={"numb_fparam": 2, "default_fparam": [0.5, 1.0], "atom_ener": [1.0, None]})
    coord, atype, box = random_system(**FRAMES)
    inputs, blocks, _ = prepare(model, coord, atype, box)  # no fparam given: the default, created on the device
    ref = get_backend("numpy").model_forward(model.config, model.params, inputs, blocks)
    dev = array_api_strict.Device("device1")
    for device in (dev, "device1"):
        be = get_backend("array_api_strict", device=device)
        assert be.device == dev
        out = be.model_forward(model.config, be.tree_asarray(model.params), be.tree_asarray(inputs), blocks)
        for key in ref:
            assert out[key].device == dev
            assert _rel_err(be.to_numpy(out[key]), ref[key]) <= TOL["float64"], key


def test_no_framework_imported():
    for framework in ("torch", "jax", "tensorflow", "paddle"):
        assert framework not in sys.modules, f"{framework} was imported in the main test process"
