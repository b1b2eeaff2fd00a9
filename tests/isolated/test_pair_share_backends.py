"""Shared embedding inputs (dpcore.pair_share) on the autodiff backends (``BACKENDS``, one per process): the same
energy, forces, virial and per-atom virial as slot by slot, in both force modes, and the same parameter gradient
of a loss on energy, forces and virial (what a training step differentiates, through the gathers of the shared
inputs).  NumPy: tests/test_pair_share.py."""

import numpy as np
import pytest

from helpers import make_model, random_system
from helpers.compare import assert_close as _assert_close
from helpers.compare import flat
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("torch", "jax", "tensorflow", "paddle")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)

TOL = 1e-12  # relative to the largest |value| of each output or gradient (float64)


def assert_close(got: dict, ref: dict):
    _assert_close(got, ref, TOL)


@pytest.mark.parametrize("compress", [False, True], ids=["nets", "tables"])
def test_shared_inputs_same_outputs_and_parameter_gradients(compress):
    from dpcore import pair_share
    from dpcore.backends import get_backend
    from dpcore.infer.inputs import prepare
    from dpcore.model import energy
    from dpcore.slot_trim import SlotTrim

    be = get_backend(BACKEND)
    model = make_model(descriptor={"sel": [24, 30], "rcut": 3.6})
    if compress:  # (tables share on compiled backends only; the math is checked on every backend)
        from dpcore.descriptor.tabulate import compress_model

        model = compress_model(model, 0.9)
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    inputs, blocks, _ = prepare(model, coord, atype, box)
    trim = SlotTrim(model.config["descriptor"], compress or bool(be.info.jit_forward))
    blocks = trim(blocks, inputs["nlist_mask"])
    shared = trim.share(inputs, blocks, model.params["descriptor"])
    assert any(k.startswith("share_src") for k in shared)
    params = model.backend_params(be)
    xp = be.namespace()
    results = []
    for x in (be.tree_asarray(inputs), be.tree_asarray(shared)):
        def loss(p, x=x):
            out = energy.forward(model.config, p, x, blocks)
            return xp.sum(out["energy"]) + 3.0 * xp.sum(out["force"] ** 2) + 0.1 * xp.sum(out["virial"] ** 2)

        outs = {}
        for mode in ("analytic",) if compress else ("analytic", "autodiff"):  # (tables: CI time)
            out = be.model_forward(model.config, params, x, blocks, atomic_virial=True, force_mode=mode)
            outs.update({f"{mode}/{k}": np.asarray(be.to_numpy(v), dtype=np.float64) for k, v in out.items()})
        value, (grad,) = be.jit(be.value_and_grad(loss))(params)  # (jax: eager is slow)
        results.append((outs, flat(be.tree_to_numpy(grad)), float(be.to_numpy(value))))
    (out_ref, grad_ref, v_ref), (out_got, grad_got, v_got) = results
    assert_close(out_got, out_ref)
    assert abs(v_got - v_ref) <= TOL * abs(v_ref)
    embedding = {k: v for k, v in grad_ref.items() if "/embedding/" in k}
    assert compress or (embedding and all(np.abs(v).max() > 0 for v in embedding.values()))
    # davg/dstd are statistics, never trained: a shared input takes its normalisation from one of its slots, so
    # their gradient moves between slots of a section (the sections' sums agree)
    stats = {k for k in grad_ref if k.rsplit("/", 1)[-1] in ("davg", "dstd")}
    assert stats and set(grad_got) == set(grad_ref)
    assert_close({k: grad_got[k] for k in grad_ref if k not in stats}, {k: v for k, v in grad_ref.items() if k not in stats})
    sec = np.cumsum([0] + list(model.config["descriptor"]["sel"]))
    assert_close({k: np.add.reduceat(grad_got[k], sec[:-1], axis=1) for k in stats},
                 {k: np.add.reduceat(grad_ref[k], sec[:-1], axis=1) for k in stats})
    assert pair_share.drop(shared).keys() == inputs.keys()
