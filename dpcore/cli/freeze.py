"""``dpcore freeze``: write the model of a training checkpoint as a DeePMD-kit model file.

    dpcore freeze [CHECKPOINT] -o model.dp          # HDF5, DeePMD-kit's ``.dp`` format
    dpcore freeze [CHECKPOINT] -o model.yaml        # the same content as YAML

CHECKPOINT is what :func:`dpcore.train.checkpoint.resolve_checkpoint` accepts: a ``.npz`` checkpoint,
the folder holding them (its ``checkpoint`` pointer file names the latest), the pointer file, or
the ``save_ckpt`` prefix (default: the current folder).  The output is read by ``dpcore.load`` and
by DeePMD-kit (``dp test -m model.dp``, ``dp convert-backend model.dp model.pth``).  An existing
output file is never replaced unless ``--force`` is given; the file is written next to its final
name and renamed, so an interrupted freeze leaves no partial model.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint file, its folder, its 'checkpoint' pointer file or save_ckpt prefix (default .)")
    p.add_argument("-c", "--checkpoint-folder", dest="checkpoint_folder", default=None,
                   help="same as CHECKPOINT (DeePMD-kit's spelling)")
    p.add_argument("-o", "--output", default="frozen_model.dp", help="model file to write, .dp or .yaml (default frozen_model.dp)")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output file")


def main(args) -> int:
    from ..train.checkpoint import model_from_checkpoint, resolve_checkpoint
    from ..io import check_output_path

    if args.checkpoint and args.checkpoint_folder and args.checkpoint != args.checkpoint_folder:
        raise ValueError(f"give the checkpoint once: CHECKPOINT={args.checkpoint!r} and -c {args.checkpoint_folder!r} differ")
    source = args.checkpoint or args.checkpoint_folder or "."
    out = Path(args.output)
    check_output_path(out, args.force, "frozen_model.dp")
    ckpt = resolve_checkpoint(source)
    model = model_from_checkpoint(ckpt)

    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)  # written next to its name and renamed (dpcore.io.write_model_file): no partial file
    print(f"froze {ckpt} -> {out} (type_map {model.type_map})")
    return 0
