"""The prefetch worker of the training loop (dpcore.train.prefetch): the serial loop's batches in the same order,
the sampler state of the batches consumed (for checkpoints), the worker's errors raised in the training thread,
and a clean stop.  Restarts of real training runs with the worker: tests/isolated/test_train_backends.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dpcore.backends.registry import BACKENDS
from dpcore.train import prefetch as pf
from dpcore.train.prefetch import BatchPrefetch


class Sampler:
    """A sampler with the interface the loop uses: random frames from a generator, state get/set."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.drawn = 0

    def next_batch(self) -> dict:
        self.drawn += 1
        return {"frames": self.rng.integers(0, 1000, 3)}

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.drawn = state["drawn"]


def shape(batch: dict) -> dict:
    return {"frames": batch["frames"] * 2}


def test_same_batches_in_order_and_the_state_of_the_consumed_ones():
    serial, ahead = Sampler(), Sampler()
    pre = BatchPrefetch(ahead, shape, depth=2)
    assert pre.state == serial.get_state()  # nothing consumed yet
    try:
        for _ in range(20):
            got = pre.next()
            want = shape(serial.next_batch())
            np.testing.assert_array_equal(got["frames"], want["frames"])
            assert pre.state == serial.get_state()  # the state after this batch, whatever the worker drew since
        restarted = Sampler(seed=99)
        restarted.set_state(pre.state)  # a checkpoint's state continues with the next batch of the serial loop
        np.testing.assert_array_equal(restarted.next_batch()["frames"], serial.next_batch()["frames"])
    finally:
        pre.close()
    assert ahead.drawn <= 20 + 3  # at most depth + 1 batches drawn ahead


def test_an_error_of_the_worker_is_raised_in_the_training_thread():
    calls = []

    def failing(batch):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise ValueError("frame 7 of system 'sys_a': coord.npy has 5 columns, expected 9")
        return batch

    pre = BatchPrefetch(Sampler(), failing)
    pre.next()
    pre.next()
    with pytest.raises(ValueError, match="coord.npy has 5 columns"):
        pre.next()
    with pytest.raises(ValueError, match="coord.npy has 5 columns"):  # again, not a hang
        pre.next()
    pre.close()
    assert set(calls) == {"dpcore-batches"}  # the shaping ran on the worker


def test_close_stops_a_worker_waiting_on_a_full_queue():
    sampler = Sampler()
    pre = BatchPrefetch(sampler, shape, depth=1)
    pre.next()
    for _ in range(100):  # let the worker fill the queue and block on the next one
        if sampler.drawn >= 3:
            break
        threading.Event().wait(0.01)
    pre.close()
    assert not any(t.name == "dpcore-batches" for t in threading.enumerate())
    drawn = sampler.drawn
    threading.Event().wait(0.05)
    assert sampler.drawn == drawn  # nothing drawn after close


def test_only_compiled_steps_prefetch_and_only_with_a_second_core(monkeypatch):
    assert {name for name, b in BACKENDS.items() if b.prefetch} == {"jax", "tensorflow"}
    monkeypatch.setattr("dpcore.backends.threads.usable_cores", lambda: [0, 1])
    assert pf.host_beside_step(BACKENDS["jax"]) and not pf.host_beside_step(BACKENDS["torch"])
    monkeypatch.setattr("dpcore.backends.threads.usable_cores", lambda: [0])
    assert not pf.host_beside_step(BACKENDS["jax"])
