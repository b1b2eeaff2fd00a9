"""Tiered compilation of training steps (dpcore.train.tiers) with a stand-in backend: which program runs at
which step, where the optimized one is compiled, what happens when it fails or is never needed, the plan from
the registry and the environment."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from dpcore.train import tiers


class FakeBackend:
    """``lower`` and ``compile_lowered`` that record their calls; a program returns ``(which, x + 1)``."""

    def __init__(self, quick_steps=3, fail_full=False, hold=None):
        self.info = SimpleNamespace(quick_compile={"xla_backend_optimization_level": 0}, quick_steps=quick_steps)
        self.lowered, self.compiles, self.fail_full, self.hold = [], [], fail_full, hold
        self.full_started = threading.Event()

    def lower(self, fn, args):
        self.lowered.append(signature_of(args))
        return ("lowered", fn)

    def compile_lowered(self, lowered, options=None):
        which = "quick" if options else "full"
        self.compiles.append((which, threading.current_thread().name, lowered[1].__name__))
        if which == "full":
            self.full_started.set()
            if self.hold is not None:
                self.hold.wait(10)
            if self.fail_full:
                raise RuntimeError("compiler out of memory")
        return lambda x: (which, x + 1)


def signature_of(args):
    return tiers.signature(args)


def jitted(x):
    return ("jit", x + 1)


@pytest.fixture(autouse=True)
def _clean_compiler():
    yield
    tiers.stop_background_compiles()


def test_quick_program_before_the_switch_optimized_after_compiled_in_the_background():
    be = FakeBackend(quick_steps=3)
    step = tiers.TieredStep(be, jitted, {"xla_backend_optimization_level": 0}, 3, full_after=True)
    x = np.zeros(4)
    assert [step(t, x)[0] for t in range(3)] == ["quick"] * 3
    tiers.start_background_compiles()
    assert [step(t, x)[0] for t in range(3, 6)] == ["full"] * 3
    assert len(be.lowered) == 1  # traced once, compiled twice
    assert be.compiles[0] == ("quick", threading.current_thread().name, "jitted")
    assert be.compiles[1] == ("full", "dpcore-compile-optimized", "jitted")
    assert step.lowerings == 1
    # another argument shape is another pair of programs
    assert step(0, np.zeros(5))[0] == "quick" and step.lowerings == 2 and len(be.lowered) == 2


def test_the_switch_waits_for_a_compile_that_was_never_let_start():
    """The loop opens the background compiler after its first step; a switch before that opens it itself."""
    be = FakeBackend()
    step = tiers.TieredStep(be, jitted, {"o": 0}, 1, full_after=True)
    assert step(0, 1.0)[0] == "quick"
    assert step(1, 1.0)[0] == "full"


def test_no_optimized_compile_when_the_run_ends_before_the_switch():
    be = FakeBackend()
    step = tiers.TieredStep(be, jitted, {"o": 0}, 3, full_after=False)
    assert step(0, 1.0)[0] == "quick"
    assert step(5, 1.0)[0] == "jit"  # called after all (a longer run in the same process): the jitted function
    assert [c[0] for c in be.compiles] == ["quick"]


def test_untiered_steps_call_the_jitted_function():
    be = FakeBackend()
    step = tiers.TieredStep(be, jitted, {}, 0, full_after=True)
    assert step(0, 1.0) == ("jit", 2.0) and step(7, 1.0) == ("jit", 2.0)
    assert be.lowered == [] and be.compiles == []


def test_a_failed_optimized_compile_is_reported_and_the_jitted_function_used(caplog):
    be = FakeBackend(fail_full=True)
    step = tiers.TieredStep(be, jitted, {"o": 0}, 1, full_after=True)
    step(0, 1.0)
    with caplog.at_level(logging.WARNING, logger="dpcore.train.tiers"):
        assert step(1, 1.0)[0] == "jit"
    assert "compiler out of memory" in caplog.text


def test_training_steps_compile_before_validation_steps():
    def validation(x):
        return ("jit", x)

    be = FakeBackend()
    valid = tiers.TieredStep(be, validation, {"o": 0}, 1, full_after=True, priority=1)
    train = tiers.TieredStep(be, jitted, {"o": 0}, 1, full_after=True, priority=0)
    valid(0, 1.0)  # queued first, but the validation step is needed later
    train(0, 1.0)
    tiers.start_background_compiles()
    assert train(1, 1.0)[0] == "full" and valid(1, 1.0)[0] == "full"
    assert [c[2] for c in be.compiles if c[0] == "full"] == ["jitted", "validation"]


def test_stop_drops_queued_compiles_and_waits_for_the_running_one():
    hold = threading.Event()
    be = FakeBackend(hold=hold)
    a = tiers.TieredStep(be, jitted, {"o": 0}, 1, full_after=True)
    b = tiers.TieredStep(be, jitted, {"o": 0}, 1, full_after=True, priority=1)
    a(0, 1.0)
    b(0, 1.0)
    tiers.start_background_compiles()
    assert be.full_started.wait(10)
    threading.Timer(0.2, hold.set).start()
    tiers.stop_background_compiles()  # a's compile was running: waited for; b's was queued: dropped
    assert [c[0] for c in be.compiles].count("full") == 1
    assert a(1, 1.0)[0] == "full" and b(1, 1.0)[0] == "jit"


def test_quick_plan_from_the_registry_the_environment_and_the_run(monkeypatch):
    be = FakeBackend(quick_steps=20)
    monkeypatch.delenv(tiers.ENV, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=false")
    assert tiers.quick_plan(be) == ({"xla_backend_optimization_level": 0}, 20)
    assert tiers.quick_plan(be, workers=2) == ({}, 0)  # data-parallel runs are not tiered
    monkeypatch.setenv(tiers.ENV, "5")
    assert tiers.quick_plan(be)[1] == 5
    monkeypatch.setenv(tiers.ENV, "0")
    assert tiers.quick_plan(be) == ({}, 0)
    monkeypatch.setenv(tiers.ENV, "many")
    with pytest.raises(ValueError, match="DPCORE_QUICK_STEPS must be a number of steps"):
        tiers.quick_plan(be)
    monkeypatch.delenv(tiers.ENV)
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")  # the user's own choice wins
    assert tiers.quick_plan(be) == ({}, 0)
    assert tiers.quick_plan(SimpleNamespace(info=None)) == ({}, 0)


def test_registry_tiers_the_xla_steps_only():
    """jax: XLA's level 0; TensorFlow (no per-program XLA options): the step run eagerly, nothing compiled."""
    from dpcore.backends import info

    assert info("jax").quick_compile == {"xla_backend_optimization_level": 0} and info("jax").quick_steps > 0
    assert info("tensorflow").quick_compile == {"eager": True} and info("tensorflow").quick_steps > 0
    assert tiers.compiles_quick(info("jax").quick_compile) and not tiers.compiles_quick(info("tensorflow").quick_compile)
    assert not tiers.compiles_quick({})
    for name in ("numpy", "torch", "paddle"):
        assert not info(name).quick_compile and info(name).quick_steps == 0


def test_signature_tells_shapes_dtypes_and_structure_apart():
    a = {"x": np.zeros((2, 3)), "y": [np.zeros(1, dtype=np.int64), None]}
    assert tiers.signature(a) == tiers.signature({"y": [np.ones(1, dtype=np.int64), None], "x": np.ones((2, 3))})
    assert tiers.signature(a) != tiers.signature({"x": np.zeros((2, 4)), "y": [np.zeros(1, dtype=np.int64), None]})
    assert tiers.signature(a) != tiers.signature({"x": np.zeros((2, 3)), "y": [np.zeros(1), None]})
