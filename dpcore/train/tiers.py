"""Tiered compilation of the training and validation steps: a quick compile runs the first steps while the
optimized program compiles beside them.

XLA compiles the water training step in ~7 s at its default optimization level and in ~1.5 s at level 0, whose
program runs ~1.6x slower (benchmarks/README.md, "Compilation").  On a backend whose registry entry gives
``quick_compile`` options and ``quick_steps``, a step function gets two programs per input signature: one made
with those options for the steps ``t < quick_steps``, and the optimized one, compiled in a background thread, for
the steps after, the loop waiting for it at step ``quick_steps`` if it is not ready.  jax traces the step once
and compiles it twice (``quick_compile``: XLA's optimization level 0); TensorFlow's quick program is the step's
Python function run eagerly (``eager``: nothing traced or compiled, the water step's first call ~0.8 s against
~3 s as a graph; ~0.6 s/step, 4x the XLA step) and the background thread traces and compiles the XLA program.

The switch is at a fixed step, not when the compile finishes: the two programs round differently (~1e-11
relative), so a run is reproducible bit for bit only if every step's program is known in advance; a resumed run
takes the same program at each step as the uninterrupted one.  A run that ends before ``quick_steps`` never
compiles the optimized program.  ``DPCORE_QUICK_STEPS`` sets the number of quick steps (0: none); tiering is off
when the user's ``XLA_FLAGS`` set one of the quick options themselves (jax's optimization level), and for
data-parallel runs.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import threading

log = logging.getLogger(__name__)
ENV = "DPCORE_QUICK_STEPS"  # the number of quick steps, instead of the registry's (0: no tiering)


def quick_plan(backend, workers: int = 1) -> tuple[dict, int]:
    """``(options, quick_steps)`` of the backend's quick first compile, or ``({}, 0)`` (no tiering)."""
    info = backend.info
    if info is None or not info.quick_compile or info.quick_steps <= 0 or workers > 1:
        return {}, 0
    user = os.environ.get("XLA_FLAGS", "")
    if any(f"--{name}" in user for name in info.quick_compile):
        return {}, 0
    steps = os.environ.get(ENV, "").strip()
    if steps:
        if not steps.isdigit():
            raise ValueError(f"{ENV} must be a number of steps (0: no quick compile), got {steps!r}")
        return (dict(info.quick_compile), int(steps)) if int(steps) > 0 else ({}, 0)
    return dict(info.quick_compile), int(info.quick_steps)


def compiles_quick(options: dict) -> bool:
    """Whether the quick programs of :func:`quick_plan`'s ``options`` are compiled (``eager``: they are not)."""
    return bool(options) and not options.get("eager")


class _Compiler:
    """One background thread compiling the optimized programs one after another, most urgent first (training
    steps before validation steps), from when :meth:`open` is called (the training loop: after its first step,
    whose quick compile should have the machine to itself): the other core keeps running the quick steps."""

    _STOP = -1  # priority of the sentinel that ends the thread

    def __init__(self):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._count = itertools.count()
        self._thread = None
        self._lock = threading.Lock()
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def submit(self, priority: int, job) -> threading.Event:
        done = threading.Event()
        with self._lock:
            self._queue.put((priority, next(self._count), job, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, daemon=True, name="dpcore-compile-optimized")
                self._thread.start()
        return done

    def stop(self) -> None:
        """Drop the queued compiles (their steps compile themselves if ever called) and wait for the running one:
        a thread still inside the compiler when the interpreter exits aborts the process."""
        with self._lock:
            thread, self._thread = self._thread, None
            while True:
                try:
                    _, _, _, done = self._queue.get_nowait()
                except queue.Empty:
                    break
                done.set()
            if thread is not None:
                self._queue.put((self._STOP, next(self._count), None, None))
                self._open.set()
        if thread is not None:
            thread.join()
        self._open.clear()

    def _work(self):
        self._open.wait()
        while True:
            priority, _, job, done = self._queue.get()
            if priority == self._STOP:
                return
            try:
                job()
            finally:
                done.set()


_COMPILER = _Compiler()


def start_background_compiles() -> None:
    """Let the optimized programs compile (called by the training loop after its first step)."""
    _COMPILER.open()


def stop_background_compiles() -> None:
    """Drop the queued compiles and wait for the running one (the end of a training run, and at exit)."""
    _COMPILER.stop()


atexit.register(stop_background_compiles)


def signature(tree):
    """Structure, shapes and dtypes of a nested dict/list/tuple of arrays (what a compiled program is specific to)."""
    if isinstance(tree, dict):
        return tuple((k, signature(v)) for k, v in sorted(tree.items()))
    if isinstance(tree, (list, tuple)):
        return (type(tree).__name__,) + tuple(signature(v) for v in tree)
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return tuple(int(n) for n in tree.shape), str(tree.dtype)
    return repr(tree)


class TieredStep:
    """A jitted step function ``fn(*args)`` called as ``tiered(t, *args)`` for step ``t`` (0-based).

    ``options`` / ``quick_steps`` from :func:`quick_plan`; ``full_after``: whether any call will have
    ``t >= quick_steps`` (else the optimized program is never compiled); ``priority``: order of the background
    compiles (lower first).  Programs are kept per argument :func:`signature`; ``lowerings`` counts the
    ``backend.lower`` calls (one per signature: jax traces there, TensorFlow at each program's first call).
    """

    def __init__(self, backend, fn, options: dict, quick_steps: int, full_after: bool, priority: int = 0):
        self.backend, self.fn, self.options, self.quick_steps = backend, fn, options, quick_steps
        self.full_after, self.priority = full_after, priority
        self._programs: dict = {}  # signature -> _Programs
        self._lock = threading.Lock()
        self.lowerings = 0

    def __call__(self, t: int, *args):
        if not (t < self.quick_steps and self.options):
            if not self._programs:  # never tiered (a run resumed after the quick steps, no quick options)
                return self.fn(*args)
            programs = self._programs.get(signature(args))
            return (self.fn if programs is None else programs.full())(*args)
        key = signature(args)
        with self._lock:
            programs = self._programs.get(key)
            if programs is None:
                lowered = self.backend.lower(self.fn, args)
                self.lowerings += 1
                programs = self._programs[key] = _Programs(self, lowered)
        return programs.quick(*args)


class _Programs:
    """The quick and the optimized program of one argument signature of a :class:`TieredStep`."""

    def __init__(self, tiered: TieredStep, lowered):
        self.tiered = tiered
        self.quick = tiered.backend.compile_lowered(lowered, tiered.options)
        self._full = self._error = self._done = None
        if tiered.full_after:
            self._done = _COMPILER.submit(tiered.priority, lambda: self._compile_full(lowered))

    def _compile_full(self, lowered):
        try:
            self._full = self.tiered.backend.compile_lowered(lowered)
        except Exception as e:  # noqa: BLE001 -- reported at the switch, where the jitted function compiles again
            self._error = e

    def full(self):
        if self._done is not None:
            _COMPILER.open()
            if not self._done.is_set():
                log.info("waiting for the optimized step program to finish compiling (the first %d steps ran a "
                         "quick one)", self.tiered.quick_steps)
            self._done.wait()
            self._done = None
            if self._error is not None:
                log.warning("compiling the optimized step beside the first steps failed (%s): compiling it now",
                            self._error)
                self._error = None
        # no background compile (the run was to end before the switch) or it failed: the jitted function compiles
        return self._full if self._full is not None else self.tiered.fn
