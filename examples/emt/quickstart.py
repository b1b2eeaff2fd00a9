"""The whole example in one command: make the data (if absent), train, freeze, test.

    python examples/emt/quickstart.py                      # JAX; or --backend torch / tensorflow / paddle
    python examples/emt/quickstart.py --numb-steps 200     # a shorter run

It runs exactly the commands of examples/emt/README.md, from the repository root:

    python examples/emt/make_data.py                                         (only if the data are absent)
    dpcore train examples/emt/input.json --backend jax -o examples/emt/run/out.json
    dpcore freeze examples/emt/run -o examples/emt/run/emt.dp --force
    dpcore test -m examples/emt/run/emt.dp -s examples/emt/data/valid -d examples/emt/run/valid

``--root DIR`` puts the data and the run under DIR instead of examples/emt (the input.json paths are
rewritten to match; used by the tests).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _make_data_module():
    spec = importlib.util.spec_from_file_location("emt_make_data", HERE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _input_for(root: Path) -> Path:
    """examples/emt/input.json, or a copy whose data and run paths point under ``root``."""
    default = HERE / "input.json"
    if root == HERE:
        return default.relative_to(REPO)
    text = default.read_text().replace("examples/emt/data", str(root / "data")).replace("examples/emt/run",
                                                                                       str(root / "run"))
    (root / "run").mkdir(parents=True, exist_ok=True)
    out = root / "run" / "input.json"
    out.write_text(json.dumps(json.loads(text), indent=2) + "\n")
    return out


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-b", "--backend", default="jax", help="training backend: jax (default), torch, tensorflow, paddle")
    p.add_argument("--numb-steps", type=int, default=None, help="override training/numb_steps (1000)")
    p.add_argument("--root", default=str(HERE), help="folder for data/ and run/ (default examples/emt)")
    p.add_argument("--frames", type=int, default=150, help="frames per training system when making data (150)")
    args = p.parse_args(argv)

    from dpcore.cli import main as dpcore

    root = Path(args.root).resolve()
    os.chdir(REPO)  # input.json paths are relative to the repository root, as in DeePMD-kit
    data, run = root / "data", root / "run"
    if not (data / "train").is_dir() or not (data / "valid").is_dir():
        print(f"$ python examples/emt/make_data.py --out {_rel(data)}", flush=True)
        _make_data_module().main(["--out", str(data), "--frames", str(args.frames),
                                  "--valid-frames", str(max(1, args.frames // 3))])
    model = run / "emt.dp"
    run.mkdir(parents=True, exist_ok=True)  # for -o out.json (train makes the rest)
    steps = [] if args.numb_steps is None else ["--numb-steps", str(args.numb_steps)]
    commands = [
        ["train", str(_input_for(root)), "--backend", args.backend, "-o", _rel(run / "out.json"), *steps],
        ["freeze", _rel(run), "-o", _rel(model), "--force"],
        ["test", "-m", _rel(model), "-s", _rel(data / "valid"), "-d", _rel(run / "valid")],
    ]
    for command in commands:
        print("$ dpcore " + shlex.join(command), flush=True)
        code = dpcore(command)
        if code:
            return code
    print(f"model: {_rel(model)}  (dpcore.load(...) evaluates it on any backend; DeePMD-kit reads it too)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
