"""``dpcore train``: train a model from an input.json on an autodiff backend.

    dpcore train input.json --backend jax
    dpcore train input.json --backend torch --restart model.ckpt     # continue exactly (any backend)
    dpcore train input.json --backend paddle --init-model frozen.dp  # start from a model's parameters
    torchrun --standalone --nproc_per_node=4 --no-python dpcore train input.json --backend torch  # data-parallel
    dpcore train input.json --backend jax --local-devices 2           # data-parallel over 2 devices
    python -m dpcore.train.launch --nproc-per-node 2 dpcore train input.json --backend jax  # 2 JAX processes

Data-parallel runs (docs/distributed.md): under a launcher of several processes (torchrun: ``WORLD_SIZE``)
every process is a worker and rank 0 alone writes files and the progress log (the other ranks log warnings
and errors only, prefixed with their rank).

Writes ``lcurve.out`` (``training.disp_file``), checkpoints ``<save_ckpt>-<step>.npz`` with a
``checkpoint`` pointer file, and the normalised input (``-o``, default ``out.json``).
"""

from __future__ import annotations

import difflib
import logging
import os
import sys

from ..backends.registry import (ALIASES, BACKENDS as ALL, DEFAULT_TRAIN_BACKEND, data_parallel_backends,
                                 training_backends)

BACKENDS = training_backends()  # those with automatic differentiation (the backend registry decides)


def _backend_name(value: str) -> str:
    import argparse

    key = ALIASES.get(value.lower(), value.lower())
    if key in BACKENDS:
        return key
    if key in ALL:
        raise argparse.ArgumentTypeError(
            f"backend {value!r} has no automatic differentiation and cannot train; choose one of {', '.join(BACKENDS)}")
    close = difflib.get_close_matches(key, list(BACKENDS) + list(ALIASES), n=1)
    hint = f" (did you mean {ALIASES.get(close[0], close[0])!r}?)" if close else ""
    raise argparse.ArgumentTypeError(f"unknown backend {value!r}{hint}; choose one of {', '.join(BACKENDS)}")


def add_arguments(p) -> None:
    p.add_argument("input", help="input.json (DeePMD-kit format: model, learning_rate, loss, optimizer, training)")
    p.add_argument("-b", "--backend", type=_backend_name, default=DEFAULT_TRAIN_BACKEND,
                   metavar="{" + ",".join(BACKENDS) + "}",
                   help=f"framework supplying gradients and jit (default {DEFAULT_TRAIN_BACKEND}; aliases pt, tf, pd)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--restart", metavar="CKPT",
                   help="continue from a checkpoint: a .npz file, the folder holding them, its 'checkpoint' pointer "
                        "or the save_ckpt prefix (same next loss as an uninterrupted run; any backend)")
    g.add_argument("--init-model", metavar="MODEL",
                   help="start from the parameters and statistics of a .dp/.yaml model or a checkpoint")
    p.add_argument("-o", "--output", default="out.json", metavar="JSON",
                   help="write the normalised input (all defaults filled, sel resolved) here (default out.json)")
    p.add_argument("--numb-steps", type=int, default=None, metavar="N",
                   help="override training/numb_steps (e.g. a short test run)")
    p.add_argument("--local-devices", type=int, default=None, metavar="N",
                   help="data-parallel over N devices of this process (backends that have it: "
                        f"{', '.join(data_parallel_backends('devices'))}); N x batch_size frames per step. "
                        "Several processes: start dpcore train with torchrun (docs/distributed.md)")
    p.add_argument("-l", "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="verbosity of the progress log on standard error (default INFO)")
    _suggest_on_unknown_options(p)


def _suggest_on_unknown_options(p) -> None:
    """A misspelled option (``--restat``) fails with the closest valid one, not only 'unrecognized'."""
    parse_known = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extras = parse_known(args, namespace)
        for e in extras:
            if e.startswith("-"):
                opt = e.split("=", 1)[0]
                close = difflib.get_close_matches(opt, list(p._option_string_actions), n=1)
                p.error(f"unrecognized option {opt!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        return ns, extras

    p.parse_known_args = parse_known_args


def main(args) -> int:
    from ..config import load_config, write_normalized

    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"input file {args.input!r} not found")
    if args.restart is not None:
        from ..train.checkpoint import resolve_checkpoint

        try:
            resolve_checkpoint(args.restart)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--restart: {e}") from None
    if args.init_model is not None and not os.path.exists(args.init_model) and \
            not os.path.exists(args.init_model + ".npz") and not os.path.isdir(args.init_model):
        raise FileNotFoundError(f"init-model {args.init_model!r} not found")
    from ..train.distributed import launcher_env

    launched = launcher_env()
    rank = launched[1] if launched else 0
    logger = logging.getLogger("dpcore")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        prefix = f"[rank {rank}] " if launched else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False  # frameworks (paddle) attach handlers to the root logger: no double lines
    logger.setLevel(args.log_level if rank == 0 else max(logging.WARNING, logging.getLevelName(args.log_level)))
    cfg = load_config(args.input)
    from ..train import train

    result = train(cfg, args.backend, restart=args.restart, init_model=args.init_model, numb_steps=args.numb_steps,
                   normalized_output=args.output, local_devices=args.local_devices)
    if result["rank"] != 0:
        return 0
    if result["valid"]:
        summary = ", ".join(f"{k} {v:.3e}" for k, v in result["valid"].items())
        print(f"final validation: {summary}")
    if result["checkpoint"] is not None:
        print(f"{result['s_per_step']:.4f} s/step on {result['backend']}; last checkpoint {result['checkpoint']}")
    return 0
