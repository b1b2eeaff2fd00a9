"""The host work of the next training batches on a worker thread, beside the backend's step.

A training step has two parts: the host's (draw the frames, their neighbour lists, the pair data, the used
widths and shared inputs of :class:`~dpcore.train.batch.BatchShaper`: NumPy) and the backend's.  Where the
backend's step is one call into compiled code that releases Python's lock (registry ``prefetch``: the XLA
steps of jax and TensorFlow) and the process may use more than one core, a worker thread shapes the next batch
while the step runs.  Eager backends (torch, Paddle) would hand the lock back and forth between their
many small operations and the worker, so they keep the host work in line.

The batches are exactly those of the serial loop, in the same order: one worker draws them from the training
sampler and shapes them one after the other.  The sampler runs ahead of the steps by at most ``depth + 1``
batches, so each batch carries the sampler's state after it: a checkpoint stores the state after the last batch
*consumed* (:attr:`BatchPrefetch.state`), and a restart continues with the next batch as a serial run would.
An error of the worker (a broken data file, an overflow turned into an error) is raised again by
:meth:`BatchPrefetch.next` in the training thread.
"""

from __future__ import annotations

import queue
import threading


class BatchPrefetch:
    """``next() -> shaped batch``: ``shaper(sampler.next_batch())`` of the serial loop, computed ``depth`` batches
    ahead on a worker thread (started by the first ``next``); ``state``: the sampler state after the last batch
    returned by ``next`` (before the first ``next``, the state at construction)."""

    def __init__(self, sampler, shaper, depth: int = 1):
        self._sampler, self._shaper = sampler, shaper
        self._queue: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.state = sampler.get_state()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                shaped = self._shaper(self._sampler.next_batch())
                if not self._put((shaped, self._sampler.get_state(), None)):
                    return
        except BaseException as error:  # noqa: BLE001 -- handed to the training thread, which raises it
            self._put((None, None, error))

    def next(self):
        """The next shaped batch (``(inputs, label arrays, blocks, flags, nf)`` of the shaper)."""
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dpcore-batches", daemon=True)
            self._thread.start()
        shaped, state, error = self._queue.get()
        if error is not None:
            self._error = error
            raise error
        self.state = state
        return shaped

    def close(self) -> None:
        """Stop the worker (the batches it prepared are dropped) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
            self._thread = None


def host_beside_step(info) -> bool:
    """Whether the training loop shapes batches on a worker thread for backend ``info`` (a registry entry): its
    step releases Python's lock (``info.prefetch``) and this process may use more than one core."""
    from ..backends.threads import usable_cores

    return bool(info.prefetch) and len(usable_cores()) > 1
