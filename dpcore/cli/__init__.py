"""``dpcore`` command line (also ``python -m dpcore``): one sub-command per module, each imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..backends import threads

# sub-command -> (module with add_arguments(parser) and main(args) -> int, help)
COMMANDS = {
    "conformance": ("dpcore.conformance.cli", "cross-backend conformance suite (one process per backend)"),
    "neighbor-stat": ("dpcore.cli.neighbor_stat", "min pair distance and max neighbours per type of a data set"),
    "train": ("dpcore.cli.train", "train a model from input.json on torch, jax, tensorflow or paddle"),
    "freeze": ("dpcore.cli.freeze", "write the model of a training checkpoint as a DeePMD-kit .dp/.yaml file"),
    "test": ("dpcore.cli.test", "errors (MAE/RMSE) of a model on labelled systems, like dp test"),
    "compress": ("dpcore.cli.compress", "tabulate the embedding nets of a .dp/.yaml model (DeePMD-kit's dp compress)"),
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="dpcore", description="DeePMD-style energy models on any array-API backend")
    parser.add_argument("--version", action="version", version=f"dpcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.add_argument("--threads", default=None, metavar="N",
                       help="threads per framework operation and for BLAS: a number or 'auto' (the idle cores); "
                            "default: DP_INTRA_OP_PARALLELISM_THREADS or OMP_NUM_THREADS if set, else auto "
                            "(docs/backends.md, Threads)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        threads.configure(args.threads)  # before any framework is loaded, so each one starts with the plan
        return int(module.main(args) or 0)
    except (ValueError, FileNotFoundError, NotImplementedError, ImportError) as e:
        print(f"dpcore {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
