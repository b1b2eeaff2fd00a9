"""Backend-neutral training checkpoints: one ``.npz`` file per save, written atomically.

A checkpoint is a nested dict ``state``; every NumPy array in it goes into the ``.npz`` under its
path (``params/descriptor/embedding/0/1/w``, ``optimizer/m/...``) and everything else (step,
sampler RNG states, the normalised input with the resolved ``sel``, backend name, versions) into
one JSON document stored in the same file (entry ``__meta__``).  No pickle: a checkpoint written
by one backend is read by any other.

Training state saved by :mod:`dpcore.train.loop`::

    params      full parameter dict (NumPy; statistics included)
    optimizer   {"type": "Adam", "step": t, "m": tree, "v": tree}   (trees of the trainable params)
    step        number of completed training steps
    sampler     {"train": BatchSampler.get_state(), "valid": ... or None}
    config      the normalised input (model/descriptor/sel resolved)
    backend     name of the backend that wrote it;  versions: dpcore, numpy, framework

Files in ``save_dir``: ``<save_ckpt>-<step>.npz`` (at most ``max_ckpt_keep``, oldest removed) and a
pointer file ``checkpoint`` naming the latest one (what ``--restart <save_dir>`` or
``--restart <save_ckpt>`` resolves to).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "write_checkpoint", "resolve_checkpoint",
           "model_from_checkpoint", "POINTER", "FORMAT_VERSION"]

POINTER = "checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"


def _split(tree, path: str, arrays: dict):
    """JSON-able copy of ``tree`` with arrays moved to ``arrays`` (replaced by ``{"__array__": key}``)."""
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str) or "/" in k:
                raise ValueError(f"checkpoint: key {k!r} at {path or '/'} must be a string without '/'")
        return {k: _split(v, f"{path}/{k}" if path else k, arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, f"{path}/{i}", arrays) for i, v in enumerate(tree)]
    if isinstance(tree, np.ndarray) or (isinstance(tree, np.generic) and not isinstance(tree, (np.bool_,))):
        arrays[path] = np.asarray(tree)
        return {"__array__": path}
    if isinstance(tree, np.bool_):
        return bool(tree)
    return tree


def _join(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path, state: dict) -> Path:
    """Write ``state`` to ``path`` (``.npz``) atomically: a temporary file in the same folder, then
    ``os.replace`` (a crash leaves the previous file intact, never a partial one)."""
    path = Path(path)
    arrays: dict = {}
    meta = {"format_version": FORMAT_VERSION, "state": _split(state, "", arrays)}
    if _META in arrays:
        raise ValueError(f"checkpoint: {_META!r} is reserved")
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_META: np.array(json.dumps(meta))})
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(path) -> dict:
    """The ``state`` dict of :func:`save_checkpoint` (``path``: file, folder or prefix, see
    :func:`resolve_checkpoint`)."""
    path = resolve_checkpoint(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a dpcore checkpoint ({e})") from None
    if _META not in arrays:
        raise ValueError(f"{path}: not a dpcore checkpoint (no {_META} entry)")
    meta = json.loads(str(arrays.pop(_META)))
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta['format_version']} is newer than this dpcore "
                         f"understands ({FORMAT_VERSION})")
    state = _join(meta["state"], arrays)
    state["path"] = str(path)
    return state


def _step_files(folder: Path, prefix: str) -> list[tuple[int, Path]]:
    pat = re.compile(re.escape(prefix) + r"-(\d+)\.npz$")
    out = []
    for p in folder.iterdir() if folder.is_dir() else ():
        m = pat.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def write_checkpoint(save_dir, prefix: str, state: dict, max_keep: int = 5) -> Path:
    """Save ``state`` as ``save_dir/<prefix>-<state["step"]>.npz``, point ``save_dir/checkpoint`` at
    it (atomically), and remove the oldest ``<prefix>-*.npz`` beyond ``max_keep``."""
    folder = Path(save_dir)
    path = save_checkpoint(folder / f"{prefix}-{int(state['step'])}.npz", state)
    _atomic_write_bytes(folder / POINTER, (path.name + "\n").encode())
    files = _step_files(folder, prefix)
    for _, old in files[: max(0, len(files) - max(1, int(max_keep)))]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def resolve_checkpoint(path) -> Path:
    """The checkpoint file meant by ``path``: a ``.npz`` file; a folder or a ``checkpoint`` pointer
    file (-> the latest save); or a prefix such as ``model.ckpt`` (-> the pointer next to it, or
    ``model.ckpt.npz``)."""
    p = Path(path)
    if p.is_dir():
        p = p / POINTER
    if p.is_file() and p.name == POINTER or (p.is_file() and p.suffix != ".npz" and _is_pointer(p)):
        target = p.parent / p.read_text().split("\n", 1)[0].strip()
        if not target.is_file():
            raise FileNotFoundError(f"{p} names {target.name}, which does not exist")
        return target
    if p.is_file():
        return p
    if Path(f"{p}.npz").is_file():
        return Path(f"{p}.npz")
    files = _step_files(p.parent, p.name) if p.parent.is_dir() else []
    if files:
        pointer = p.parent / POINTER
        if pointer.is_file():
            named = p.parent / pointer.read_text().split("\n", 1)[0].strip()
            if named.is_file() and named.name.startswith(p.name + "-"):
                return named
        return files[-1][1]
    raise FileNotFoundError(f"checkpoint {str(path)!r} not found (expected a .npz checkpoint, the folder holding "
                            f"them, its {POINTER!r} pointer file, or the save_ckpt prefix)")


def _is_pointer(p: Path) -> bool:
    try:
        head = p.read_bytes()[:4096]
    except OSError:
        return False
    if head.startswith(b"PK"):  # a zip (npz) file
        return False
    try:
        text = head.decode().strip()
    except UnicodeDecodeError:
        return False
    return bool(text) and "\n" not in text and text.endswith(".npz")


def model_from_checkpoint(path):
    """The model stored in a checkpoint (parameters and statistics as at that step): an
    :class:`~dpcore.model.energy_model.EnergyModel` or, for a ``model.spin`` section, a spin model."""
    state = load_checkpoint(path)
    try:
        cfg, params = state["config"]["model"], state["params"]
    except KeyError as e:
        raise ValueError(f"{state['path']}: checkpoint holds no model ({e} missing)") from None
    from ..model.factory import model_from_state

    return model_from_state(cfg, params)
