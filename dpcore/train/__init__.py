"""Training, written once for every autodiff backend: ``train(cfg, backend)`` (see :mod:`dpcore.train.loop`).

setup       the model to train: ``sel: "auto"``, data statistics, spin statistics frames
params      trainable / frozen split of the parameter dict
batch       a sampled batch -> model inputs, labels and type blocks
step        the compiled training and validation steps (gradient, clipping, Adam)
loop        :class:`Trainer`: set-up, steps, validation, lcurve.out, checkpoints
optim, lr   Adam and the learning-rate schedules
checkpoint  backend-neutral checkpoint files;  lcurve: ``lcurve.out`` in DeePMD-kit's format
distributed data-parallel workers (processes or devices), their slices of the global batch, the reductions;
            shards: the step of a worker process (docs/distributed.md)
"""

from .loop import Trainer, train

__all__ = ["Trainer", "train"]
