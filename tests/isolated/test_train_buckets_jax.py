"""Shape buckets on a compiling backend (jax, own process): training on ten system compositions (20 batch
shapes) traces the training step at most 4 times, counted by the step cache and by jax's own jit caches."""

from __future__ import annotations

import math

from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("jax",)
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)


def test_ten_compositions_compile_at_most_four_steps(tmp_path):
    from dpcore.train.loop import Trainer
    from test_train_buckets import ten_composition_case

    cfg = ten_composition_case(tmp_path, numb_steps=6)  # shape_buckets absent: "auto" = 4 on jax
    trainer = Trainer(cfg, BACKEND, workdir=tmp_path / "run")
    result = trainer.run()
    assert len(trainer.shaper.buckets) == 4
    used = trainer.steps.used
    assert 1 <= len(used) <= 4
    fns = [fn for key, fn in trainer.steps._shared.items() if key[0] == trainer.steps.context]
    # one jax trace per step-cache shape: a quickly compiled program each (6 steps, dpcore.train.tiers), or the
    # jitted function's own
    assert sum(fn.lowerings + fn.fn._cache_size() for fn in fns) == len(used)
    assert len(trainer.evals.used) <= 4
    assert math.isfinite(result["valid"]["rmse"])


def test_validation_step_compiles_beside_the_first_training_step(tmp_path):
    """The thread of Trainer._compile_validation_beside compiles the validation step of the first validation batch
    (jax's jit cache holds it before any validation), leaves the validation sampler where it was, and the
    validation then reuses that compilation."""
    from dpcore.train.loop import Trainer
    from test_train_buckets import ten_composition_case

    from dpcore.train.step import StepCache

    StepCache._shared.clear()  # the first test of this process compiled the same shapes
    cfg = ten_composition_case(tmp_path, numb_steps=2)
    trainer = Trainer(cfg, BACKEND, workdir=tmp_path / "run")
    state = trainer.valid_s.get_state()
    thread = trainer._compile_validation_beside()
    assert thread is not None
    thread.join()
    assert repr(trainer.valid_s.get_state()) == repr(state)
    fns = [fn for key, fn in trainer.evals._shared.items() if key[0] == trainer.evals.context]
    def traces():
        return sum(fn.lowerings + fn.fn._cache_size() for fn in fns)

    assert len(trainer.evals.used) == 1 and traces() == 1
    first = trainer.valid_s.take(1)[0]
    trainer.valid_s.set_state(state)
    val = trainer.validate(1e-3)
    assert math.isfinite(val["rmse"])
    assert traces() == 1  # the validation of that batch compiled nothing new
    import numpy as np

    trainer.valid_s.set_state(state)
    np.testing.assert_array_equal(trainer.valid_s.take(1)[0]["coord"], first["coord"])


def test_widths_of_every_composition_are_grown_before_the_first_step(tmp_path):
    """A compiled step's neighbour widths only grow (dpcore.slot_trim); the trainer grows them to every training
    and validation system's first frame before its first step, so the step shapes do not change afterwards."""
    import copy

    from dpcore.slot_trim import SlotTrim
    from dpcore.train.loop import Trainer
    from test_train_buckets import ten_composition_case

    cfg = ten_composition_case(tmp_path, numb_steps=2)
    trainer = Trainer(cfg, BACKEND, workdir=tmp_path / "run")
    grown = copy.deepcopy(trainer.shaper.trim.grown)
    assert grown
    fresh = SlotTrim(trainer.model.config["descriptor"], compiled=True)
    seen = []
    for sampler in (trainer.train_s, trainer.valid_s):
        for k in range(len(sampler.systems)):
            inputs, _, blocks, _, _ = trainer.shaper._padded(sampler.make_batch(k, [0]))
            assert trainer.shaper.trim(blocks, inputs["nlist_mask"]) is not None
            fresh(blocks, inputs["nlist_mask"])
            seen.append(copy.deepcopy(fresh.grown))
    assert trainer.shaper.trim.grown == grown == seen[-1]  # nothing grew after the trainer's pass
    assert seen[0] != seen[-1]  # the compositions need different widths: taken one by one, they grow
