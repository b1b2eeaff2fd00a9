"""Tiered compilation (own process; dpcore.train.tiers): the first steps run a quickly compiled program (jax: XLA's
optimization level 0; TensorFlow: the step run eagerly), the optimized program compiled beside them takes over at a
fixed step, so runs are reproducible bit for bit, restarts continue exactly, and the result is the untiered one up
to round-off."""

from __future__ import annotations

import copy
import inspect
import logging
import shutil

import numpy as np

from dpcore.train import checkpoint as ck
from dpcore.train import lcurve
from helpers.isolation import backend_under_test, import_framework
from helpers.train import make_case, max_rel_diff

BACKENDS = ("jax", "tensorflow")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)


RESTART_TOL = 1e-14  # a restart of a jax run is exact up to ~1e-17 (untiered too); the two programs: ~1e-11


def _run(cfg, work, monkeypatch, quick: int, restart=None, fresh: bool = True):
    from dpcore.train.loop import Trainer
    from dpcore.train.step import StepCache

    if fresh:
        StepCache._shared.clear()  # compile this run's programs (else a run reuses the process's)
    monkeypatch.setenv("DPCORE_QUICK_STEPS", str(quick))
    trainer = Trainer(copy.deepcopy(cfg), BACKEND, workdir=work, restart=restart)
    result = trainer.run()
    return trainer, result


def test_quick_steps_then_the_optimized_program_at_a_fixed_step(tmp_path, monkeypatch, caplog):
    """8 steps, the first 5 quick: the optimized program was compiled in the background and ran steps 5-7.  A
    second run reusing both programs (ready from its first step) still switches at step 5: bit for bit the same.
    A restart from the checkpoint of step 4 (step 4 quick, then optimized) continues the first run exactly.
    Without tiering the result is the same up to the programs' round-off; a restart after the switch step is not
    tiered."""
    cfg = make_case(tmp_path / "data", nsys=1, numb_steps=8)  # checkpoints at steps 4 and 8
    run = tmp_path / "a"
    with caplog.at_level(logging.INFO, logger="dpcore.train"):
        trainer, result = _run(cfg, run, monkeypatch, quick=5)
    assert trainer.quick_steps == 5
    # the average s/step covers the optimized steps 6-7 only (steps 1-5 quick, step 5 waited for the switch)
    assert "(excluding the first step, " in caplog.text and ", and the next 5 (quick programs))" in caplog.text
    steps = [fn for key, fn in trainer.steps._shared.items() if key[0] == trainer.steps.context]
    programs = [p for fn in steps for p in fn._programs.values()]
    assert programs and sum(fn.lowerings for fn in steps) == len(programs)
    assert all(p._full is not None and p._full is not p.quick for p in programs)
    beside = trainer._compile_validation_beside()  # the first validation compiled beside the first step?
    if BACKEND == "tensorflow":  # the quick steps ran eagerly: the step's Python function, no tf.function
        assert all(inspect.isfunction(p.quick) for p in programs) and not trainer.quick_compiled
        assert beside is None  # nothing to compile beside an eager first step
    else:
        assert trainer.quick_compiled and beside is not None
        beside.join()

    _, again = _run(cfg, tmp_path / "b", monkeypatch, quick=5, fresh=False)
    assert (tmp_path / "b" / "lcurve.out").read_text() == (run / "lcurve.out").read_text()
    assert max_rel_diff(again["model"].params, result["model"].params) == 0.0

    cont = tmp_path / "cont"
    shutil.copytree(run, cont)
    _run(cfg, cont, monkeypatch, quick=5, restart=cont / "model.ckpt-4.npz", fresh=False)
    assert (cont / "lcurve.out").read_text() == (run / "lcurve.out").read_text()
    assert max_rel_diff(ck.load_checkpoint(cont)["params"], ck.load_checkpoint(run)["params"]) < RESTART_TOL

    _, plain = _run(cfg, tmp_path / "c", monkeypatch, quick=0)
    diff = max_rel_diff(plain["model"].params, result["model"].params)
    print(f"tiered vs untiered: max relative parameter difference {diff:.2e}")
    assert diff < 1e-9
    _, a = lcurve.read_lcurve(run / "lcurve.out")
    _, c = lcurve.read_lcurve(tmp_path / "c" / "lcurve.out")
    np.testing.assert_allclose(a, c, rtol=1e-8)

    # a restart at or after the switch step compiles only the optimized programs
    from dpcore.train.loop import Trainer

    monkeypatch.setenv("DPCORE_QUICK_STEPS", "4")
    later = Trainer(copy.deepcopy(cfg), BACKEND, workdir=cont, restart=run / "model.ckpt-4.npz")
    assert later.start_step == 4 and later.quick_steps == 0
