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
    assert sum(fn._cache_size() for fn in fns) == len(used)  # one jax trace per step-cache shape
    assert len(trainer.evals.used) <= 4
    assert math.isfinite(result["valid"]["rmse"])
