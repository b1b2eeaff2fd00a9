"""Trimmed neighbour sections (dpcore.slot_trim) on the autodiff backends (``BACKENDS``, one per process): the
same energy, forces and virial as the full sections, and the same parameter gradient of a loss on energy and
forces (what a training step differentiates: the trimmed slots' constant contribution depends on the
embedding nets).  NumPy: tests/test_slot_trim.py."""

import numpy as np

from helpers import make_model, random_system
from helpers.compare import assert_close as _assert_close
from helpers.compare import flat
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("torch", "jax", "tensorflow", "paddle")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)

TRIM_TOL = 1e-12  # relative to the largest |value| of each output or gradient (float64)


def assert_close(got: dict, ref: dict):
    _assert_close(got, ref, TRIM_TOL)


def test_trimmed_sections_same_outputs_and_parameter_gradients():
    from dpcore.backends import get_backend
    from dpcore.infer.inputs import prepare
    from dpcore.model import energy
    from dpcore.slot_trim import SlotTrim

    be = get_backend(BACKEND)
    model = make_model(descriptor={"sel": [24, 30], "rcut": 3.6})
    davg = model.params["descriptor"]["davg"]
    davg[..., 0] += np.linspace(0.0, 0.2, davg.shape[1])  # statistics that differ from slot to slot
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    inputs, blocks, _ = prepare(model, coord, atype, box)
    trimmed = SlotTrim(model.config["descriptor"], bool(be.info.jit_forward))(blocks, inputs["nlist_mask"])
    assert sum(w for b in trimmed for w in b[3]) < len(trimmed) * sum(model.config["descriptor"]["sel"])
    x, params = be.tree_asarray(inputs), model.backend_params(be)
    xp = be.namespace()

    def loss(p, b):
        out = energy.forward(model.config, p, x, b)
        return xp.sum(out["energy"]) + 3.0 * xp.sum(out["force"] ** 2) + 0.1 * xp.sum(out["virial"] ** 2)

    results = []
    for b in (blocks, trimmed):
        out = be.model_forward(model.config, params, x, b, atomic_virial=True)
        value, (grad,) = be.jit(be.value_and_grad(lambda p, b=b: loss(p, b)))(params)  # (jax: eager is slow)
        results.append(({k: np.asarray(be.to_numpy(v), dtype=np.float64) for k, v in out.items()},
                        flat(be.tree_to_numpy(grad)), float(be.to_numpy(value))))
    (out_full, grad_full, v_full), (out_trim, grad_trim, v_trim) = results
    assert_close(out_trim, out_full)
    assert abs(v_trim - v_full) <= TRIM_TOL * abs(v_full)
    embedding = {k: v for k, v in grad_full.items() if "/embedding/" in k}
    assert embedding and all(np.abs(v).max() > 0 for v in embedding.values())
    assert_close({k: grad_trim[k] for k in grad_full}, grad_full)
