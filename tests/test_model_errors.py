"""Bad input to the model gets a clear error naming the argument and the expected form."""

import numpy as np
import pytest

import dpcore
from dpcore.model.energy_model import EnergyModel
from dpcore.model.init import init_params
from helpers import make_config, make_model, random_system


@pytest.fixture(scope="module")
def system():
    coord, atype, box = random_system(natoms=6, nframes=2)
    return make_model(), coord, atype, box


@pytest.mark.parametrize("mutate, pattern", [
    (lambda c, a, b: (c[:, :, :2], a, b), r"coord must have shape \(nframes, natoms, 3\)"),
    (lambda c, a, b: (c, a[:-1], b), r"coord must have shape .* to match atype"),
    (lambda c, a, b: (c, np.stack([a, a, a]), b), r"atype has a different number of frames"),
    (lambda c, a, b: (c, a.astype(float), b), r"atype must be integers"),
    (lambda c, a, b: (c, a, b[:, :6]), r"box must have shape \(nframes, 9\)"),
    (lambda c, a, b: (c, a, np.zeros_like(b)), r"box is singular"),
    (lambda c, a, b: (c, np.where(a == 0, 5, a), b), r"atype contains type 5 but the model has 2 types"),
    (lambda c, a, b: (np.where(c > 1, np.nan, c), a, b), r"coord contains NaN"),
])
def test_bad_inputs(system, mutate, pattern):
    model, coord, atype, box = system
    c, a, b = mutate(coord, atype, box)
    with pytest.raises(ValueError, match=pattern):
        model.evaluate(c, a, b)


def test_missing_or_misshaped_fparam_aparam():
    model = make_model(fitting={"numb_fparam": 2, "numb_aparam": 1})
    coord, atype, box = random_system(natoms=6, nframes=2)
    with pytest.raises(ValueError, match=r"needs fparam of shape \(nframes, 2\)"):
        model.evaluate(coord, atype, box, aparam=np.zeros((2, 6, 1)))
    with pytest.raises(ValueError, match=r"needs aparam of shape \(nframes, natoms, 1\)"):
        model.evaluate(coord, atype, box, fparam=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"fparam must have shape \(nframes, 2\)"):
        model.evaluate(coord, atype, box, fparam=np.zeros((2, 3)), aparam=np.zeros((2, 6, 1)))


def test_default_fparam_is_used_when_fparam_is_missing():
    model = make_model(fitting={"numb_fparam": 2, "default_fparam": [0.5, -1.0]})
    coord, atype, box = random_system(natoms=6, nframes=2)
    a = model.evaluate(coord, atype, box)
    b = model.evaluate(coord, atype, box, fparam=np.tile([0.5, -1.0], (2, 1)))
    np.testing.assert_array_equal(a["energy"], b["energy"])


@pytest.mark.parametrize("descriptor, fitting, pattern", [
    ({"rcut_smth": 4.0}, {}, r"rcut_smth \(4.0\) must be smaller than rcut \(4.0\)"),
    ({"activation_function": "swish"}, {}, r"model/descriptor/activation_function: unknown activation_function 'swish'"),
    ({}, {"activation_function": "tanhh"}, r"model/fitting_net/activation_function: unknown"),
    ({"sel": [4]}, {}, r"sel has 1 entries but type_map has 2 types"),
    ({"precision": "float128"}, {}, r"model/descriptor/precision: unknown precision 'float128'"),
    ({"axis_neuron": 32}, {}, r"axis_neuron \(32\) exceeds the embedding width 16"),
])
def test_bad_model_config(descriptor, fitting, pattern):
    cfg = make_config(descriptor=descriptor, fitting=fitting)
    with pytest.raises(ValueError, match=pattern):
        EnergyModel(cfg, init_params(make_config()))


@pytest.mark.parametrize("content, suffix, pattern", [
    (b"not hdf5 at all", ".dp", r"bad\.dp"),
    (b"- just\n- a list\n", ".yaml", r"bad\.yaml"),
    (b"{}", ".json", r"bad\.json"),
])
def test_unreadable_model_files(tmp_path, content, suffix, pattern):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern):
        dpcore.load(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.dp"):
        dpcore.load(tmp_path / "nope.dp")


def test_force_mode_on_numpy_and_bad_force_mode():
    model, (coord, atype, box) = make_model(), random_system(natoms=6, nframes=1)
    with pytest.raises(NotImplementedError, match="backend 'numpy' has no automatic differentiation"):
        model.evaluate(coord, atype, box, force_mode="autodiff")
    with pytest.raises(ValueError, match="force_mode must be 'analytic' or 'autodiff', got 'fd'"):
        model.evaluate(coord, atype, box, force_mode="fd")
    with pytest.raises(ValueError, match="unknown backend 'numpyy'"):
        model.evaluate(coord, atype, box, backend="numpyy")
