"""``dpcore conformance``: run the cross-backend conformance suite and print the error table.

    dpcore conformance --backends numpy,array_api_strict,torch,jax,tensorflow,paddle
    dpcore conformance --backends torch,jax --model frozen.dp --json report.json
    dpcore conformance --backends tensorflow --config input.json --cases full --keep outputs/
    dpcore conformance --physics --backends numpy,torch [--model frozen.dp]

Exit code 0 when every requested backend matches NumPy within the dtype-keyed tolerances (with ``--physics``:
passes every physics check), 1 otherwise, 2 for invalid arguments.  Importing this module imports no framework.
"""

from __future__ import annotations

import sys

ALL_BACKENDS = "numpy,array_api_strict,torch,jax,tensorflow,paddle"


def add_arguments(parser) -> None:
    parser.add_argument("--backends", default=ALL_BACKENDS,
                        help=f"comma-separated backends to check against NumPy (default: {ALL_BACKENDS})")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="FILE", help="check this DeePMD-kit model file (.dp / .yaml)")
    source.add_argument("--config", metavar="input.json",
                        help="check a freshly initialised model from the 'model' section of this input.json "
                             "(random non-trivial statistics)")
    parser.add_argument("--cases", choices=("quick", "full", "spin", "compress", "dpa1"), default="full",
                        help="built-in case catalogue when no --model/--config is given (default: full; "
                             "spin: only the spin-model cases of full)")
    parser.add_argument("--physics", action="store_true",
                        help="run the physics checks (finite differences, invariances, smoothness, supercell) on each "
                             "backend instead of the cross-backend comparison; on --model/--config or a small part "
                             "of the catalogue")
    parser.add_argument("--json", metavar="report.json", help="also write the report as JSON")
    parser.add_argument("--keep", metavar="DIR", help="keep every backend's outputs (npz), status and log in DIR")
    parser.add_argument("--jobs", type=int, default=2, help="backend processes at a time (default: 2)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per backend process")


def main(args) -> int:
    from .report import to_markdown, write_json
    from .runner import run

    echo = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.physics:
        from .physics import run_physics, to_markdown as physics_markdown

        report = run_physics(args.backends, model_file=args.model, config_file=args.config, jobs=args.jobs,
                             timeout=args.timeout, keep=args.keep, echo=echo)
        print(physics_markdown(report), end="", flush=True)
        if args.json:
            write_json(report, args.json)
        return 0 if report["passed"] else 1
    report = run(args.backends, catalogue=args.cases, model_file=args.model, config_file=args.config,
                 keep=args.keep, jobs=args.jobs, timeout=args.timeout, echo=echo)
    print(to_markdown(report), end="", flush=True)
    if args.json:
        write_json(report, args.json)
    return 0 if report["passed"] else 1
