"""The spin model on PyTorch (own process): both force modes equal NumPy, and a force / force_mag loss is
differentiable w.r.t. the parameters through both (create_graph)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpcore.backends import get_backend  # noqa: E402
from dpcore.model.spin_model import model_forward  # noqa: E402
from helpers import TOL  # noqa: E402
from test_spin import MODELS, make_spin_model, spin_system  # noqa: E402

KEYS = ("energy", "atom_energy", "force", "force_mag", "virial", "atom_virial", "mask_mag", "mask")


@pytest.mark.parametrize("force_mode", ["analytic", "autodiff"])
@pytest.mark.parametrize("system", ["pbc_triclinic", "cluster"])
@pytest.mark.parametrize("name", MODELS)
def test_evaluate_equals_numpy(name, system, force_mode):
    model = make_spin_model(name)
    coord, atype, spin, box = spin_system(model, system)
    f = model.config["fitting_net"]
    rng = np.random.default_rng(0)
    fparam = rng.normal(size=(2, f["numb_fparam"])) if f["numb_fparam"] else None
    aparam = rng.normal(size=(2, coord.shape[1], f["numb_aparam"])) if f["numb_aparam"] else None
    ref = model.evaluate(coord, atype, spin, box, fparam, aparam, atomic=True)
    out = model.evaluate(coord, atype, spin, box, fparam, aparam, backend="torch", atomic=True, force_mode=force_mode)
    for k in KEYS:
        assert out[k].dtype == ref[k].dtype and out[k].shape == ref[k].shape, k
        scale = max(np.abs(ref[k]).max(), 1e-300)
        assert np.abs(out[k].astype(float) - ref[k].astype(float)).max() <= TOL["float64"] * scale, k


def _loss_grads(model, inputs, blocks, force_mode):
    be = get_backend("torch")
    params = be.tree_asarray(model.params)
    leaves = [params["fitting"]["nets"]["0"]["0"]["w"], params["descriptor"]["embedding"]["0"]["0"]["w"]]
    for x in leaves:
        x.requires_grad_(True)
    out = model_forward(be, model.config, params, be.tree_asarray(inputs), blocks, force_mode=force_mode,
                        create_graph=True)
    loss = (out["force"] ** 2).sum() + (out["force_mag"] ** 2).sum() + (out["virial"] ** 2).sum()
    return [g.detach().numpy() for g in torch.autograd.grad(loss, leaves)]


def test_force_loss_gradients_agree_between_force_modes():
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    inputs, blocks, _ = model.prepare(coord, atype, spin, box)
    a = _loss_grads(model, inputs, blocks, "analytic")
    b = _loss_grads(model, inputs, blocks, "autodiff")
    for ga, gb in zip(a, b):
        assert np.abs(ga).max() > 0
        assert np.abs(ga - gb).max() <= 1e-10 * np.abs(ga).max()
