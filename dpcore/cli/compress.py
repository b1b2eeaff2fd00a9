"""``dpcore compress``: tabulate the embedding nets of a model (DeePMD-kit's ``dp compress``, SPEC_COMPRESS).

    dpcore compress -i model.dp -o compressed.dp [-s 0.01] [-e 5] [-f -1] [-t input.json] [--force]

Every embedding net of the se_e2_a descriptor (a spin model: of its backbone) becomes a table of quintic
polynomials on ``[lower, upper)`` with stride ``STEP`` and ``[upper, EXTRAPOLATE*upper)`` with stride
``10*STEP`` (linear extrapolation outside); ``lower``/``upper`` follow from the descriptor statistics and the
minimal neighbour distance ``min_nbor_dist``, read from the model file (envelope key ``min_nbor_dist``, or
``@variables.min_nbor_dist`` as PyTorch exports write it) or else computed from the training data of
``-t input.json`` (``training.training_data.systems``, paths relative to the current folder).  The output is
DeePMD-kit's compressed ``.dp``/``.yaml`` (descriptor ``@version`` 3 with its ``"compress"`` tables and the
envelope key ``min_nbor_dist``): ``dpcore.load`` and DeePMD-kit evaluate it with the tables.  Every output
term is kept (the energy bias included).  An existing output is never replaced unless ``--force`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("-i", "--input", default="frozen_model.dp", help="model file to compress, .dp or .yaml "
                   "(default frozen_model.dp)")
    p.add_argument("-o", "--output", default="frozen_model_compressed.dp",
                   help="compressed model file to write, .dp or .yaml (default frozen_model_compressed.dp)")
    p.add_argument("-s", "--step", type=float, default=0.01,
                   help="stride of the first table part (the second uses 10 * step) (default 0.01)")
    p.add_argument("-e", "--extrapolate", type=int, default=5,
                   help="the table ends at extrapolate * upper; linear extrapolation beyond (default 5)")
    p.add_argument("-f", "--frequency", type=int, default=-1,
                   help="overflow-check frequency, stored for DeePMD-kit's TF/PT models (default -1: off)")
    p.add_argument("-t", "--training-script", dest="training_script", default=None,
                   help="input.json whose training data give min_nbor_dist when the model file has none")
    p.add_argument("--force", action="store_true", help="replace an existing output file")


def saved_min_nbor_dist(envelope: dict) -> float | None:
    """``min_nbor_dist`` (Å) stored in a model envelope: top-level key (dpmodel/JAX writers), ``@variables``
    (PyTorch/TensorFlow exports) or ``constants``; None when absent."""
    import numpy as np

    for holder in (envelope, envelope.get("@variables") or {}, envelope.get("constants") or {}):
        value = holder.get("min_nbor_dist") if isinstance(holder, dict) else None
        if value is not None:
            return float(np.asarray(value))
    return None


def data_min_nbor_dist(training_script, type_map: list, rcut: float) -> float:
    """Minimal pair distance (Å, periodic images included) of the training systems of an input.json."""
    from ..data import load_systems
    from ..stat.neighbor import data_neighbor_stat

    path = Path(training_script)
    try:
        jdata = json.loads(path.read_text())
        data = jdata["training"]["training_data"]
        systems = data["systems"]
    except FileNotFoundError:
        raise FileNotFoundError(f"-t {path}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"-t {path}: expected a JSON input with training.training_data.systems ({e})") from None
    found = load_systems(systems, type_map=type_map, rglob_patterns=data.get("rglob_patterns"))
    min_dist, _ = data_neighbor_stat(found, rcut, len(type_map))
    if not min_dist < float("inf"):
        raise ValueError(f"-t {path}: no pair of atoms within rcut = {rcut} Å in the training data")
    return float(min_dist)


def main(args) -> int:
    from ..descriptor.tabulate import compress_model
    from ..io import SUPPORTED_SUFFIXES, check_output_path, read_model_file, write_model_file
    from ..model.factory import MODEL_TYPES

    src, out = Path(args.input), Path(args.output)
    if src.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValueError(f"-i {src}: the model file must end in one of {', '.join(SUPPORTED_SUFFIXES)} "
                         "(DeePMD-kit HDF5 '.dp' or YAML '.yaml')")
    check_output_path(out, args.force, "frozen_model_compressed.dp")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ValueError(f"-o {out} is the input file; write the compressed model to another file")
    envelope = read_model_file(src)
    mtype = envelope["model"].get("type", "standard")
    if mtype not in MODEL_TYPES:
        raise NotImplementedError(f"{src}: model type {mtype!r} is not supported (supported: {sorted(MODEL_TYPES)})")
    model = MODEL_TYPES[mtype].from_dict(envelope["model"], envelope.get("model_def_script"))
    min_nbor_dist = saved_min_nbor_dist(envelope)
    origin = f"{src}"
    if min_nbor_dist is None:
        if args.training_script is None:
            raise ValueError(f"{src} stores no min_nbor_dist: give the training input with -t input.json (its "
                             "training data give the minimal neighbour distance)")
        min_nbor_dist = data_min_nbor_dist(args.training_script, model.type_map, model.rcut)
        origin = f"the training data of {args.training_script}"
    compress_model(model, min_nbor_dist, args.step, args.extrapolate, args.frequency)

    envelope = {k: v for k, v in envelope.items() if k != "time"}
    envelope.update(model=model.to_dict(), min_nbor_dist=float(min_nbor_dist))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_model_file(out, envelope)
    info = model.config["descriptor"]["compress"]["info"]
    ranges = sorted({(v[0], v[1], v[2]) for v in info.values()})
    print(f"compressed {src} -> {out}: {len(info)} embedding nets tabulated, min_nbor_dist {min_nbor_dist:.6f} Å "
          f"(from {origin}), step {args.step} / {10 * args.step}, ranges [lower, upper, end] {ranges}")
    return 0
